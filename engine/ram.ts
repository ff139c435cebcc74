/**
 * The "ram" live section (migration/ram.c): the block list at setup, page records while iterating, the
 * final pass at completion, and the destination's record loader.
 */
import type { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";
import type { ColoCache } from "./colo/cache.ts";
import type { MultifdRecvState } from "./multifd/recv.ts";
import type { MultifdSendState } from "./multifd/send.ts";
import { isZeroPage, type RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import { RamRoute } from "./colo/ram_route.ts";
import { RAM_SECTION_ID, type SaveCompleteOptions, type SaveStateEntry, type SaveVMState } from "./savevm.ts";
import { ENCODING_FLAG_XBZRLE, type XbzrleSaveState } from "./ram_xbzrle.ts";
import { xbzrleDecode } from "./xbzrle.ts";
import type { PostcopyIncoming } from "./postcopy_ram.ts";
import { loadBlock, type MappedRamSave } from "./ram_mapped.ts";
import type { SeekableLink } from "./transport/file.ts";

export const RAM_SAVE_FLAG_FULL = 0x01;
export const RAM_SAVE_FLAG_ZERO = 0x02;
export const RAM_SAVE_FLAG_MEM_SIZE = 0x04;
export const RAM_SAVE_FLAG_PAGE = 0x08;
export const RAM_SAVE_FLAG_EOS = 0x10;
export const RAM_SAVE_FLAG_CONTINUE = 0x20;
export const RAM_SAVE_FLAG_XBZRLE = 0x40;
export const RAM_SAVE_FLAG_HOOK = 0x80;
export const RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
export const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

/** The "ram" SaveStateEntry: idstr "ram", instance 0, version 4. */
export const RAM_IDSTR = "ram";
export const RAM_VERSION_ID = 4;

/** ram_save_iterate checks the clock every 64 pages and returns after MAX_WAIT ms. */
const MAX_WAIT_MS = 50;

export type ZeroPageDetection = "none" | "legacy" | "multifd";

export interface RamCounters {
  /** Zero pages sent as ZERO records ("duplicate" in query-migrate). */
  duplicate: number;
  /** Pages sent in full. */
  normal: number;
  /** Bytes of RAM records written (headers and bodies). */
  transferred: number;
}

export class RamSaveState {
  /** Where the page scan resumes (QEMU's last_seen_block / last_page). */
  #scanBlock = 0;
  #scanPage = 0;
  /**
   * CONTINUE tracking per channel (main, and postcopy's preempt channel); persists across sections and is
   * only reset when a postcopy recovery starts a new channel.
   */
  #lastSentBlock: RamBlock | null = null;
  #lastSentBlockUrgent: RamBlock | null = null;
  /** In postcopy: pages go on the main channel (or the preempt channel), never multifd or XBZRLE. */
  #postcopy = false;
  /** Page requests from the destination not yet served (ram_save_queue_pages → src_page_requests). */
  readonly #requests: { block: RamBlock; page: number; count: number }[] = [];
  /** Requests received (query-migrate's postcopy-requests). */
  postcopyRequests = 0;
  /**
   * Requested pages already sent (clean when asked for): the request crossed its page on the way, the
   * window where a source that sends it again makes the destination place it twice.
   */
  requestsForSentPages = 0;
  /** Set when a request is queued: the postcopy loop wakes for it. */
  onRequest: (() => void) | null = null;
  /** Pages set in the migration bitmaps (migration_dirty_pages). */
  dirtyPages = 0;
  dirtySyncCount = 0;
  /** When the dirty log was last synced. */
  lastSync = 0;
  /** Called at the end of each sync period (a second or more) with the bytes dirtied in it (auto-converge). */
  onSyncPeriod: ((dirtiedBytes: number) => void) | null = null;
  /** dirty-pages-rate, recomputed at a sync at most once per second (as migration_bitmap_sync does). */
  dirtyPagesRate = 0;
  #periodStart: number;
  #periodDirtied = 0;
  readonly counters: RamCounters = { duplicate: 0, normal: 0, transferred: 0 };

  /** Set when the scan wrapped past the last block: the next page starts a new round. */
  #roundEnded = false;
  /** ram_save_complete is running: the XBZRLE cache is no longer updated. */
  #lastStage = false;
  readonly multifd: MultifdSendState | null;
  readonly xbzrle: XbzrleSaveState | null;
  /** mapped-ram: pages go to their fixed offsets in the file, not into the stream. */
  readonly mappedRam: MappedRamSave | null;

  readonly #interleave?: (point: string, page?: number) => void;
  readonly #flushDirtyRing?: () => void;

  /** The blocks migrated (RAMBLOCK_FOREACH_NOT_IGNORED): tracked, scanned and sent. */
  readonly blocks: RamBlock[];
  /** Every migratable block (RAMBLOCK_FOREACH_MIGRATABLE): the block list names them all. */
  readonly #listed: RamBlock[];
  readonly #ignoreShared: boolean;
  readonly #cprTransfer: boolean;
  /** multifd-flush-after-each-section: the channels sync at every section's end, not once a round. */
  readonly #syncPerSection: boolean;

  constructor(
    listed: RamBlock[],
    private readonly zeroPageDetection: () => ZeroPageDetection,
    private readonly now: () => number = () => performance.now(),
    opts: {
      /** With multifd, normal pages go to the channels and the main channel carries the sync flags. */
      multifd?: MultifdSendState | null;
      /** With xbzrle, pages already sent once go as deltas against the page cache. */
      xbzrle?: XbzrleSaveState | null;
      /** Where the simulated world may let the guest write in the middle of sending a page. */
      interleave?: (point: string, page?: number) => void;
      /** With mapped-ram, each block's layout follows it in the block list; pages are written in place. */
      mappedRam?: MappedRamSave | null;
      /** kvm_dirty_ring_flush: the vCPU's dirty ring reaped into the bitmaps before each sync. */
      flushDirtyRing?: () => void;
      /** x-ignore-shared: blocks in shared memory are listed (with their address) but never sent. */
      ignoreShared?: boolean;
      /** mode cpr-transfer: the target has every block's memory already; none is sent. */
      cprTransfer?: boolean;
      /**
       * multifd-flush-after-each-section (machine types up to 8.0): SYNC on every channel before each
       * EOS and no MULTIFD_FLUSH, which QEMU before 8.0 does not know.
       */
      syncPerSection?: boolean;
    } = {},
  ) {
    this.#listed = listed;
    this.#ignoreShared = opts.ignoreShared ?? false;
    this.#cprTransfer = opts.cprTransfer ?? false;
    this.#syncPerSection = !opts.mappedRam && (opts.syncPerSection ?? false);
    this.blocks = listed.filter((b) => !ramblockIsIgnored(b, this.#ignoreShared, this.#cprTransfer));
    this.#interleave = opts.interleave;
    this.#flushDirtyRing = opts.flushDirtyRing;
    this.mappedRam = opts.mappedRam ?? null;
    this.multifd = opts.multifd ?? null;
    this.xbzrle = opts.xbzrle ?? null;
    this.#periodStart = now();
  }

  /** ram_bytes_total: the migrated blocks' RAM (query-migrate's total). */
  get totalBytes(): number {
    return this.blocks.reduce((n, b) => n + b.usedLength, 0);
  }

  /**
   * ram_save_setup: every page dirty, the dirty log started and synced once, then the block list (and,
   * with multifd, a first sync so no channel runs before the destination has set up).
   */
  async setup(f: QEMUFileWriter): Promise<void> {
    this.dirtyPages = 0;
    for (const b of this.blocks) {
      this.dirtyPages += b.setAllDirty();
      b.clearDirtyLog();
    }
    this.syncBitmap();
    const start = f.position;
    // ram_bytes_total_with_ignored: the destination checks it against all of its RAM.
    f.putBe64(this.#listed.reduce((n, b) => n + b.usedLength, 0) + RAM_SAVE_FLAG_MEM_SIZE);
    for (const b of this.#listed) {
      f.putCountedString(b.idstr);
      f.putBe64(b.usedLength);
      if (this.#ignoreShared) f.putBe64(b.addr);
      const ignored = ramblockIsIgnored(b, this.#ignoreShared, this.#cprTransfer);
      if (this.mappedRam) await this.mappedRam.setupBlock(f, b, ignored);
    }
    if (this.multifd) await this.#multifdFlushAndSync(f);
    f.putBe64(RAM_SAVE_FLAG_EOS);
    this.counters.transferred += f.position - start;
  }

  /** Before postcopy: every multifd page is in the destination's memory before it starts listening. */
  async flushMultifd(f: QEMUFileWriter): Promise<void> {
    if (this.multifd) await this.#multifdFlushAndSync(f);
  }

  /**
   * multifd_ram_flush_and_sync: every channel sends SYNC, then MULTIFD_FLUSH on the main channel. With
   * mapped-ram the channels are only waited for (MULTIFD_SYNC_LOCAL): no packet, no flag. Synced per
   * section, the flag is left out too: the EOS that follows is the destination's cue.
   */
  async #multifdFlushAndSync(f: QEMUFileWriter): Promise<void> {
    await this.multifd!.sync();
    if (this.mappedRam || this.#syncPerSection) return;
    f.putBe64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
    this.counters.transferred += 8;
    // The flag must reach the destination now: its channels are parked at the barrier until it does,
    // and the next round's packets would otherwise block behind them (a deadlock).
    await f.flush();
  }

  /** migration_bitmap_sync: pull the vCPU dirty log into the migration bitmaps. */
  syncBitmap(): void {
    this.#flushDirtyRing?.();
    let added = 0;
    const interleave = this.#interleave;
    for (const b of this.blocks) {
      // The guest may write between a word's read and its take (a page of the word, as a ram_addr).
      added += b.syncDirtyLog(
        interleave && ((page) => interleave("dirty-sync-word", b.offset + page * TARGET_PAGE_SIZE)),
      );
    }
    this.dirtyPages += added;
    this.#periodDirtied += added;
    this.dirtySyncCount++;
    const t = this.now();
    this.lastSync = t;
    if (t - this.#periodStart >= 1000) {
      this.dirtyPagesRate = Math.round(this.#periodDirtied * 1000 / (t - this.#periodStart));
      this.onSyncPeriod?.(this.#periodDirtied * TARGET_PAGE_SIZE);
      this.#periodStart = t;
      this.#periodDirtied = 0;
    }
  }

  /** ram_state_pending_estimate / _exact (the exact one syncs first). */
  pendingBytes(): number {
    return this.dirtyPages * TARGET_PAGE_SIZE;
  }

  /**
   * ram_save_iterate: send dirty pages from the last scan position until `rateExceeded` says stop, no
   * dirty page is left, or MAX_WAIT passed; then EOS. Returns the number of pages sent.
   */
  async iterate(f: QEMUFileWriter, rateExceeded: () => boolean): Promise<number> {
    const t0 = this.now();
    let sent = 0;
    while (!rateExceeded()) {
      const r = this.#sendNext(f);
      if (!(r === true || (r !== false && await r))) break;
      sent++;
      if (f.needsFlush) await f.push();
      if ((sent & 63) === 0 && this.now() - t0 > MAX_WAIT_MS) break;
    }
    await this.mappedRam?.flush();
    if (this.multifd && this.#syncPerSection) await this.#multifdFlushAndSync(f);
    f.putBe64(RAM_SAVE_FLAG_EOS);
    this.counters.transferred += 8;
    return sent;
  }

  /**
   * ram_save_complete: a last sync, then every remaining dirty page with no rate limit, then EOS. A COLO
   * checkpoint is not the last stage (the XBZRLE cache keeps being updated); `onHalf` runs once half of
   * the pages are out (a test breakpoint).
   */
  async complete(f: QEMUFileWriter, opts: SaveCompleteOptions = {}): Promise<void> {
    this.#lastStage = opts.lastStage ?? true;
    this.syncBitmap();
    const half = Math.floor(this.dirtyPages / 2);
    let sent = 0;
    while (true) {
      const r = this.#sendNext(f);
      if (!(r === true || (r !== false && await r))) break;
      if (++sent === half && opts.onHalf) {
        await f.flush();
        await opts.onHalf();
      }
      if (f.needsFlush) await f.push();
    }
    if (this.multifd) await this.#multifdFlushAndSync(f);
    // After the channels are done: their pages' bits are set (ram_save_file_bmap).
    await this.mappedRam?.writeBitmaps();
    f.putBe64(RAM_SAVE_FLAG_EOS);
    this.counters.transferred += 8;
  }

  /**
   * ram_find_and_save_block: the next dirty page (find_dirty_block) sent; at a round's end, with multifd,
   * flush and sync before the next round's page.
   */
  #sendNext(f: QEMUFileWriter): boolean | Promise<boolean> {
    const next = this.#nextDirty();
    if (!next) return false;
    const { block, page } = next;
    // Only the multifd paths wait; a main-channel page is sent without a promise per page.
    if (this.#roundEnded && this.multifd && !this.#syncPerSection) {
      this.#roundEnded = false;
      return this.#multifdFlushAndSync(f).then(() => this.#savePage(f, block, page)).then(() => true);
    }
    this.#roundEnded = false;
    const queued = this.#savePage(f, block, page);
    return queued ? queued.then(() => true) : true;
  }

  /** Sends one page: a ZERO or PAGE record on the main channel, or a page queued for multifd. */
  #savePage(f: QEMUFileWriter, block: RamBlock, page: number): Promise<void> | undefined {
    const data = block.page(page);
    const detection = this.zeroPageDetection();
    // Main-channel zero pages: any detection without multifd, only "legacy" with it (save_zero_page).
    const mainZero = detection !== "none" && (!this.multifd || detection === "legacy");
    const addr = block.offset + page * TARGET_PAGE_SIZE;
    if (mainZero && isZeroPage(data)) {
      if (this.mappedRam) {
        this.mappedRam.zeroPage(block, page);
        this.counters.duplicate++;
        return undefined;
      }
      const start = f.position;
      this.#header(f, block, page, RAM_SAVE_FLAG_ZERO);
      f.put8(0);
      this.counters.duplicate++;
      this.counters.transferred += f.position - start;
      this.xbzrle?.zeroPage(addr, this.dirtySyncCount);
      return undefined;
    }
    if (this.multifd) return this.multifd.queuePage(block, page);
    if (this.mappedRam) {
      this.counters.normal++;
      this.counters.transferred += TARGET_PAGE_SIZE;
      return this.mappedRam.page(block, page);
    }
    const start = f.position;
    let raw = data;
    if (this.xbzrle?.started) {
      const out = this.xbzrle.save(addr, data, this.dirtySyncCount, this.#lastStage);
      if (out.kind === "raw" && out.data) raw = out.data;
      if (out.kind === "unchanged") return undefined;
      if (out.kind === "encoded") {
        this.#header(f, block, page, RAM_SAVE_FLAG_XBZRLE);
        f.put8(ENCODING_FLAG_XBZRLE);
        f.putBe16(out.data.length);
        f.putBytes(out.data);
        this.xbzrle.counters.bytes += f.position - start;
        this.counters.transferred += f.position - start;
        return undefined;
      }
    }
    this.#header(f, block, page, RAM_SAVE_FLAG_PAGE);
    f.putBytes(raw);
    this.counters.normal++;
    this.counters.transferred += f.position - start;
    return undefined;
  }

  #header(f: QEMUFileWriter, block: RamBlock, page: number, flags: number, urgent = false): void {
    const last = urgent ? this.#lastSentBlockUrgent : this.#lastSentBlock;
    const cont = block === last;
    f.putBe64(page * TARGET_PAGE_SIZE + flags + (cont ? RAM_SAVE_FLAG_CONTINUE : 0));
    if (!cont) {
      f.putCountedString(block.idstr);
      if (urgent) this.#lastSentBlockUrgent = block;
      else this.#lastSentBlock = block;
    }
  }

  // ---- postcopy (the source side of ram.c's postcopy paths) ----

  /** ram_postcopy_send_discard_bitmap's ranges: after the last sync, every dirty run of pages, in bytes. */
  discardRanges(): { block: RamBlock; ranges: [number, number][] }[] {
    this.syncBitmap();
    return this.blocks.map((block) => {
      const ranges: [number, number][] = [];
      let p = block.findDirty(0);
      while (p >= 0) {
        let end = p + 1;
        while (end < block.pages && block.isDirty(end)) end++;
        ranges.push([p * TARGET_PAGE_SIZE, (end - p) * TARGET_PAGE_SIZE]);
        p = end < block.pages ? block.findDirty(end) : -1;
      }
      return { block, ranges };
    });
  }

  /** postcopy_start: from now on pages are sent one by one on the main (or preempt) channel. */
  enterPostcopy(): void {
    this.#postcopy = true;
    if (this.xbzrle) this.xbzrle.started = false;
  }

  get inPostcopy(): boolean {
    return this.#postcopy;
  }

  /**
   * ram_save_queue_pages: a destination's page request, checked against the block; the pages are sent
   * before any background page, unless already sent (no longer dirty).
   */
  queueRequest(idstr: string, start: number, len: number): void {
    const block = this.blocks.find((b) => b.idstr === idstr);
    if (!block) throw new Error(`ram_save_queue_pages no block '${idstr}'`);
    if (start % TARGET_PAGE_SIZE || len % TARGET_PAGE_SIZE || len === 0) {
      throw new Error(
        `MIG_RP_MSG_REQ_PAGES: Misaligned page request, start: 0x${start.toString(16)} len: ${len}`,
      );
    }
    if (start + len > block.usedLength) {
      throw new Error(
        `ram_save_queue_pages request overrun, start=0x${start.toString(16)} len=0x${len.toString(16)} ` +
          `blocklen=0x${block.usedLength.toString(16)}`,
      );
    }
    this.postcopyRequests++;
    this.#requests.push({ block, page: start / TARGET_PAGE_SIZE, count: len / TARGET_PAGE_SIZE });
    this.onRequest?.();
  }

  get hasRequests(): boolean {
    return this.#requests.length > 0;
  }

  /** get_queued_page: the next requested page still dirty (cleared now), or null. */
  #takeRequested(): { block: RamBlock; page: number } | null {
    while (this.#requests.length) {
      const r = this.#requests[0];
      const page = r.page;
      r.page++;
      if (--r.count === 0) this.#requests.shift();
      // A page already sent (clean) needs nothing: it is on its way or there.
      if (r.block.testAndClearDirty(page)) {
        this.dirtyPages--;
        return { block: r.block, page };
      }
      this.requestsForSentPages++;
    }
    return null;
  }

  /**
   * Sends the requested pages, on `urgent` (the preempt channel, flushed after each page so the fault is
   * served at once) or inline on the main channel. Returns how many were sent.
   */
  async sendRequested(f: QEMUFileWriter, urgent: QEMUFileWriter | null): Promise<number> {
    let sent = 0;
    while (true) {
      const next = this.#takeRequested();
      if (!next) break;
      this.#interleave?.("ram-page-cleared");
      this.#savePostcopyPage(urgent ?? f, next.block, next.page, urgent !== null);
      sent++;
      if (urgent) await urgent.flush();
    }
    // Inline, the requested pages go out now, not once a megabyte of background pages has piled up
    // behind them in the buffer (QEMU's is 32 KiB).
    if (sent && !urgent) await f.push();
    return sent;
  }

  /**
   * One PART section's worth of postcopy: requested pages first (also past the rate limit, as
   * migration_rate_exceeded lets urgent requests through), then background pages from the scan position.
   */
  async postcopyIterate(
    f: QEMUFileWriter,
    urgent: QEMUFileWriter | null,
    rateExceeded: () => boolean,
  ): Promise<number> {
    const t0 = this.now();
    let sent = 0;
    while (true) {
      sent += await this.sendRequested(f, urgent);
      if (rateExceeded() || this.dirtyPages === 0) break;
      const next = this.#nextDirty();
      if (!next) break;
      this.#savePostcopyPage(f, next.block, next.page, false);
      sent++;
      // Every 64 pages the bytes go to the link and the return path gets its turn: a request is served
      // within 64 background pages, as QEMU's migration thread looks at its queue before each page.
      if (f.needsFlush || (sent & 63) === 0) await f.push();
      if ((sent & 63) === 0 && this.now() - t0 > MAX_WAIT_MS) break;
    }
    await this.mappedRam?.flush();
    f.putBe64(RAM_SAVE_FLAG_EOS);
    this.counters.transferred += 8;
    return sent;
  }

  /** ram_save_complete in postcopy: every page left, then EOS (the source is stopped: nothing dirties). */
  async completePostcopy(f: QEMUFileWriter, urgent: QEMUFileWriter | null): Promise<void> {
    while (true) {
      await this.sendRequested(f, urgent);
      const next = this.#nextDirty();
      if (!next) break;
      this.#savePostcopyPage(f, next.block, next.page, false);
      if (f.needsFlush) await f.push();
    }
    f.putBe64(RAM_SAVE_FLAG_EOS);
    this.counters.transferred += 8;
  }

  /**
   * find_dirty_block: the next dirty page from the scan position, cleared; null when none is left.
   * Wrapping past the last block ends a round (multifd flushes and syncs before the next round's page).
   */
  #nextDirty(): { block: RamBlock; page: number } | null {
    if (this.dirtyPages === 0) return null;
    const n = this.blocks.length;
    for (let tries = 0; tries <= n; tries++) {
      const block = this.blocks[this.#scanBlock];
      const page = block.findDirty(this.#scanPage);
      if (page >= 0) {
        block.testAndClearDirty(page);
        // The bit is clear and the page not yet copied: a write here must dirty it again.
        this.#interleave?.("ram-page-cleared");
        this.dirtyPages--;
        this.#scanPage = page + 1;
        return { block, page };
      }
      if (this.#scanBlock === n - 1) {
        this.#roundEnded = true;
        // XBZRLE only ever applies to pages sent once already (xbzrle_started after the first round).
        if (this.xbzrle) this.xbzrle.started = true;
      }
      this.#scanBlock = (this.#scanBlock + 1) % n;
      this.#scanPage = 0;
    }
    throw new Error(`dirty page count ${this.dirtyPages} but no dirty bit set`);
  }

  /** A postcopy page: a ZERO record (unless detection is off) or the raw page. */
  #savePostcopyPage(f: QEMUFileWriter, block: RamBlock, page: number, urgent: boolean): void {
    const data = block.page(page);
    const start = f.position;
    if (this.zeroPageDetection() !== "none" && isZeroPage(data)) {
      this.#header(f, block, page, RAM_SAVE_FLAG_ZERO, urgent);
      f.put8(0);
      this.counters.duplicate++;
    } else {
      this.#header(f, block, page, RAM_SAVE_FLAG_PAGE, urgent);
      f.putBytes(data);
      this.counters.normal++;
    }
    this.counters.transferred += f.position - start;
  }

  /**
   * ram_resume_prepare: a recovery starts new channels, so the next record on each names its block, and
   * requests queued for the broken channel are dropped (the destination asks again).
   */
  resumePrepare(): void {
    this.#lastSentBlock = null;
    this.#lastSentBlockUrgent = null;
    this.#requests.length = 0;
  }

  /**
   * ram_dirty_bitmap_reload: the destination's received bitmap (little-endian words), complemented, is
   * what is left to send. Pages written into a broken channel but never received are sent again.
   */
  reloadBitmap(idstr: string, bitmap: Uint8Array): void {
    const block = this.blocks.find((b) => b.idstr === idstr);
    if (!block) throw new Error(`ram_dirty_bitmap_reload: unknown block '${idstr}'`);
    for (let p = 0; p < block.pages; p++) {
      if ((bitmap[p >>> 3] >> (p & 7)) & 1) block.testAndClearDirty(p);
      else block.setDirty(p);
    }
    this.dirtyPages = this.blocks.reduce((n, b) => n + b.countDirty(), 0);
  }
}

/**
 * migrate_ram_is_ignored: with x-ignore-shared, a block in shared memory is not migrated: the
 * destination maps the same memory; in cpr-transfer no block is (the target maps every block from the
 * descriptors the CPR state passed). Every block here is migratable.
 */
export function ramblockIsIgnored(block: RamBlock, ignoreShared: boolean, cprTransfer = false): boolean {
  return cprTransfer || (ignoreShared && block.share);
}

/**
 * ram_mig_init: registers the "ram" live section (register_savevm_live) with this role's steps, the save
 * steps of a source or the load step of a destination.
 */
export function registerRam(savevm: SaveVMState, ram: RamSaveState | RamLoadState): SaveStateEntry {
  const se = savevm.registerSavevmLive(
    RAM_IDSTR,
    0,
    RAM_VERSION_ID,
    ram instanceof RamSaveState
      ? {
        saveSetup: (f) => ram.setup(f),
        saveLiveIterate: async (f, rateExceeded) => {
          await ram.iterate(f, rateExceeded);
        },
        saveLiveCompletePrecopy: (f, opts) => ram.complete(f, opts),
      }
      : { loadState: (r, versionId) => ram.load(r, versionId) },
  );
  // Hand-built streams and the stream faults name ram's section by this constant.
  if (se.sectionId !== RAM_SECTION_ID) {
    throw new Error(`ram must register first (got section ${se.sectionId})`);
  }
  return se;
}

/** Destination side of the "ram" section. */
export class RamLoadState {
  /** last_recv_block of the main channel; persists across sections. */
  #lastRecvBlock: RamBlock | null = null;
  /** Pages written by the main channel, by kind. */
  readonly counters = { normal: 0, zero: 0, xbzrle: 0, multifdFlush: 0 };
  /** Guest RAM, or with x-colo the COLO cache (colo/ram_route.ts). */
  readonly #route: RamRoute;
  /** Called after each page record, e.g. to pause half-way through a checkpoint (test breakpoints). */
  onPage: (() => Promise<void> | undefined) | null = null;
  /** The postcopy destination: once it listens, every page is placed through it (ram_load_postcopy). */
  postcopy: PostcopyIncoming | null = null;
  /**
   * mapped-ram: the file's readers (the main channel's first, then the multifd channels'): each block's
   * pages are read from their offsets when the block list names it.
   */
  mappedRam: SeekableLink[] | null = null;
  /**
   * multifd-flush-after-each-section (machine types up to 8.0): every EOS waits for a SYNC from each
   * channel, as MULTIFD_FLUSH does (which such a source never sends).
   */
  syncPerSection = false;

  constructor(
    readonly blocks: RamBlock[],
    readonly multifd: MultifdRecvState | null = null,
    /** x-colo: received pages go to guest RAM and the cache in precopy, to the cache only in COLO state. */
    readonly colo: ColoCache | null = null,
    /** x-ignore-shared: the block list carries addresses, and shared blocks are not to be sent. */
    readonly ignoreShared = false,
    /** The migration is a cpr-transfer (the target's incoming mode): every block is mapped, none sent. */
    readonly cprTransfer = false,
  ) {
    this.#route = new RamRoute("main", colo);
  }

  #block(idstr: string): RamBlock | undefined {
    return this.blocks.find((b) => b.idstr === idstr);
  }

  /** ram_load_precopy: records until EOS. */
  async load(r: QEMUFileReader, versionId: number): Promise<void> {
    if (versionId !== RAM_VERSION_ID) throw r.error(`ram: unsupported version_id ${versionId} (expected 4)`);
    const mask = TARGET_PAGE_SIZE - 1;
    while (true) {
      const at = r.position;
      if (!r.has(8)) await r.need(8, "RAM record header");
      const [hi, lo] = r.getBe64Parts();
      const flags = lo & mask;
      const addr = hi * 0x1_0000_0000 + (lo - flags);
      switch (flags & ~RAM_SAVE_FLAG_CONTINUE) {
        case RAM_SAVE_FLAG_MEM_SIZE:
          await this.#loadBlockList(r, addr, at);
          break;
        case RAM_SAVE_FLAG_ZERO: {
          const block = this.#continueBlock(r, flags, at) ?? await this.#targetBlock(r, at);
          const index = this.#pageIndex(r, block, addr, at);
          if (!r.has(1)) await r.need(1, "zero page fill byte");
          const ch = r.get8();
          if (ch !== 0) throw r.error(`Found a zero page with value ${ch}`, at);
          if (this.postcopy?.running) this.#place(r, block, index, null, at);
          else this.#route.zeroPage(block, index);
          this.counters.zero++;
          {
            const w = this.onPage?.();
            if (w) await w;
          }
          break;
        }
        case RAM_SAVE_FLAG_PAGE: {
          const block = this.#continueBlock(r, flags, at) ?? await this.#targetBlock(r, at);
          const index = this.#pageIndex(r, block, addr, at);
          if (!r.has(TARGET_PAGE_SIZE)) await r.need(TARGET_PAGE_SIZE, "page data");
          if (this.postcopy?.running) this.#place(r, block, index, r.peek(TARGET_PAGE_SIZE), at);
          else {
            r.copyTo(this.#route.host(block, index));
            this.#route.received(block, index);
          }
          this.counters.normal++;
          {
            const w = this.onPage?.();
            if (w) await w;
          }
          break;
        }
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          // Every channel's pages of this round are in memory before the main channel goes on; without
          // multifd channels there is nothing to wait for (multifd_recv_sync_main is a no-op).
          this.counters.multifdFlush++;
          if (this.multifd) await this.multifd.syncMain();
          break;
        case RAM_SAVE_FLAG_EOS:
          // Mapped-ram syncs once after the block list; postcopy's sections have no SYNC to wait for.
          if (this.multifd && this.syncPerSection && !this.mappedRam && !this.postcopy?.running) {
            await this.multifd.syncMain();
          }
          return;
        case RAM_SAVE_FLAG_XBZRLE: {
          const block = this.#continueBlock(r, flags, at) ?? await this.#targetBlock(r, at);
          const index = this.#pageIndex(r, block, addr, at);
          if (this.postcopy?.running) {
            throw r.error(
              `Unknown combination of migration flags: 0x${flags.toString(16)} (postcopy mode)`,
              at,
            );
          }
          await r.need(3, "XBZRLE header");
          const enc = r.get8();
          if (enc !== ENCODING_FLAG_XBZRLE) {
            throw r.error("Failed to load XBZRLE page - wrong compression!", at);
          }
          const len = r.getBe16();
          if (len > TARGET_PAGE_SIZE) throw r.error("Failed to load XBZRLE page - len overflow!", at);
          await r.need(len, "XBZRLE data");
          // The delta applies to what the target holds: guest RAM, or the cache page in COLO state.
          try {
            xbzrleDecode(r.peek(len), this.#route.host(block, index));
          } catch (e) {
            throw r.error(`Failed to load XBZRLE page - decode error! (${(e as Error).message})`, at);
          }
          r.skip(len);
          this.#route.received(block, index);
          this.counters.xbzrle++;
          {
            const w = this.onPage?.();
            if (w) await w;
          }
          break;
        }
        case RAM_SAVE_FLAG_HOOK:
          throw r.error("RAM_SAVE_FLAG_HOOK is only valid with RDMA", at);
        default:
          throw r.error(`Unknown combination of migration flags: 0x${flags.toString(16)}`, at);
      }
    }
  }

  /** postcopy_place_page(_zero); the page's bytes are consumed from the reader when it has them. */
  #place(r: QEMUFileReader, block: RamBlock, index: number, data: Uint8Array | null, at: number): void {
    try {
      this.postcopy!.place(block, index, data);
    } catch (e) {
      throw r.error((e as Error).message, at);
    }
    if (data) r.skip(TARGET_PAGE_SIZE);
  }

  /**
   * The postcopy preempt channel (postcopy_preempt_thread → ram_load_postcopy on RAM_CHANNEL_POSTCOPY):
   * page records with their own CONTINUE tracking, no sections, until EOS or the channel ends.
   */
  async loadPreemptChannel(r: QEMUFileReader): Promise<void> {
    let last: RamBlock | null = null;
    const mask = TARGET_PAGE_SIZE - 1;
    while (true) {
      const at = r.position;
      await r.need(8, "RAM record header (preempt channel)");
      const [hi, lo] = r.getBe64Parts();
      const flags = lo & mask;
      const addr = hi * 0x1_0000_0000 + (lo - flags);
      const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
      if (kind === RAM_SAVE_FLAG_EOS) return;
      if (kind !== RAM_SAVE_FLAG_PAGE && kind !== RAM_SAVE_FLAG_ZERO) {
        throw r.error(`Unknown combination of migration flags: 0x${flags.toString(16)} (postcopy mode)`, at);
      }
      let block: RamBlock;
      if (flags & RAM_SAVE_FLAG_CONTINUE) {
        if (!last) throw r.error("Ack, bad migration stream! (CONTINUE with no previous RAM block)", at);
        block = last;
      } else {
        const idstr = await r.getCountedString("RAM block idstr");
        const b = this.#block(idstr);
        if (!b) throw r.error(`Can't find block ${idstr}`, at);
        block = last = b;
      }
      const index = this.#pageIndex(r, block, addr, at);
      if (!this.postcopy?.running) throw r.error("a page on the postcopy channel before LISTEN", at);
      if (kind === RAM_SAVE_FLAG_ZERO) {
        await r.need(1, "zero page fill byte");
        const ch = r.get8();
        if (ch !== 0) throw r.error(`Found a zero page with value ${ch}`, at);
        this.#place(r, block, index, null, at);
      } else {
        await r.need(TARGET_PAGE_SIZE, "page data");
        this.#place(r, block, index, r.peek(TARGET_PAGE_SIZE), at);
      }
      this.counters.normal++;
      const w = this.onPage?.();
      if (w) await w;
    }
  }

  async #loadBlockList(r: QEMUFileReader, total: number, at: number): Promise<void> {
    const local = this.blocks.reduce((n, b) => n + b.usedLength, 0);
    if (total !== local) {
      throw r.error(`RAM size mismatch: stream announces ${total} bytes, local RAM is ${local} bytes`, at);
    }
    let remaining = total;
    while (remaining > 0) {
      const idAt = r.position;
      const idstr = await r.getCountedString("RAM block idstr");
      await r.need(8, `length of RAM block ${idstr}`);
      const len = r.getBe64(`length of RAM block ${idstr}`);
      const block = this.#block(idstr);
      if (!block) throw r.error(`Unknown ramblock "${idstr}", cannot accept migration`, idAt);
      if (len !== block.usedLength) {
        throw r.error(
          `Length mismatch: ${idstr}: 0x${len.toString(16)} in != 0x${block.usedLength.toString(16)}`,
          idAt,
        );
      }
      if (this.ignoreShared) {
        await r.need(8, `address of RAM block ${idstr}`);
        const addr = r.getBe64(`address of RAM block ${idstr}`);
        // The destination maps the same memory: it must be where the source had it.
        if (ramblockIsIgnored(block, true) && addr !== block.addr) {
          throw r.error(`Mismatched GPAs for block ${idstr} ${addr}!= ${block.addr}`, idAt);
        }
      }
      if (this.mappedRam) await this.#loadMapped(r, block, this.mappedRam);
      remaining -= len;
      if (remaining < 0) throw r.error("RAM block list overruns the announced total size", idAt);
    }
  }

  /** A block's pages from the file, through the route (guest RAM, or the COLO cache too). */
  async #loadMapped(r: QEMUFileReader, block: RamBlock, readers: SeekableLink[]): Promise<void> {
    await loadBlock(r, block, readers, (first, data) => {
      for (let i = 0; i < data.length / TARGET_PAGE_SIZE; i++) {
        const page = data.subarray(i * TARGET_PAGE_SIZE, (i + 1) * TARGET_PAGE_SIZE);
        this.#route.host(block, first + i).set(page);
        this.#route.received(block, first + i);
        this.counters.normal++;
      }
    }, this.ignoreShared);
  }

  /** The common case without a wait: a CONTINUE record on the last block. */
  #continueBlock(r: QEMUFileReader, flags: number, at: number): RamBlock | undefined {
    if (!(flags & RAM_SAVE_FLAG_CONTINUE)) return undefined;
    const block = this.#lastRecvBlock;
    if (!block) throw r.error("Ack, bad migration stream! (CONTINUE with no previous RAM block)", at);
    return block;
  }

  /** A record that names its block. */
  async #targetBlock(r: QEMUFileReader, at: number): Promise<RamBlock> {
    const idstr = await r.getCountedString("RAM block idstr");
    const block = this.#block(idstr);
    if (!block) throw r.error(`Can't find block ${idstr}`, at);
    if (ramblockIsIgnored(block, this.ignoreShared, this.cprTransfer)) {
      throw r.error(`block ${idstr} should not be migrated !`, at);
    }
    this.#lastRecvBlock = block;
    return block;
  }

  #pageIndex(r: QEMUFileReader, block: RamBlock, addr: number, at: number): number {
    if (addr + TARGET_PAGE_SIZE > block.usedLength) {
      throw r.error(`Illegal RAM offset 0x${addr.toString(16)} in block ${block.idstr}`, at);
    }
    return addr / TARGET_PAGE_SIZE;
  }
}
