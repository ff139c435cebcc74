/**
 * Where a received RAM page goes on the destination: the one rule the main-channel loader (ram.c's
 * ram_load_precopy with host_from_ram_block_offset / colo_cache_from_block_offset) and the multifd
 * receiver (multifd-colo.c) share.
 *
 * - Without x-colo: guest RAM, and the page is marked in the receivedmap.
 * - x-colo before COLO state (the initial precopy): guest RAM, marked received, then mirrored into the
 *   COLO cache, so guest RAM and cache are identical at the switch to COLO.
 * - x-colo in COLO state: the cache only, with the page's bit recorded in the COLO bitmap; guest RAM
 *   waits for the flush after the whole checkpoint is in. Zero pages are recorded too: a page that
 *   turned zero must still overwrite stale guest content at the flush.
 *
 * Zero pages differ by channel, as in QEMU: the main channel writes zeros unless the page already is zero
 * (ram_handle_zero); multifd applies the receivedmap rule (multifd_recv_zero_page_process): a page never
 * received is fresh destination memory, already zero, and is not touched.
 */
import { handleZeroPage, type RamBlock } from "../ram_block.ts";
import { type Defects, NO_DEFECTS } from "../testing/defects.ts";
import type { ColoCache } from "./cache.ts";

/** The known defects that alter the rule (engine/testing/defects.ts); each applies in COLO state only. */
export type RamRouteDefects = Pick<Defects, "multifd-colo-bypass-cache" | "colo-zero-not-recorded">;

/** The channel a page came on: it decides the zero-page rule. */
export type RamChannel = "main" | "multifd";

export class RamRoute {
  constructor(
    readonly channel: RamChannel,
    /** The secondary's cache when x-colo is on. */
    readonly colo: ColoCache | null,
    readonly defects: RamRouteDefects = NO_DEFECTS,
  ) {}

  /** In COLO state, pages go to the cache (unless the bypass defect sends them to guest RAM). */
  get #toCache(): boolean {
    return (this.colo?.inColoState ?? false) && !this.defects["multifd-colo-bypass-cache"];
  }

  /** The buffer a received page's bytes are written into; in COLO state the cache page, bit recorded. */
  host(block: RamBlock, index: number): Uint8Array {
    return this.#toCache ? this.colo!.recordPage(block, index) : block.page(index);
  }

  /** After `host(block, index)` got its bytes: before COLO state, mark the page received and mirror it. */
  received(block: RamBlock, index: number): void {
    // In COLO state nothing but the cache (and its bitmap) may change until the flush.
    if (this.colo?.inColoState) return;
    block.testAndSetReceived(index);
    this.colo?.mirror(block, index);
  }

  /** A zero page (a ZERO record, or an offset in a multifd packet's zero list). */
  zeroPage(block: RamBlock, index: number): void {
    const colo = this.colo;
    if (colo?.inColoState) {
      if (!this.#toCache) handleZeroPage(block.page(index));
      else if (this.defects["colo-zero-not-recorded"]) handleZeroPage(colo.page(block, index));
      else handleZeroPage(colo.recordPage(block, index));
      return;
    }
    const wasReceived = block.testAndSetReceived(index);
    if (this.channel === "main" || wasReceived) handleZeroPage(block.page(index));
    colo?.mirror(block, index);
  }
}
