import assert from "node:assert/strict";
import { COLO_MESSAGE, type ColoWirePlace, ColoWireTracker } from "./wire_colo.ts";
import { WireProxy } from "./wire_proxy.ts";

const be32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
};
const be64 = (v: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
};
const cat = (...parts: (Uint8Array | number[])[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/**
 * One checkpoint as QEMU's primary sends it: the request, VMSTATE_SEND, the RAM part (a page of pc.ram
 * named, a zero page continuing the block, a command, EOS, the footer, QEMU_VM_EOF), then VMSTATE_SIZE and
 * the device state. With where each place is.
 */
function checkpoint(devices = 10) {
  const ram = cat(
    [0x03],
    be32(2),
    be64(0x100000 | 0x08),
    [6],
    new TextEncoder().encode("pc.ram"),
    new Uint8Array(4096).fill(0xab),
    be64(0x101000 | 0x02 | 0x20),
    [0],
    be64(0x10),
    [0x7e],
    be32(2),
    [0x08, 0, 0x0a, 0, 2, 0xee, 0xee],
    [0x00],
  );
  const bytes = cat(
    be32(COLO_MESSAGE["checkpoint-request"]),
    be32(COLO_MESSAGE["vmstate-send"]),
    ram,
    be32(COLO_MESSAGE["vmstate-size"]),
    be64(devices),
    new Uint8Array(devices).fill(0xcd),
  );
  const pageData = 8 + 1 + 4 + 8 + 1 + 6;
  const size = 8 + ram.length + 12;
  const places: Record<string, number> = {
    "request-sent": 4,
    "send-start": 4,
    "ram-middle": pageData + 2048,
    "devices-middle": size + Math.floor(devices / 2),
    "devices-end": size + devices,
  };
  return { bytes, places };
}

/** The tracker fed `bytes` in pieces of `piece` bytes: each place where it says, in stream offsets. */
function feed(bytes: Uint8Array, piece: number): Map<string, number> {
  const t = new ColoWireTracker();
  t.back(be32(COLO_MESSAGE["checkpoint-ready"]));
  const seen = new Map<string, number>();
  for (let off = 0; off < bytes.length; off += piece) {
    for (const m of t.forward(bytes.subarray(off, off + piece))) {
      seen.set(`${m.place}#${m.checkpoint}`, off + m.at);
    }
  }
  assert.equal(t.problem, null);
  return seen;
}

Deno.test("COLO on the wire: each place of a checkpoint at its byte, however the stream is cut", () => {
  const one = checkpoint();
  const two = checkpoint(7);
  const stream = cat(one.bytes, two.bytes);
  for (const piece of [stream.length, 4096, 1000, 7, 1]) {
    const seen = feed(stream, piece);
    for (const [n, c, base] of [[1, one, 0], [2, two, one.bytes.length]] as const) {
      for (const [place, at] of Object.entries(c.places)) {
        // VMSTATE_SEND's place is before its 4 bytes; a read that ends inside them has sent the first.
        if (place === "send-start" && piece < 8) continue;
        assert.equal(seen.get(`${place}#${n}`), base + at, `${place} of checkpoint ${n}, pieces of ${piece}`);
      }
    }
  }
});

Deno.test("COLO on the wire: the secondary's messages, and what the tracker cannot read", () => {
  const t = new ColoWireTracker();
  assert.equal(t.ready, false);
  const back = cat(
    be32(COLO_MESSAGE["checkpoint-ready"]),
    be32(COLO_MESSAGE["checkpoint-reply"]),
    be32(COLO_MESSAGE["vmstate-received"]),
    be32(COLO_MESSAGE["vmstate-loaded"]),
  );
  // In two pieces, the second message cut in half.
  const marks = [
    ...t.back(back.subarray(0, 6)),
    ...t.back(back.subarray(6)).map((m) => ({ ...m, at: m.at + 6 })),
  ];
  assert.equal(t.ready, true);
  assert.deepEqual(marks.map((m) => [m.place, m.at]), [
    ["before-received", 8],
    ["after-received", 12],
    ["after-loaded", 16],
  ]);
  // A RAM record with a flag no COLO checkpoint carries (a compressed page): the tracker says so.
  t.forward(cat(be32(1), be32(3), [0x03], be32(2), be64(0x100000 | 0x100)));
  assert.match(t.problem ?? "", /unknown RAM flags 0x100/);
});

/** A fake COLO pair through the proxy: what the secondary receives when the primary dies at a hold. */
async function throughHold(place: ColoWirePlace, release: "continue" | "drop" | "deliver") {
  const dir = await Deno.makeTempDir();
  const dst = Deno.listen({ transport: "unix", path: `${dir}/dst.sock` });
  const proxy = WireProxy.start(`unix:${dir}/dst.sock`, `${dir}/wire.sock`, [], { colo: true });
  try {
    const hold = proxy.holdColo(place);
    const src = await Deno.connect({ transport: "unix", path: `${dir}/wire.sock` });
    const secondary = await dst.accept();
    const precopy = cat(new TextEncoder().encode("QEVM"), new Uint8Array(60));
    await src.write(precopy);
    const got: Uint8Array[] = [];
    const reading = (async () => {
      const buf = new Uint8Array(65536);
      for (let n; (n = await secondary.read(buf)) !== null;) got.push(buf.slice(0, n));
    })();
    // The precopy is in; the secondary says it is ready; the primary sends its checkpoint.
    while (got.reduce((n, b) => n + b.length, 0) < precopy.length) await new Promise((r) => setTimeout(r, 5));
    await secondary.write(be32(COLO_MESSAGE["checkpoint-ready"]));
    await src.read(new Uint8Array(4));
    const { bytes, places } = checkpoint();
    await src.write(bytes);
    await hold.reached;
    src.close();
    hold.release(release);
    await reading;
    secondary.close();
    const received = cat(...got).length - precopy.length;
    return { received, total: bytes.length, at: places[place] };
  } finally {
    await proxy.close();
    dst.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("wire proxy: a COLO hold lets through the bytes before its place only, then drops or delivers", async () => {
  const dropped = await throughHold("ram-middle", "drop");
  assert.equal(dropped.received, dropped.at, "a primary that died mid-page: its first half page, no more");
  const delivered = await throughHold("devices-middle", "deliver");
  assert.equal(delivered.received, delivered.total, "what it had sent reaches the secondary");
  const resumed = await throughHold("request-sent", "continue");
  assert.equal(resumed.received, resumed.total);
});
