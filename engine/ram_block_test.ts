import assert from "node:assert/strict";
import fc from "fast-check";
import { isZeroPage, popcount32, RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";

function naivePopcount(v: number): number {
  let n = 0;
  for (let i = 0; i < 32; i++) if ((v >>> i) & 1) n++;
  return n;
}

/** Pages with their bmap bit set, by testing every bit. */
function bmapPages(b: RamBlock): number[] {
  const out: number[] = [];
  for (let p = 0; p < b.bmap.length * 32; p++) if (b.bmap[p >>> 5] & (1 << (p & 31))) out.push(p);
  return out;
}

function block(pages: number): RamBlock {
  return new RamBlock({ idstr: "pc.ram", size: pages * TARGET_PAGE_SIZE });
}

Deno.test("ram_block: popcount32 agrees with a naive count (property)", () => {
  for (const v of [0, 1, 0x80000000, 0xffffffff, -1, 0x55555555]) {
    assert.equal(popcount32(v), naivePopcount(v));
  }
  fc.assert(
    fc.property(fc.integer({ min: -0x80000000, max: 0xffffffff }), (v) => {
      assert.equal(popcount32(v), naivePopcount(v));
    }),
    { seed: 32, numRuns: 2000 },
  );
});

Deno.test("ram_block: constructor validates size and derives pages and bitmap words", () => {
  assert.throws(() => block(0), /not a positive multiple of the page size/);
  assert.throws(() => new RamBlock({ idstr: "x", size: 4097 }), /not a positive multiple/);
  const b = block(33);
  assert.equal(b.pages, 33);
  assert.equal(b.bmap.length, 2);
  assert.equal(b.dirtyLog.length, 2);
  assert.equal(b.mem.length, 33 * TARGET_PAGE_SIZE);
  // The shared parts build a block over the same memory.
  const twin = new RamBlock({ idstr: "pc.ram", size: b.usedLength }, b.shared());
  twin.mem[5] = 9;
  assert.equal(b.mem[5], 9);
  twin.markDirty(3);
  assert.equal(b.dirtyLog[0], 8);
});

Deno.test("ram_block: setAllDirty masks the tail word", async (t) => {
  for (const pages of [1, 31, 32, 33, 37, 64, 65, 100]) {
    await t.step(`${pages} pages`, () => {
      const b = block(pages);
      assert.equal(b.setAllDirty(), pages);
      assert.equal(b.countDirty(), pages);
      assert.deepEqual(bmapPages(b), Array.from({ length: pages }, (_, i) => i));
      assert.equal(b.findDirty(pages - 1), pages - 1);
      assert.equal(b.findDirty(pages), -1);
    });
  }
});

Deno.test("ram_block: findDirty / testAndClearDirty walk exactly the set bits (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }).chain((pages) =>
        fc.tuple(fc.constant(pages), fc.uniqueArray(fc.nat(pages - 1), { maxLength: pages }))
      ),
      ([pages, dirty]) => {
        const b = block(pages);
        for (const p of dirty) {
          b.markDirty(p);
        }
        assert.equal(b.syncDirtyLog(), dirty.length);
        const expected = [...dirty].sort((x, y) => x - y);
        const found: number[] = [];
        for (let p = b.findDirty(0); p >= 0; p = b.findDirty(p + 1)) found.push(p);
        assert.deepEqual(found, expected);
        for (const p of expected) {
          assert.equal(b.testAndClearDirty(p), true);
          assert.equal(b.testAndClearDirty(p), false);
        }
        assert.equal(b.countDirty(), 0);
        assert.equal(b.findDirty(0), -1);
      },
    ),
    { seed: 99, numRuns: 300 },
  );
});

Deno.test("ram_block: findDirty from positions inside and past words", () => {
  const b = block(100);
  for (const p of [0, 31, 32, 63, 99]) b.markDirty(p);
  b.syncDirtyLog();
  assert.equal(b.findDirty(0), 0);
  assert.equal(b.findDirty(1), 31);
  assert.equal(b.findDirty(32), 32);
  assert.equal(b.findDirty(33), 63);
  assert.equal(b.findDirty(64), 99);
  assert.equal(b.findDirty(100), -1);
  assert.equal(b.findDirty(1000), -1);
});

Deno.test("ram_block: syncDirtyLog counts only newly dirty pages and empties the log", () => {
  const b = block(70);
  b.markDirty(1);
  b.markDirty(40);
  b.markDirty(69);
  assert.equal(b.syncDirtyLog(), 3);
  assert.deepEqual(Array.from(b.dirtyLog), [0, 0, 0]);
  // Page 40 is still pending in bmap: marking it again is not new.
  b.markDirty(40);
  b.markDirty(41);
  assert.equal(b.syncDirtyLog(), 1);
  assert.deepEqual(bmapPages(b), [1, 40, 41, 69]);
  assert.equal(b.syncDirtyLog(), 0);
  // Page 31 sets the sign bit of the Int32 word.
  b.markDirty(31);
  assert.equal(b.syncDirtyLog(), 1);
  assert.equal(b.countDirty(), 5);
  assert.ok(b.bmap[0] >= 0x80000000);
});

Deno.test("ram_block: a bit set between a word's read and its take is taken, not lost", () => {
  const b = block(70);
  b.markDirty(3);
  b.markDirty(33);
  b.markDirty(32);
  const named: number[] = [];
  // The guest writes the page the sync names, in the window, as the simulated vCPU does.
  assert.equal(b.syncDirtyLog((page) => (named.push(page), b.markDirty(page))), 5);
  // Each word's lowest page whose bit was clear: 0 in word 0, 34 in word 1 (32 and 33 were set).
  assert.deepEqual(named, [0, 34]);
  assert.deepEqual(bmapPages(b), [0, 3, 32, 33, 34]);
  assert.deepEqual(Array.from(b.dirtyLog), [0, 0, 0]);
  // A full word names its first page; a word past the block's end is never named beyond it.
  for (let p = 64; p < 70; p++) b.markDirty(p);
  const last: number[] = [];
  b.syncDirtyLog((page) => last.push(page));
  assert.deepEqual(last, [69]);
});

Deno.test("ram_block: clearDirtyLog discards pending log bits", () => {
  const b = block(40);
  b.markDirty(2);
  b.markDirty(39);
  b.clearDirtyLog();
  assert.equal(b.syncDirtyLog(), 0);
  assert.equal(b.countDirty(), 0);
});

Deno.test("ram_block: testAndSetReceived reports the previous state", () => {
  const b = block(40);
  assert.equal(b.testAndSetReceived(35), false);
  assert.equal(b.testAndSetReceived(35), true);
  assert.equal(b.testAndSetReceived(31), false);
  assert.equal(b.receivedmap[0] >>> 0, 0x80000000);
});

Deno.test("ram_block: isZeroPage sees any non-zero byte, including at offsets in a larger buffer", () => {
  const b = block(3);
  assert.ok(isZeroPage(b.page(1)));
  fc.assert(
    fc.property(fc.nat(TARGET_PAGE_SIZE - 1), fc.integer({ min: 1, max: 255 }), (at, v) => {
      const page = b.page(1);
      page[at] = v;
      assert.equal(isZeroPage(page), false);
      // Neighbouring pages are unaffected.
      assert.ok(isZeroPage(b.page(0)));
      assert.ok(isZeroPage(b.page(2)));
      page[at] = 0;
      assert.ok(isZeroPage(page));
    }),
    { seed: 5, numRuns: 300 },
  );
});
