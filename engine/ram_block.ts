/**
 * RAMBlock: one region of guest RAM with its dirty log.
 *
 * Memory and the dirty log live in SharedArrayBuffers: the vCPU worker writes guest memory and then sets
 * the page's bit in `dirtyLog` with an atomic OR (the KVM dirty log), while the migration code takes the
 * log with an atomic exchange in `syncDirtyLog`. Because the vCPU marks a page *after* writing it, a bit
 * taken by the sync always covers a write that is already visible, and a later write sets the bit again.
 */
import { type HostRam, type RamShare, viewRam } from "./hostmem.ts";

export const TARGET_PAGE_SIZE = 4096;
export const TARGET_PAGE_BITS = 12;

export interface RamBlockSpec {
  idstr: string;
  /** used_length in bytes; a multiple of the page size. */
  size: number;
  /** The guest-physical address of the block's region (mr->addr; x-ignore-shared sends it). */
  addr?: number;
}

/** The shareable parts of a block, handed to the vCPU worker. */
export interface SharedRamBlock {
  idstr: string;
  size: number;
  mem: RamShare;
  dirtyLog: SharedArrayBuffer;
}

export class RamBlock {
  readonly idstr: string;
  readonly usedLength: number;
  readonly pageSize = TARGET_PAGE_SIZE;
  readonly pages: number;
  readonly mem: Uint8Array;
  /** 1 bit per page, set by the vCPU after each write; shared. */
  readonly dirtyLog: Int32Array;
  /** Migration bitmap (QEMU's `bmap`): pages still to send. */
  readonly bmap: Uint32Array;
  /** Destination side: pages received so far (QEMU's `receivedmap`). */
  readonly receivedmap: Uint32Array;
  /** Sum of all earlier blocks' lengths: the block's ram_addr (used to key the XBZRLE cache). */
  offset = 0;
  /** Guest-physical address of its region (mr->addr). */
  readonly addr: number;
  /** Its memory is a shared mapping of a file (qemu_ram_is_shared): x-ignore-shared leaves it out. */
  readonly share: boolean;
  /** The descriptor behind its memory (a memfd's): what cpr-transfer passes on; null when there is none. */
  readonly fd: number | null;
  readonly #memShare: RamShare;

  /**
   * A block of fresh memory; or a view of a block another thread holds (`shared`); or a memory
   * backend's mapping (`backend`).
   */
  constructor(spec: RamBlockSpec, shared?: SharedRamBlock, backend?: { ram: HostRam; share: boolean }) {
    if (spec.size <= 0 || spec.size % TARGET_PAGE_SIZE !== 0) {
      throw new Error(
        `RAM block ${spec.idstr}: size ${spec.size} is not a positive multiple of the page size`,
      );
    }
    this.idstr = spec.idstr;
    this.usedLength = spec.size;
    this.pages = spec.size / TARGET_PAGE_SIZE;
    const words = Math.ceil(this.pages / 32);
    this.addr = spec.addr ?? 0;
    this.share = backend?.share ?? false;
    this.fd = backend?.ram.fd ?? null;
    this.#memShare = backend?.ram.share ?? shared?.mem ?? new SharedArrayBuffer(spec.size);
    this.mem = backend?.ram.mem ?? viewRam(this.#memShare);
    if (this.mem.length !== spec.size) {
      throw new Error(`RAM block ${spec.idstr}: its memory is ${this.mem.length} bytes, not ${spec.size}`);
    }
    this.dirtyLog = new Int32Array(shared?.dirtyLog ?? new SharedArrayBuffer(words * 4));
    this.bmap = new Uint32Array(words);
    this.receivedmap = new Uint32Array(words);
  }

  shared(): SharedRamBlock {
    return {
      idstr: this.idstr,
      size: this.usedLength,
      mem: this.#memShare,
      dirtyLog: this.dirtyLog.buffer as SharedArrayBuffer,
    };
  }

  page(index: number): Uint8Array {
    const off = index * TARGET_PAGE_SIZE;
    return this.mem.subarray(off, off + TARGET_PAGE_SIZE);
  }

  /** Marks a page written by someone other than the vCPU (qtest writes, device DMA). */
  markDirty(index: number): void {
    Atomics.or(this.dirtyLog, index >>> 5, 1 << (index & 31));
  }

  /** Marks every page for sending (migration setup: `bitmap_set` all). Returns the page count. */
  setAllDirty(): number {
    this.bmap.fill(0xffffffff);
    const tail = this.pages & 31;
    if (tail) this.bmap[this.bmap.length - 1] = (1 << tail) - 1 >>> 0;
    return this.pages;
  }

  /**
   * Moves the dirty log into the migration bitmap; returns how many pages became newly dirty. `between`
   * runs after a word is seen non-zero and before it is taken (the simulated world's guest writes a page
   * of that word there, as a vCPU on another core can): the take must be one atomic exchange, or a bit
   * set in between is lost.
   */
  syncDirtyLog(between?: (page: number) => void): number {
    let added = 0;
    const log = this.dirtyLog;
    const bmap = this.bmap;
    for (let i = 0; i < bmap.length; i++) {
      const seen = Atomics.load(log, i);
      if (seen === 0) continue;
      // A page of this word whose bit was not seen set (its write would be lost with the read).
      if (between) {
        const free = ~seen & (seen + 1); // the lowest clear bit alone; 0 when all are set
        between(Math.min(this.pages - 1, i * 32 + (free ? 31 - Math.clz32(free) : 0)));
      }
      const v = Atomics.exchange(log, i, 0) >>> 0;
      const fresh = v & ~bmap[i];
      if (fresh) {
        added += popcount32(fresh);
        bmap[i] = (bmap[i] | v) >>> 0;
      }
    }
    return added;
  }

  /** Discards the dirty log (dirty logging starts: nothing written before counts). */
  clearDirtyLog(): void {
    for (let i = 0; i < this.dirtyLog.length; i++) Atomics.store(this.dirtyLog, i, 0);
  }

  /** First page ≥ `from` with its bmap bit set, or -1. */
  findDirty(from: number): number {
    const bmap = this.bmap;
    let w = from >>> 5;
    if (w >= bmap.length) return -1;
    let bits = bmap[w] & (0xffffffff << (from & 31));
    while (true) {
      if (bits) return (w << 5) + (31 - Math.clz32(bits & -bits));
      if (++w >= bmap.length) return -1;
      bits = bmap[w];
    }
  }

  isDirty(index: number): boolean {
    return (this.bmap[index >>> 5] & (1 << (index & 31))) !== 0;
  }

  setDirty(index: number): void {
    this.bmap[index >>> 5] = (this.bmap[index >>> 5] | (1 << (index & 31))) >>> 0;
  }

  testAndClearDirty(index: number): boolean {
    const w = index >>> 5;
    const m = 1 << (index & 31);
    if (!(this.bmap[w] & m)) return false;
    this.bmap[w] = (this.bmap[w] & ~m) >>> 0;
    return true;
  }

  countDirty(): number {
    let n = 0;
    for (let i = 0; i < this.bmap.length; i++) if (this.bmap[i]) n += popcount32(this.bmap[i]);
    return n;
  }

  /** A page dropped on the destination (a postcopy discard): it is no longer received. */
  clearReceived(index: number): void {
    this.receivedmap[index >>> 5] &= ~(1 << (index & 31));
  }

  /** Returns whether the page was already marked received, and marks it. */
  testAndSetReceived(index: number): boolean {
    const w = index >>> 5;
    const m = 1 << (index & 31);
    const was = (this.receivedmap[w] & m) !== 0;
    this.receivedmap[w] |= m;
    return was;
  }
}

export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** True if every byte of the page is zero (QEMU's buffer_is_zero). */
export function isZeroPage(page: Uint8Array): boolean {
  // Most non-zero pages differ in their first bytes; test those before building a word view.
  if (page[0] !== 0 || page[page.length - 1] !== 0) return false;
  const words = new Uint32Array(page.buffer, page.byteOffset, page.length >>> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/** ram_handle_zero: only write zeros where the page is not already zero (do not touch fresh memory). */
export function handleZeroPage(page: Uint8Array): void {
  if (!isZeroPage(page)) page.fill(0);
}
