import assert from "node:assert/strict";
import { FdConn } from "./fd_conn.ts";
import { closeFd, preloadLibc, socketPair } from "./libc.ts";

preloadLibc();

Deno.test("fd conn: a descriptor sent with SCM_RIGHTS arrives as a working descriptor of the receiver", async () => {
  const [ctlA, ctlB] = socketPair();
  const [dataA, dataB] = socketPair();
  const sender = new FdConn(ctlA);
  const receiver = new FdConn(ctlB);
  try {
    sender.sendWithNextWrite([dataA]);
    await sender.write(new TextEncoder().encode("getfd\n"));
    closeFd(dataA);
    const buf = new Uint8Array(64);
    const n = await receiver.read(buf);
    assert.equal(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "getfd\n");
    const [got] = receiver.takeFds();
    assert.ok(got !== undefined && got >= 0, "one descriptor came with the bytes");
    assert.deepEqual(receiver.takeFds(), [], "taken once");
    // The received descriptor is the same socket: what goes in one end comes out of the other.
    const through = new FdConn(got, false);
    const other = new FdConn(dataB, false);
    await through.write(new Uint8Array([1, 2, 3]));
    const three = new Uint8Array(3);
    assert.equal(await other.read(three), 3);
    assert.deepEqual(three, new Uint8Array([1, 2, 3]));
    through.close();
    assert.equal(await other.read(three), null, "the peer sees end of stream once the last copy closes");
    other.close();
  } finally {
    sender.close();
    receiver.close();
  }
});

Deno.test("fd conn: close wakes a read blocked off the event loop", async () => {
  const [a, b] = socketPair();
  const c = new FdConn(a, false);
  const reading = c.read(new Uint8Array(8));
  c.close();
  assert.equal(await reading, null);
  closeFd(b);
});
