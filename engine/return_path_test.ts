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
    "return path: Received invalid message 0x0047 length 0x0000 (at stream offset 8)",
  );
});

Deno.test("return path: a channel that closes is not garbage (the caller judges a lost path)", async () => {
  const { told, end, rp } = await readPath([0, MIG_RP_MSG_PONG, 0, 4, 0, 0, 0, 1], true);
  assert.ok(end instanceof Error);
  assert.equal(rp.lostChannel, true);
  assert.deepEqual(told, []);
  assert.deepEqual(rp.pongs, [1]);
});

// Found by deno task fuzz: a SWITCHOVER_ACK whose length byte was flipped made the reader wait for
// 39,680 bytes that never came, and the source for its ack for ever.
Deno.test("return path: a wrong length is refused before the body is read", async () => {
  const { told } = await readPath([0, 7, 0x9b, 0]);
  assert.equal(
    told[0]?.message,
    "return path: Received 'SWITCHOVER_ACK' message (0x0007) with incorrect length 39680 expecting 0 " +
      "(at stream offset 0)",
  );
  const long = await readPath([0, 3, 0x02, 0x01]);
  assert.match(
    long.told[0]?.message ?? "",
    /'REQ_PAGES_ID' message \(0x0003\) with incorrect length 513 expecting -1/,
  );
});
