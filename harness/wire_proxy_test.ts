import assert from "node:assert/strict";
import {
  connectionRole,
  findMultifdPages,
  findStreamPoint,
  isWireFault,
  RecoveryTracker,
  ReturnPathTracker,
  type WireFault,
  wireFaultOf,
  WireProxy,
} from "./wire_proxy.ts";
import { engineStream, FIXTURE, withTempDir } from "../tools/analyze/analyze_test_util.ts";

/** The be64 at `at`. */
function be64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(at);
}

Deno.test("wire proxy: the named places are found in QEMU 7.2's stream and in the model's", async () => {
  const qemu = await Deno.readFile(FIXTURE);
  const flags = findStreamPoint(qemu, { point: "mem-size-flags" })!;
  assert.equal(qemu[flags] & 0x0f, 0x04, "the MEM_SIZE flag");
  const length = findStreamPoint(qemu, { point: "block-length", block: "pc.ram", byte: 0 })!;
  assert.equal(be64(qemu, length), 32n << 20n, "pc.ram's 32 MiB");
  assert.equal(findStreamPoint(qemu, { point: "block-length", block: "pc.ram", byte: 4 }), length + 4);
  assert.equal(
    findStreamPoint(qemu.subarray(0, flags), { point: "mem-size-flags" }),
    null,
    "not yet reached",
  );
  // The first page record after the setup: a page or a zero page, naming its block (no CONTINUE).
  const record = findStreamPoint(qemu, { point: "ram-first-record", byte: 7 })!;
  assert.ok([0x02, 0x08].includes(qemu[record]), `flags 0x${qemu[record].toString(16)}`);
  const name = new TextDecoder().decode(qemu.subarray(record + 2, record + 2 + qemu[record + 1]));
  assert.ok(["pc.ram", "pc.bios", "pc.rom", "vga.vram", "/rom@etc/acpi/tables"].includes(name), name);
  const machine = findStreamPoint(qemu, { point: "machine-type", byte: 0 })!;
  assert.equal(new TextDecoder().decode(qemu.subarray(machine, machine + 9)), "pc-i440fx");
  const footer = findStreamPoint(qemu, { point: "ram-setup-footer", byte: 0 })!;
  assert.deepEqual([qemu[footer], qemu[footer + 5]], [0x7e, 0x02], "the setup's footer, then a part section");
  assert.equal(footer + 10 + 7, record, "the first record right after that part section's header");
  await withTempDir(async (dir) => {
    const model = await engineStream(`${dir}/s.mig`);
    const f = findStreamPoint(model.bytes, { point: "mem-size-flags" })!;
    assert.equal(model.bytes[f] & 0x0f, 0x04);
    const total = model.blocks.reduce((n, b) => n + BigInt(b.usedLength), 0n);
    assert.equal(be64(model.bytes, f - 7) & ~0xfffn, total, "the MEM_SIZE word is the RAM's total");
    for (const b of model.blocks) {
      const at = findStreamPoint(model.bytes, { point: "block-length", block: b.idstr, byte: 0 })!;
      assert.equal(be64(model.bytes, at), BigInt(b.usedLength), b.idstr);
    }
  });
});

Deno.test("wire proxy: only faults every stream has a place for go on the wire", () => {
  assert.ok(isWireFault({ kind: "corrupt", offset: 0, xor: 0x20 }, "src"), "the magic");
  assert.ok(isWireFault({ kind: "corrupt", offset: 8, xor: 0xff }, "src"), "the first section's type");
  assert.ok(isWireFault({ kind: "truncate", offset: (s) => 64 + s }, "src"), "a cut anywhere");
  assert.ok(!isWireFault({ kind: "corrupt", offset: 68, xor: 0x40 }, "src"), "the model's own layout");
  assert.ok(isWireFault({ kind: "corrupt", offset: 64 + 3, channel: 0 }, "src"), "a packet's magic");
  assert.ok(
    !isWireFault({ kind: "truncate", offset: 64 + 2704, channel: 0 }, "src"),
    "a model packet's payload",
  );
  assert.ok(!isWireFault({ kind: "unknown-section" }, "src"), "a record only the model writes");
  assert.ok(isWireFault({ kind: "multifd-channel-delay", channel: 0, delayMs: 5 }, "dst"), "a held channel");
  assert.ok(!isWireFault({ kind: "corrupt", offset: 0 }, "dst"), "the destination's own stream");
  assert.deepEqual(wireFaultOf({ kind: "truncate", offset: (s) => 64 + s }, "src", 6), {
    kind: "truncate",
    channel: "main",
    offset: 70,
  });
  assert.deepEqual(wireFaultOf({ kind: "multifd-channel-slow", channel: 2, delayMs: 4 }, "dst", 0), {
    kind: "slow",
    channel: 2,
    delayMs: 4,
  });
});

/** A main stream's first bytes, and a multifd handshake for channel `id`. */
const MAIN = Uint8Array.from({ length: 4096 }, (_, i) => [0x51, 0x45, 0x56, 0x4d][i] ?? (i & 0xff));
function handshake(id: number): Uint8Array {
  const b = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
  b.set([0x11, 0x22, 0x33, 0x44]);
  b[24] = id;
  return b;
}

Deno.test("wire proxy: a connection is told by its first bytes", () => {
  assert.equal(connectionRole(MAIN.subarray(0, 25)), "main");
  assert.equal(connectionRole(handshake(3).subarray(0, 25)), 3);
  assert.equal(connectionRole(new Uint8Array(25)), "other");
});

/** A destination that keeps what each connection sends and answers "ok" to it. */
async function withRelay(
  faults: WireFault[],
  body: (proxy: WireProxy, received: Promise<Uint8Array>[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-wire-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/dst.sock` });
  const received: Promise<Uint8Array>[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      received.push((async () => {
        const chunks: Uint8Array[] = [];
        try {
          await conn.write(new TextEncoder().encode("ok"));
          for await (const c of conn.readable) chunks.push(c.slice());
        } catch {
          // The proxy dropped it.
        }
        return new Uint8Array(chunks.flatMap((c) => [...c]));
      })());
    }
  })();
  const proxy = WireProxy.start(`unix:${dir}/dst.sock`, `${dir}/wire.sock`, faults);
  try {
    await body(proxy, received);
  } finally {
    await proxy.close();
    listener.close();
    await serving.catch(() => {});
    await Promise.allSettled(received);
    await Deno.remove(dir, { recursive: true });
  }
}

async function send(uri: string, data: Uint8Array, times = 64): Promise<{ reply: string; error?: string }> {
  const conn = await Deno.connect({ transport: "unix", path: uri.slice(5) });
  try {
    const reply = new Uint8Array(2);
    await conn.read(reply);
    try {
      for (let i = 0; i < times; i++) await conn.write(data);
      await conn.closeWrite();
    } catch (e) {
      return { reply: new TextDecoder().decode(reply), error: (e as Error).name };
    }
    return { reply: new TextDecoder().decode(reply) };
  } finally {
    conn.close();
  }
}

function repeated(data: Uint8Array, times = 64): Uint8Array {
  const out = new Uint8Array(times * data.length);
  for (let i = 0; i < times; i++) out.set(data, i * data.length);
  return out;
}

function differences(a: Uint8Array, b: Uint8Array): number[] {
  return [...a.keys()].filter((i) => a[i] !== b[i]);
}

Deno.test("wire proxy: a byte of the named channel is corrupted; replies and other channels pass untouched", async () => {
  const faults: WireFault[] = [
    { kind: "corrupt", channel: "main", offset: 5000, xor: 0x20 },
    { kind: "corrupt", channel: 2, offset: 67, xor: 0x01 },
  ];
  await withRelay(faults, async (proxy, received) => {
    assert.equal((await send(proxy.uri, MAIN)).reply, "ok", "the destination's reply reaches the source");
    await send(proxy.uri, handshake(1));
    await send(proxy.uri, handshake(2));
    const [main, one, two] = await Promise.all(received);
    assert.deepEqual(differences(main, repeated(MAIN)), [5000]);
    assert.equal(main[5000], repeated(MAIN)[5000] ^ 0x20);
    assert.deepEqual(differences(one, repeated(handshake(1))), [], "channel 1 is relayed as is");
    assert.deepEqual(differences(two, repeated(handshake(2))), [67]);
    assert.deepEqual(proxy.report(), {
      connections: 3,
      channels: [
        { role: "main", bytes: MAIN.length * 64 },
        { role: "multifd 1", bytes: MAIN.length * 64 },
        { role: "multifd 2", bytes: MAIN.length * 64 },
      ],
      applied: 2,
    });
  });
});

Deno.test("wire proxy: a cut ends the destination's stream at the offset and breaks the source's", async () => {
  await withRelay([{ kind: "truncate", channel: "main", offset: 10_000 }], async (proxy, received) => {
    const main = await send(proxy.uri, MAIN);
    assert.deepEqual(await received[0], repeated(MAIN).subarray(0, 10_000));
    assert.ok(main.error, "the source's writes fail once the link is cut");
    assert.equal(proxy.report().applied, 1);
  });
});

Deno.test("wire proxy: a held channel's data arrives late and whole; a fault past the end is never applied", async () => {
  const faults: WireFault[] = [
    { kind: "delay", channel: 0, delayMs: 300 },
    { kind: "corrupt", channel: "main", offset: 1 << 30, xor: 1 },
  ];
  await withRelay(faults, async (proxy, received) => {
    const t0 = performance.now();
    await send(proxy.uri, handshake(0), 4);
    const got = await received[0];
    assert.ok(performance.now() - t0 >= 290, "held for its delay");
    assert.deepEqual(got, repeated(handshake(0), 4));
    await send(proxy.uri, MAIN, 4);
    assert.equal((await received[1]).length, 4 * MAIN.length);
    assert.equal(proxy.report().applied, 1, "only the delay was reached");
  });
});

Deno.test("wire proxy: the return path's RP_SWITCHOVER_ACK is found before its bytes, across reads", () => {
  // PONG (type 2, 4 bytes of data), then SWITCHOVER_ACK (type 7, none), then SHUT (type 1, 4 bytes).
  const rp = new Uint8Array([0, 2, 0, 4, 0, 0, 0, 1, 0, 7, 0, 0, 0, 1, 0, 4, 0, 0, 0, 0]);
  // A message begun in an earlier read is held from the read that completes it (its first bytes went on;
  // the source acts on none of it before the whole message is in).
  for (const [cut, at] of [[rp.length, 8], [9, 9], [5, 10], [1, 11]]) {
    const t = new ReturnPathTracker();
    const marks = [];
    for (let off = 0; off < rp.length; off += cut) {
      marks.push(...t.back(rp.subarray(off, off + cut)).map((m) => ({ ...m, at: off + m.at })));
    }
    assert.deepEqual(marks.map((m) => [m.place, m.at]), [["switchover-ack", at]], `reads of ${cut}`);
  }
});

Deno.test("wire proxy: a postcopy recovery's places: the bitmaps after RP_RECV_BITMAP, the source's RESUME", () => {
  // RECV_BITMAP for "pc.ram" (its name in the message), then the bitmap outside it: be64 size 16, 16 bytes,
  // be64 end marker; then RESUME_ACK.
  const name = [6, ...new TextEncoder().encode("pc.ram")];
  const rp = new Uint8Array([
    0,
    5,
    0,
    name.length,
    ...name,
    ...[0, 0, 0, 0, 0, 0, 0, 16],
    ...new Array(16).fill(6), // a bitmap whose bytes look like message types
    ...[1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
    0,
    6,
    0,
    4,
    0,
    0,
    0,
    1,
  ]);
  const t = new ReturnPathTracker();
  const marks = [];
  for (let off = 0; off < rp.length; off += 3) {
    marks.push(...t.back(rp.subarray(off, off + 3)).map((m) => ({ ...m, at: off + m.at })));
  }
  assert.deepEqual(marks.map((m) => m.place), ["recv-bitmap", "resume-ack"]);
  assert.equal(
    marks[1].at,
    Math.floor((rp.length - 1) / 3) * 3,
    "held from the read that completes RESUME_ACK",
  );
  // The source's side: RECV_BITMAP commands, then POSTCOPY_RESUME; nothing is read after it.
  const cmd = (c: number, data: number[]) => [0x08, 0, c, 0, data.length, ...data];
  const src = new Uint8Array([
    ...cmd(10, name),
    ...cmd(10, [4, 0x61, 0x62, 0x63, 0x64]),
    ...cmd(9, []),
    0x08,
    0,
    9,
  ]);
  const r = new RecoveryTracker();
  assert.deepEqual(r.forward(src).map((m) => [m.place, m.at]), [[
    "postcopy-resume",
    2 * 5 + name.length + 5,
  ]]);
  assert.deepEqual(r.forward(src), [], "once");
  assert.deepEqual(
    new RecoveryTracker().forward(new Uint8Array([0x51, 0x45, 0x56, 0x4d, 0, 0])),
    [],
    "a QEVM stream",
  );
});

Deno.test("wire proxy: a multifd channel's first packet with pages, past SYNC packets of either layout", () => {
  const packet = (alloc: number, normal: number, flags: number, next: number) => {
    const p = new Uint8Array(64 + 256 + 8 * (alloc || 128));
    const v = new DataView(p.buffer);
    v.setUint32(0, 0x11223344);
    v.setUint32(4, 1);
    v.setUint32(8, flags);
    v.setUint32(12, alloc);
    v.setUint32(16, normal);
    v.setUint32(20, next);
    return p;
  };
  const handshake = new Uint8Array(64);
  // 10.0's SYNC (pages_alloc 0, yet 128 slots long), 7.2's SYNC (pages_alloc filled), then zlib pages.
  const sync10 = packet(0, 0, 0x1 | 0x2, 0);
  const sync72 = packet(128, 0, 0x1 | 0x2, 0);
  const pages = packet(128, 2, 0x2, 100);
  const stream = new Uint8Array([...handshake, ...sync10, ...sync72, ...pages, ...new Uint8Array(100)]);
  const first = 64 + sync10.length + sync72.length;
  assert.deepEqual(findMultifdPages(stream), { offsets: first + 320, payload: first + 320 + 1024 });
  assert.equal(findStreamPoint(stream, { point: "multifd-payload", byte: 1 }), first + 320 + 1024 + 1);
  assert.equal(findStreamPoint(stream.subarray(0, first + 100), { point: "multifd-offset", byte: 0 }), null);
  assert.equal(findMultifdPages(new Uint8Array([...handshake, 1, 2, 3, 4, ...new Uint8Array(400)])), null);
});
