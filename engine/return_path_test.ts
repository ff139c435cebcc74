import assert from "node:assert/strict";
import { memoryLinkPair } from "./transport/link.ts";
import { MIG_RP_MSG_PONG, ReturnPathReader } from "./return_path.ts";

/** A reader over a link that carries `bytes`; what it told the migration, and how its path ended. */
async function readPath(bytes: number[], close = false) {
  const [dst, src] = memoryLinkPair();
  const told: Error[] = [];
  const rp = new ReturnPathReader(src, (e) => told.push(e));
  await dst.write(Uint8Array.from(bytes));
  if (close) dst.close();
  const end = await rp.shut;
  src.close();
  dst.close();
  return { told, end, rp };
}

// Found by deno task fuzz: a switchover-ack mangled into an unknown type left the reader ended and the
// migration waiting for the ack for ever; QEMU's return-path thread sets the migration's error.
Deno.test("return path: garbage fails the migration at once, naming what and where", async () => {
  const { told, end } = await readPath([0, MIG_RP_MSG_PONG, 0, 4, 0, 0, 0, 1, 0, 0x47, 0, 0]);
  assert.ok(end instanceof Error);
  assert.equal(told.length, 1);
  assert.equal(
    told[0].message,
    "return path: Received invalid return path message type 71 length 0 (at stream offset 8)",
  );
});

Deno.test("return path: a channel that closes is not garbage (the caller judges a lost path)", async () => {
  const { told, end, rp } = await readPath([0, MIG_RP_MSG_PONG, 0, 4, 0, 0, 0, 1], true);
  assert.ok(end instanceof Error);
  assert.equal(rp.lostChannel, true);
  assert.deepEqual(told, []);
  assert.deepEqual(rp.pongs, [1]);
});
