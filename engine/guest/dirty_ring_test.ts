import assert from "node:assert/strict";
import { DirtyRing, dirtyRingSizeProblem } from "./dirty_ring.ts";

const bit = (log: Int32Array, page: number) => (log[page >>> 5] >>> (page & 31)) & 1;

Deno.test("dirty ring: the first write since a harvest is logged once, and only a reap sets the bitmap", () => {
  const log = new Int32Array(new SharedArrayBuffer(4 * 4));
  const ring = new DirtyRing(DirtyRing.create(1024, [128]), [log]);
  ring.mark(0, 5);
  ring.mark(0, 5); // unprotected now: not logged again
  ring.mark(0, 70);
  assert.equal(ring.pending, 2);
  assert.equal(ring.pushes, 2);
  assert.equal(bit(log, 5), 0, "an entry still on the ring is not in the bitmap");
  assert.equal(ring.reap(), 2);
  assert.deepEqual([bit(log, 5), bit(log, 70), ring.pending], [1, 1, 0]);
  ring.mark(0, 5); // protected again by the reap
  assert.equal(ring.pending, 1);
});

Deno.test("dirty ring: a full ring exits the vCPU, which reaps it and goes on (nothing lost)", () => {
  const pages = 4096;
  const log = new Int32Array(new SharedArrayBuffer(pages / 8));
  const ring = new DirtyRing(DirtyRing.create(1024, [pages]), [log]);
  for (let p = 0; p < 3000; p++) ring.mark(0, p);
  assert.equal(ring.fullExits, 2);
  ring.reap();
  for (let p = 0; p < 3000; p++) assert.equal(bit(log, p), 1, `page ${p}`);
  assert.equal(bit(log, 3000), 0);
});

Deno.test("dirty ring: sizes are KVM's (powers of two, 1024 to 65536)", () => {
  assert.equal(dirtyRingSizeProblem(4096), null);
  assert.match(dirtyRingSizeProblem(3000)!, /power of 2/);
  assert.match(dirtyRingSizeProblem(512)!, /between 1024 and 65536/);
});
