import assert from "node:assert/strict";
import fc from "fast-check";
import { CACHED_PAGE_LIFETIME, PageCache } from "./page_cache.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";

const PS = TARGET_PAGE_SIZE;

function page(byte: number): Uint8Array {
  return new Uint8Array(PS).fill(byte);
}

Deno.test("page_cache: slot count is the page count rounded down to a power of two", () => {
  assert.equal(CACHED_PAGE_LIFETIME, 2);
  const dflt = new PageCache(64 * 1024 * 1024, PS);
  assert.equal(dflt.slots, 16384);
  assert.equal(dflt.sizeBytes, 64 * 1024 * 1024);
  assert.equal(dflt.used, 0);
  assert.equal(new PageCache(33554432, PS).slots, 8192);
  const five = new PageCache(5 * PS, PS);
  assert.equal(five.slots, 4);
  assert.equal(five.sizeBytes, 4 * PS);
  assert.equal(new PageCache(PS, PS).slots, 1);
  assert.equal(new PageCache(2 * PS - 1, PS).slots, 1);
  assert.equal(new PageCache(7 * PS + 100, PS).slots, 4);
  assert.throws(() => new PageCache(PS - 1, PS), /cache size 4095 is smaller than the page size 4096/);
  assert.throws(() => new PageCache(0, PS), /smaller than the page size/);
  assert.throws(() => new PageCache(PS, 0), /page size 0 is not a positive integer/);
});

Deno.test("page_cache: slot = (addr / page size) & (slots - 1), keyed by the global ram_addr", () => {
  const c = new PageCache(8 * PS, PS);
  assert.equal(c.slotOf(0), 0);
  assert.equal(c.slotOf(3 * PS), 3);
  assert.equal(c.slotOf(3 * PS + 17), 3);
  assert.equal(c.slotOf(11 * PS), 3);
  // Far above 4 GiB the low page-number bits still select the slot.
  assert.equal(c.slotOf(2 ** 40 + 5 * PS), 5);
  assert.throws(() => c.slotOf(-PS), /not a non-negative integer/);
  fc.assert(
    fc.property(fc.nat({ max: 2 ** 40 }), (pageNo) => {
      assert.equal(c.slotOf(pageNo * PS), pageNo % 8);
    }),
    { seed: 8, numRuns: 200 },
  );
});

Deno.test("page_cache: hit, miss and get", () => {
  const c = new PageCache(4 * PS, PS);
  assert.equal(c.isCached(PS, 0), false);
  assert.equal(c.get(PS), null);
  const data = page(0x11);
  assert.equal(c.insert(PS, data, 0), true);
  assert.equal(c.used, 1);
  data.fill(0x22); // the cache holds a copy
  assert.equal(c.isCached(PS, 0), true);
  assert.deepEqual(c.get(PS), page(0x11));
  // Same slot, other address: a miss, and get() does not hand out the other page's data.
  assert.equal(c.isCached(5 * PS, 0), false);
  assert.equal(c.get(5 * PS), null);
  // get() returns the live buffer: the source updates it in place after a successful encode.
  c.get(PS)!.fill(0x33);
  assert.deepEqual(c.get(PS), page(0x33));
  assert.throws(() => c.insert(0, new Uint8Array(10), 0), /insert of 10 bytes, page size is 4096/);
});

Deno.test("page_cache: a conflicting insert is refused while age + 2 > current, accepted later", () => {
  const c = new PageCache(4 * PS, PS);
  const a = 2 * PS;
  const b = 6 * PS; // same slot as a
  assert.equal(c.insert(a, page(0xaa), 3), true);
  assert.equal(c.insert(b, page(0xbb), 3), false);
  assert.equal(c.insert(b, page(0xbb), 4), false); // 3 + 2 > 4
  assert.deepEqual(c.get(a), page(0xaa)); // the entry stays
  assert.equal(c.get(b), null);
  // Re-inserting the same address is always allowed, and refreshes the age.
  assert.equal(c.insert(a, page(0xa1), 4), true);
  assert.equal(c.insert(b, page(0xbb), 5), false); // 4 + 2 > 5
  assert.equal(c.insert(b, page(0xbb), 6), true); // 4 + 2 > 6 is false: evicted
  assert.equal(c.get(a), null);
  assert.deepEqual(c.get(b), page(0xbb));
  assert.equal(c.used, 1);
});

Deno.test("page_cache: a hit refreshes the age and so protects the entry", () => {
  const c = new PageCache(2 * PS, PS);
  assert.equal(c.insert(0, page(1), 0), true);
  assert.equal(c.isCached(0, 5), true); // age is now 5
  assert.equal(c.insert(2 * PS, page(2), 6), false);
  assert.equal(c.insert(2 * PS, page(2), 7), true);
  // A miss does not touch the age of the entry that is there.
  assert.equal(c.isCached(0, 100), false);
  assert.equal(c.insert(0, page(3), 8), false); // entry 2*PS has age 7: 7 + 2 > 8
});

Deno.test("page_cache: insertZero behaves like an insert of a zero page", () => {
  const c = new PageCache(4 * PS, PS);
  // Updates an existing entry of the same address.
  c.insert(PS, page(0x44), 1);
  assert.equal(c.insertZero(PS, 1), true);
  assert.deepEqual(c.get(PS), page(0));
  // Fills an empty slot (so a small write into the zeroed page can be sent as XBZRLE).
  assert.equal(c.insertZero(2 * PS, 1), true);
  assert.deepEqual(c.get(2 * PS), page(0));
  assert.equal(c.used, 2);
  // Refused while another address's entry is fresh; evicts it once it has aged out.
  assert.equal(c.insertZero(5 * PS, 2), false);
  assert.deepEqual(c.get(PS), page(0));
  c.insert(3 * PS, page(9), 10);
  assert.equal(c.insertZero(7 * PS, 11), false);
  assert.deepEqual(c.get(3 * PS), page(9));
  assert.equal(c.insertZero(7 * PS, 12), true);
  assert.equal(c.get(3 * PS), null);
  assert.deepEqual(c.get(7 * PS), page(0));
});

Deno.test("page_cache: resize builds a new empty table unless the size is unchanged", () => {
  const c = new PageCache(4 * PS, PS);
  c.insert(0, page(1), 0);
  c.insert(3 * PS, page(2), 0);
  c.resize(4 * PS); // same size: nothing to do
  assert.equal(c.slots, 4);
  assert.equal(c.used, 2);
  assert.deepEqual(c.get(3 * PS), page(2));

  c.resize(16 * PS);
  assert.equal(c.slots, 16);
  assert.equal(c.sizeBytes, 16 * PS);
  assert.equal(c.used, 0);
  assert.equal(c.isCached(0, 0), false);
  assert.equal(c.get(3 * PS), null);
  // The new table maps with the new mask: 3 and 7 no longer collide.
  assert.equal(c.insert(3 * PS, page(3), 0), true);
  assert.equal(c.insert(7 * PS, page(7), 0), true);
  assert.equal(c.slotOf(19 * PS), 3);

  c.resize(3 * PS); // rounds down to 2 slots
  assert.equal(c.slots, 2);
  assert.equal(c.used, 0);
  // An invalid size throws and keeps the current table.
  c.insert(PS, page(5), 0);
  assert.throws(() => c.resize(100), /cache size 100 is smaller than the page size/);
  assert.equal(c.slots, 2);
  assert.deepEqual(c.get(PS), page(5));
});
