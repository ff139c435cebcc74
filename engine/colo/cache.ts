/**
 * The secondary's COLO cache (colo_init_ram_cache / colo_flush_ram_cache in migration/ram.c): a copy of
 * every RAM block holding the primary's state, and a bitmap of pages received since the last flush.
 *
 * During the initial precopy every received page goes to guest RAM and to the cache, so the backup costs
 * nothing at switchover. In COLO state received pages go to the cache only, with their bit set; the flush
 * after a complete checkpoint copies cache → guest RAM for (pages received ∪ pages the secondary dirtied).
 */
import { popcount32, type RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";

class BlockCache {
  readonly mem: Uint8Array;
  readonly bmap: Uint32Array;
  constructor(readonly block: RamBlock) {
    this.mem = new Uint8Array(block.usedLength);
    this.bmap = new Uint32Array(Math.ceil(block.pages / 32));
  }
}

export class ColoCache {
  readonly #caches = new Map<RamBlock, BlockCache>();
  /** Received pages go to the cache only (the incoming side is in COLO state). */
  inColoState = false;
  #released = false;

  constructor(readonly blocks: RamBlock[]) {
    for (const b of blocks) this.#caches.set(b, new BlockCache(b));
  }

  get released(): boolean {
    return this.#released;
  }

  #cache(block: RamBlock): BlockCache {
    if (this.#released) this.onUseAfterRelease();
    return this.#caches.get(block)!;
  }

  /**
   * What a write into a freed cache does. In QEMU it is a use-after-free (a crash at best); the engine
   * process sets this to abort, so a harness sees the secondary die rather than silently go on.
   */
  onUseAfterRelease: () => never = () => {
    throw new Error("COLO cache used after it was released");
  };

  /** The whole cache of one block (test introspection). */
  blockMemory(block: RamBlock): Uint8Array {
    return this.#cache(block).mem;
  }

  page(block: RamBlock, index: number): Uint8Array {
    const off = index * TARGET_PAGE_SIZE;
    return this.#cache(block).mem.subarray(off, off + TARGET_PAGE_SIZE);
  }

  /** colo_cache_from_block_offset(..., record=true): the cache page, with its bit set. */
  recordPage(block: RamBlock, index: number): Uint8Array {
    const c = this.#cache(block);
    c.bmap[index >>> 5] |= 1 << (index & 31);
    return this.page(block, index);
  }

  /** Precopy: the page just written to guest RAM is mirrored into the cache. */
  mirror(block: RamBlock, index: number): void {
    this.page(block, index).set(block.page(index));
  }

  /** Pages received since the last flush (bits set). */
  pendingPages(): number {
    let n = 0;
    for (const c of this.#caches.values()) for (const w of c.bmap) if (w) n += popcount32(w);
    return n;
  }

  /**
   * colo_flush_ram_cache: take the secondary's own dirty log into the bitmap, then copy every marked page
   * cache → guest RAM and clear its bit. Returns the number of pages copied.
   */
  flush(): number {
    let copied = 0;
    for (const [block, c] of this.#caches) {
      const log = block.dirtyLog;
      for (let w = 0; w < c.bmap.length; w++) {
        const bits = (c.bmap[w] | Atomics.exchange(log, w, 0)) >>> 0;
        if (!bits) continue;
        c.bmap[w] = 0;
        for (let b = bits; b; b &= b - 1) {
          const index = (w << 5) + (31 - Math.clz32(b & -b));
          if (index >= block.pages) continue;
          block.page(index).set(this.page(block, index));
          copied++;
        }
      }
    }
    return copied;
  }

  /** colo_incoming_start_dirty_log: forget what the secondary wrote before COLO began. */
  startDirtyLog(): void {
    for (const b of this.blocks) b.clearDirtyLog();
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#caches.clear();
  }
}
