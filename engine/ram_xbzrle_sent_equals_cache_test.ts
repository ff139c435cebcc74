/**
 * Bug (found by the in-process live XBZRLE test, 1 run in 3): on a cache miss the source inserted the
 * live page into the XBZRLE cache, then sent the live page again — two separate copies of memory the
 * guest was writing. When the guest wrote in between, the destination got other bytes than the cache
 * held, and the next delta (computed against the cache) was applied to the wrong base: RAM differed.
 * What is sent raw must be the cache's copy (QEMU sends from the cache after cache_insert).
 */
import assert from "node:assert/strict";
import { XbzrleSaveState } from "./ram_xbzrle.ts";

Deno.test("regression: a page sent raw on an XBZRLE miss is the cache's copy, not the live page", () => {
  const x = new XbzrleSaveState(1 << 20);
  const live = new Uint8Array(4096).fill(7);
  const miss = x.save(0x1000, live, 2, false);
  assert.equal(miss.kind, "raw");
  assert.ok(miss.kind === "raw" && miss.data, "a miss that inserted must say what to send");
  assert.strictEqual(miss.data, x.cache.get(0x1000), "the bytes sent are the cache entry");
  live[5] = 99; // the guest writes after the cache copy was taken: the sent bytes do not change
  assert.equal(miss.data![5], 7);
});

Deno.test("regression: a page sent raw after an XBZRLE overflow is the updated cache entry", () => {
  const x = new XbzrleSaveState(1 << 20);
  const page = new Uint8Array(4096);
  x.save(0x2000, page, 2, false); // miss: cached
  const changed = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 1) & 0xff); // no run survives
  const out = x.save(0x2000, changed, 3, false);
  assert.equal(out.kind, "raw");
  assert.ok(out.kind === "raw" && out.data, "an overflow must say what to send");
  assert.strictEqual(out.data, x.cache.get(0x2000));
  assert.deepEqual(out.data, changed);
});
