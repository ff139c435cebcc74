/**
 * Stream capture: the file holds exactly the bytes the peer received, one migration per file; a capture
 * that cannot be written fails loudly; the fault hooks hand the model a capturing link only when armed.
 */
import assert from "node:assert/strict";
import { memoryLinkPair } from "../transport/link.ts";
import { CaptureLink } from "./capture.ts";
import { StreamFaults } from "./faults.ts";

async function readAll(
  link: { read(p: Uint8Array): Promise<number | null> },
  n: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await link.read(out.subarray(got));
    if (r === null) break;
    got += r;
  }
  return out.subarray(0, got);
}

Deno.test("CaptureLink: the file holds what the peer received, and its first write replaces the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest-capture-" });
  try {
    const path = `${dir}/main-stream.mig`;
    await Deno.writeFile(path, new TextEncoder().encode("a previous migration's stream"));
    const [a, b] = memoryLinkPair(1 << 16);
    const tee = new CaptureLink(a, path);
    const chunks = [
      new Uint8Array([0x51, 0x45, 0x56, 0x4d]),
      new Uint8Array(3000).fill(7),
      new Uint8Array([1]),
    ];
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const received = readAll(b, total);
    for (const c of chunks) await tee.write(c);
    const peer = await received;
    const file = await Deno.readFile(path);
    assert.equal(peer.length, total);
    assert.deepEqual(file, peer);
    assert.equal(tee.description, a.description);
    tee.close();
    assert.equal(await b.read(new Uint8Array(1)), null, "closing the capture closes the channel");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CaptureLink: a write the file cannot take fails the write, naming the file", async () => {
  const [a, b] = memoryLinkPair(1 << 16);
  const path = "/nonexistent-migtest-dir/main-stream.mig";
  const tee = new CaptureLink(a, path);
  await assert.rejects(
    tee.write(new Uint8Array([1, 2, 3])),
    new RegExp(`x-test-capture: cannot write ${path}`),
  );
  // The wire still got its bytes: the failure is the capture's.
  assert.deepEqual(await readAll(b, 3), new Uint8Array([1, 2, 3]));
  tee.close();
});

Deno.test("StreamFaults.capture: the main channel is teed only while a capture is armed", () => {
  const faults = new StreamFaults();
  const [a, b] = memoryLinkPair(16);
  assert.equal(faults.outgoing().mainChannel(a), a, "nothing armed: the model's own link");
  faults.capture("/tmp/x.mig");
  const teed = faults.outgoing().mainChannel(a);
  assert.ok(teed instanceof CaptureLink && teed.path === "/tmp/x.mig" && teed.inner === a);
  faults.capture(null);
  assert.equal(faults.outgoing().mainChannel(a), a, "stopped: the model's own link again");
  a.close();
  b.close();
});
