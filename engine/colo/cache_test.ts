import assert from "node:assert/strict";
import { RamBlock } from "../ram_block.ts";
import { ColoCache } from "./cache.ts";

function blocks(): RamBlock[] {
  return [
    new RamBlock({ idstr: "pc.ram", size: 40 * 4096 }),
    new RamBlock({ idstr: "vga.vram", size: 3 * 4096 }),
  ];
}

Deno.test("colo cache: precopy mirrors guest RAM; in COLO state pages wait in the cache until the flush", () => {
  const [ram, vga] = blocks();
  const cache = new ColoCache([ram, vga]);
  // Precopy: a received page lands in guest RAM, then the cache mirrors it.
  ram.page(3).fill(0x33);
  cache.mirror(ram, 3);
  assert.deepEqual(cache.page(ram, 3), ram.page(3));
  // COLO state: the page goes to the cache only, with its bit set.
  cache.inColoState = true;
  cache.recordPage(ram, 5).fill(0x55);
  assert.equal(ram.page(5)[0], 0, "guest RAM untouched before the flush");
  assert.equal(cache.pendingPages(), 1);
  assert.equal(cache.flush(), 1);
  assert.equal(ram.page(5)[0], 0x55);
  assert.equal(cache.pendingPages(), 0);
});

Deno.test("colo cache: the flush also restores pages the secondary dirtied itself (and only those)", () => {
  const [ram, vga] = blocks();
  const cache = new ColoCache([ram, vga]);
  cache.inColoState = true;
  cache.startDirtyLog();
  // The secondary writes page 7 of pc.ram and page 2 of vga.vram; the primary sent nothing for them.
  ram.page(7).fill(0xee);
  ram.markDirty(7);
  vga.page(2).fill(0xdd);
  vga.markDirty(2);
  ram.page(9).fill(0x99); // written without being logged: not the secondary's tracked writes
  assert.equal(cache.flush(), 2);
  assert.equal(ram.page(7)[0], 0, "restored from the cache (the primary's content)");
  assert.equal(vga.page(2)[0], 0);
  assert.equal(ram.page(9)[0], 0x99);
});

Deno.test("colo cache: a released cache refuses any use (multifd channels must stop first)", () => {
  const [ram, vga] = blocks();
  const cache = new ColoCache([ram, vga]);
  cache.release();
  assert.throws(() => cache.recordPage(ram, 0), /COLO cache used after it was released/);
});
