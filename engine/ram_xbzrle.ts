/**
 * How the RAM section uses XBZRLE on the source (save_xbzrle_page in migration/ram.c): the page cache
 * policy, what is sent on a hit, a miss and an overflow, and the counters query-migrate reports.
 */
import { PageCache } from "./page_cache.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import { xbzrleEncode } from "./xbzrle.ts";

/** The encoding byte that precedes an XBZRLE body. */
export const ENCODING_FLAG_XBZRLE = 0x01;

export type XbzrleOutcome =
  /**
   * Send the page raw (a miss, or an overflow). When the cache now holds the page, `data` is that copy
   * and must be what is sent: the next delta is computed against it, so the destination must have exactly
   * it (the live page may have changed since the cache copy was taken).
   */
  | { kind: "raw"; data?: Uint8Array }
  /** The page did not change against the cache: nothing is sent. */
  | { kind: "unchanged" }
  /** Send these encoded bytes. */
  | { kind: "encoded"; data: Uint8Array };

export class XbzrleSaveState {
  readonly cache: PageCache;
  /** XBZRLE starts after the first complete round (xbzrle_started). */
  started = false;
  readonly counters = { pages: 0, bytes: 0, cacheMiss: 0, overflow: 0, encodedIn: 0, encodedOut: 0 };
  /** Lookups for the miss rate. */
  #lookups = 0;
  readonly #current = new Uint8Array(TARGET_PAGE_SIZE);
  readonly #encoded = new Uint8Array(TARGET_PAGE_SIZE);
  /** Where the simulated world may let the guest write the page in the middle of its XBZRLE handling. */
  readonly #interleave?: (point: string, page?: number) => void;

  constructor(cacheSize: number, interleave?: (point: string, page?: number) => void) {
    this.cache = new PageCache(cacheSize, TARGET_PAGE_SIZE);
    this.#interleave = interleave;
  }

  /**
   * Decides how to send the page at global address `addr` in sync generation `generation`. In the last
   * stage (the guest is stopped, nothing will be sent again) the cache is not updated.
   */
  save(addr: number, page: Uint8Array, generation: number, lastStage: boolean): XbzrleOutcome {
    this.#lookups++;
    if (!this.cache.isCached(addr, generation)) {
      this.counters.cacheMiss++;
      if (!lastStage && this.cache.insert(addr, page, generation)) {
        // The cache holds its copy and the page is not yet out: a write here must not reach the wire.
        this.#interleave?.("xbzrle-miss-cached", addr);
        return { kind: "raw", data: this.cache.get(addr)! };
      }
      return { kind: "raw" };
    }
    // Encode a private copy: the guest may be writing the page right now.
    this.#current.set(page);
    // The private copy is taken and not yet encoded: a write here must reach neither delta nor cache.
    this.#interleave?.("xbzrle-page-copied", addr);
    const cached = this.cache.get(addr)!;
    const len = xbzrleEncode(cached, this.#current, this.#encoded);
    if (len === 0) return { kind: "unchanged" };
    if (len < 0) {
      this.counters.overflow++;
      cached.set(this.#current);
      return { kind: "raw", data: cached };
    }
    if (!lastStage) cached.set(this.#current);
    this.counters.pages++;
    this.counters.encodedIn += TARGET_PAGE_SIZE;
    this.counters.encodedOut += len;
    return { kind: "encoded", data: this.#encoded.subarray(0, len) };
  }

  /** xbzrle_cache_zero_page: a page sent as ZERO gets a zero cache entry once XBZRLE has started. */
  zeroPage(addr: number, generation: number): void {
    if (this.started) this.cache.insertZero(addr, generation);
  }

  /** The "xbzrle-cache" member of query-migrate. */
  query(): Record<string, number> {
    const c = this.counters;
    return {
      "cache-size": this.cache.sizeBytes,
      bytes: c.bytes,
      pages: c.pages,
      "cache-miss": c.cacheMiss,
      "cache-miss-rate": this.#lookups ? c.cacheMiss / this.#lookups : 0,
      "encoding-rate": c.encodedOut ? c.encodedIn / c.encodedOut : 0,
      overflow: c.overflow,
    };
  }
}
