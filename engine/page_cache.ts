/**
 * The source's XBZRLE page cache: a direct-mapped table of the page contents last sent, keyed by the
 * global ram_addr (block.offset + offset within the block).
 *
 * Slot = (addr / pageSize) & (slots - 1), so the slot count must be a power of two. Each entry records
 * the generation (the caller's dirty-sync count) at which it was inserted or last hit. An entry holding
 * a *different* page is not evicted while age + CACHED_PAGE_LIFETIME > current generation: a page that
 * was just sent is likely to be dirtied and sent again, and losing its copy would force a raw send.
 *
 * Hit/miss/overflow statistics are the caller's business.
 */

/** Generations an entry survives against a conflicting insert. */
export const CACHED_PAGE_LIFETIME = 2;

interface CacheSlot {
  /** ram_addr held, or -1 when the slot has never been filled. */
  addr: number;
  age: number;
  /** Allocated on first insert (64 MiB of default cache need not exist before it is used). */
  data: Uint8Array | null;
}

/** Largest power of two ≤ n (n ≥ 1). */
function pow2Floor(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

export class PageCache {
  readonly pageSize: number;
  #table: CacheSlot[] = [];
  #requested = 0;
  #used = 0;

  /**
   * `cacheSizeBytes / pageSize` is rounded down to a power of two. Current QEMU instead refuses a size
   * that is not a power-of-two number of pages (the xbzrle-cache-size parameter check rejects it first),
   * so with a validated parameter the rounding never changes anything.
   */
  constructor(cacheSizeBytes: number, pageSize: number) {
    if (!Number.isInteger(pageSize) || pageSize <= 0) {
      throw new RangeError(`page cache: page size ${pageSize} is not a positive integer`);
    }
    this.pageSize = pageSize;
    this.#build(cacheSizeBytes);
  }

  #build(cacheSizeBytes: number): void {
    if (!Number.isSafeInteger(cacheSizeBytes) || cacheSizeBytes < this.pageSize) {
      throw new RangeError(
        `page cache: cache size ${cacheSizeBytes} is smaller than the page size ${this.pageSize}`,
      );
    }
    const slots = pow2Floor(Math.floor(cacheSizeBytes / this.pageSize));
    if (slots > 0x40000000) throw new RangeError(`page cache: ${slots} slots is too many`);
    const table: CacheSlot[] = new Array(slots);
    for (let i = 0; i < slots; i++) table[i] = { addr: -1, age: 0, data: null };
    this.#table = table;
    this.#requested = cacheSizeBytes;
    this.#used = 0;
  }

  /** Number of slots (a power of two). */
  get slots(): number {
    return this.#table.length;
  }

  /** Effective capacity in bytes: slots × page size (what the table can hold, not the size asked for). */
  get sizeBytes(): number {
    return this.#table.length * this.pageSize;
  }

  /** Slots that hold a page. */
  get used(): number {
    return this.#used;
  }

  /** The slot an address maps to. */
  slotOf(addr: number): number {
    if (!(addr >= 0) || !Number.isSafeInteger(addr)) {
      throw new RangeError(`page cache: address ${addr} is not a non-negative integer`);
    }
    // Page numbers up to 2^53 are exact doubles; `&` keeps their low 32 bits, which hold every slot bit.
    return Math.floor(addr / this.pageSize) & (this.#table.length - 1);
  }

  /** True when the slot holds `addr`; a hit refreshes the entry's age, which protects it from eviction. */
  isCached(addr: number, currentAge: number): boolean {
    const slot = this.#table[this.slotOf(addr)];
    if (slot.addr !== addr) return false;
    slot.age = currentAge;
    return true;
  }

  /**
   * The cached copy of `addr`, or null. This is the live slot buffer, not a copy: after a successful
   * encode the source overwrites it with the page just sent, so the next delta is against that.
   */
  get(addr: number): Uint8Array | null {
    const slot = this.#table[this.slotOf(addr)];
    return slot.addr === addr ? slot.data : null;
  }

  /**
   * Stores a copy of `data` for `addr` at `currentAge`. Refused (false, the old entry stays) when the
   * slot holds another address that is still fresh: age + CACHED_PAGE_LIFETIME > currentAge. Re-inserting
   * the same address, or filling an empty slot, always succeeds.
   */
  insert(addr: number, data: Uint8Array, currentAge: number): boolean {
    if (data.length !== this.pageSize) {
      throw new RangeError(`page cache: insert of ${data.length} bytes, page size is ${this.pageSize}`);
    }
    const buf = this.#claim(addr, currentAge);
    if (!buf) return false;
    buf.set(data);
    return true;
  }

  /**
   * QEMU's xbzrle_cache_zero_page: after a page is sent as ZERO, record zeros for it so a stale copy
   * cannot serve as the base of a later delta. It is an ordinary insert of a zero page: it also fills an
   * empty slot or evicts an expired entry (so a small write into the zeroed page can go as XBZRLE), and
   * like any insert it is refused while another address's entry is fresh.
   */
  insertZero(addr: number, currentAge: number): boolean {
    const buf = this.#claim(addr, currentAge);
    if (!buf) return false;
    buf.fill(0);
    return true;
  }

  /** Takes over the slot of `addr` at `currentAge` and returns its buffer to fill, or null if refused. */
  #claim(addr: number, currentAge: number): Uint8Array | null {
    const slot = this.#table[this.slotOf(addr)];
    let buf = slot.data;
    if (buf && slot.addr !== addr && slot.age + CACHED_PAGE_LIFETIME > currentAge) return null;
    if (!buf) {
      buf = slot.data = new Uint8Array(this.pageSize);
      this.#used++;
    }
    slot.addr = addr;
    slot.age = currentAge;
    return buf;
  }

  /**
   * Changes the cache size (xbzrle-cache-size set during a migration). As in QEMU's xbzrle_cache_resize,
   * the same size is a no-op and any other size builds a new, EMPTY table: entries are not carried over,
   * so every page misses once more. An invalid size throws and leaves the current table in place.
   */
  resize(newSizeBytes: number): void {
    if (newSizeBytes === this.#requested) return;
    this.#build(newSizeBytes);
  }
}
