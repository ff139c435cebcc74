/**
 * The postcopy destination (migration/postcopy-ram.c and savevm.c's loadvm_postcopy_handle_*): its
 * PostcopyState, the discard of pages the source will send again, the fault path (a vCPU touching a
 * missing page → one request on the return path → the vCPU waits), the atomic placement of each page
 * (UFFDIO_COPY: a page placed twice is an error, as the kernel's EEXIST), and the blocktime statistics.
 */
import type { Clock } from "./clock.ts";
import type { Userfault } from "./guest/userfault.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import type { ReturnPathSender } from "./return_path.ts";

/** QEMU's PostcopyState (the incoming side's postcopy phase, apart from the migration status). */
export type PostcopyState = "none" | "advise" | "discard" | "listening" | "running" | "end";
const STATE_NUMBER: Record<PostcopyState, number> = {
  none: 0,
  advise: 1,
  discard: 2,
  listening: 3,
  running: 4,
  end: 5,
};

/** postcopy-latency-dist: buckets of 2^k microseconds. */
const LATENCY_BUCKETS = 32;

export interface PostcopyIncomingHost {
  blocks: RamBlock[];
  userfault: Userfault;
  clock: Clock;
  /** Whether postcopy-ram is on here (a 16-byte advise needs it). */
  enabled(): boolean;
  /** A block x-ignore-shared leaves out (mapped from shared memory, never sent): not registered. */
  ignored?(block: RamBlock): boolean;
  log(msg: string): void;
}

/** The destination's fault statistics (x-test-postcopy-stats). */
export interface PostcopyIncomingStats {
  faults: number;
  /** Faults on a page whose precopy copy a discard dropped. */
  faultsOnDiscarded: number;
  resolved: number;
  placed: number;
  blocktimeMs: number;
  latencyDist: number[];
}

export class PostcopyIncoming {
  state: PostcopyState = "none";
  /** The return path of the current main channel (a recovery replaces it). */
  rp: ReturnPathSender | null = null;
  /** Pages asked for and not yet placed (mis->page_requested), by ram_addr → when the fault came. */
  readonly #requested = new Map<number, { block: RamBlock; page: number; since: number }>();
  #lastReqBlock: RamBlock | null = null;
  /** Blocktime: how long the vCPU waited on missing pages, in total and per fault. */
  #blocktimeMs = 0;
  #faults = 0;
  #latencySumNs = 0;
  readonly #latencyDist = new Array<number>(LATENCY_BUCKETS).fill(0);
  /** Pages dropped by a discard, by ram_addr: a fault on one must get the source's newer copy. */
  readonly #discarded = new Set<number>();
  #faultsOnDiscarded = 0;
  /** Pages placed after LISTEN (any channel), zero pages among them. */
  placed = 0;
  placedZero = 0;

  constructor(private readonly host: PostcopyIncomingHost) {}

  #wrongState(cmd: string): Error {
    return new Error(`${cmd} in wrong postcopy state (${STATE_NUMBER[this.state]})`);
  }

  get running(): boolean {
    return this.state === "listening" || this.state === "running";
  }

  /** loadvm_postcopy_handle_advise: page sizes must match; all of RAM is dropped (the source resends). */
  advise(payload: Uint8Array): void {
    if (this.state !== "none") throw this.#wrongState("CMD_POSTCOPY_ADVISE");
    if (payload.length === 0) {
      if (this.host.enabled()) throw new Error("RAM postcopy is enabled but have 0 byte advise");
      return;
    }
    if (payload.length !== 16) throw new Error(`CMD_POSTCOPY_ADVISE invalid length (${payload.length})`);
    if (!this.host.enabled()) throw new Error("RAM postcopy is disabled but have 16 byte advise");
    const v = new DataView(payload.buffer, payload.byteOffset);
    const summary = v.getUint32(0) * 0x1_0000_0000 + v.getUint32(4);
    const tps = v.getUint32(8) * 0x1_0000_0000 + v.getUint32(12);
    const local = this.host.blocks.reduce((s, b) => s | b.pageSize, 0);
    if (summary !== local) {
      throw new Error(
        `Postcopy needs matching RAM page sizes (s=${summary.toString(16)} d=${local.toString(16)})`,
      );
    }
    if (tps !== TARGET_PAGE_SIZE) {
      throw new Error(`Postcopy needs matching target page sizes (s=${tps} d=${TARGET_PAGE_SIZE})`);
    }
    this.state = "advise";
  }

  /**
   * loadvm_postcopy_ram_handle_discard: u8 version 0, u8 name length, name, u8 0, then (be64 start,
   * be64 length) pairs. A discarded page is dropped: its old copy is gone and it is missing again.
   */
  discard(payload: Uint8Array): void {
    if (this.state !== "advise" && this.state !== "discard") {
      throw this.#wrongState("CMD_POSTCOPY_RAM_DISCARD");
    }
    this.state = "discard";
    const bad = () => new Error(`CMD_POSTCOPY_RAM_DISCARD invalid length (${payload.length})`);
    if (payload.length < 1 + 1 + 1 + 1 + 2 * 8) throw bad();
    if (payload[0] !== 0) throw new Error(`CMD_POSTCOPY_RAM_DISCARD invalid version (${payload[0]})`);
    const nameLen = payload[1];
    if (2 + nameLen + 1 > payload.length) throw bad();
    const idstr = new TextDecoder().decode(payload.subarray(2, 2 + nameLen));
    if (payload[2 + nameLen] !== 0) {
      throw new Error(`CMD_POSTCOPY_RAM_DISCARD missing nil (${payload[2 + nameLen]})`);
    }
    const rest = payload.length - 3 - nameLen;
    if (rest % 16) throw new Error(`CMD_POSTCOPY_RAM_DISCARD invalid length (${rest})`);
    const block = this.host.blocks.find((b) => b.idstr === idstr);
    if (!block) throw new Error(`ram_discard_range: Failed to find block '${idstr}'`);
    const v = new DataView(payload.buffer, payload.byteOffset + 3 + nameLen, rest);
    for (let i = 0; i < rest; i += 16) {
      const start = v.getUint32(i) * 0x1_0000_0000 + v.getUint32(i + 4);
      const len = v.getUint32(i + 8) * 0x1_0000_0000 + v.getUint32(i + 12);
      if (start % block.pageSize || len % block.pageSize) {
        throw new Error(`ram_block_discard_range: Unaligned start address: 0x${start.toString(16)}`);
      }
      if (start + len > block.usedLength) {
        throw new Error(
          `ram_block_discard_range: Overrun block '${idstr}' (${start}/${len.toString(16)}/${
            block.usedLength.toString(16)
          })`,
        );
      }
      for (let p = start / block.pageSize; p < (start + len) / block.pageSize; p++) {
        block.clearReceived(p);
        block.page(p).fill(0);
        this.#discarded.add(block.offset + p * TARGET_PAGE_SIZE);
      }
    }
  }

  /** LISTEN: from now on a page not received is missing, and the vCPU faults on it. */
  listen(): void {
    if (this.state !== "advise" && this.state !== "discard") throw this.#wrongState("CMD_POSTCOPY_LISTEN");
    this.state = "listening";
    // Only the blocks that are migrated fault (postcopy_ram_incoming_setup: foreach_not_ignored_block).
    this.host.userfault.arm(
      this.host.blocks.map((b) =>
        this.host.ignored?.(b) ? new Uint32Array(b.receivedmap.length).fill(~0) : b.receivedmap
      ),
    );
  }

  /** RUN: the guest may start (the caller starts it). */
  run(): void {
    if (this.state !== "listening") throw this.#wrongState("CMD_POSTCOPY_RUN");
    this.state = "running";
  }

  /** The end of postcopy (the listen thread saw EOF, or the migration ended): nothing faults any more. */
  end(): void {
    this.state = "end";
    this.host.userfault.disarm();
  }

  /**
   * A vCPU touched a missing page: ask the source for it, once (postcopy_request_page), and start
   * counting the time the vCPU waits.
   */
  fault(blockIndex: number, page: number): void {
    if (!this.running) return;
    const block = this.host.blocks[blockIndex];
    if (!block || this.host.userfault.isPresent(blockIndex, page)) return;
    const addr = block.offset + page * TARGET_PAGE_SIZE;
    if (this.#requested.has(addr)) return;
    this.#requested.set(addr, { block, page, since: this.host.clock.now() });
    this.#faults++;
    if (this.#discarded.has(addr)) this.#faultsOnDiscarded++;
    this.#request(block, page);
  }

  #request(block: RamBlock, page: number): void {
    const rp = this.rp;
    if (!rp) return;
    const named = block === this.#lastReqBlock ? null : block.idstr;
    this.#lastReqBlock = block;
    // A request lost with a broken path is sent again when the recovery resumes.
    rp.reqPages(named, page * TARGET_PAGE_SIZE, TARGET_PAGE_SIZE).catch(() => {});
  }

  /** After a recovery: a new path knows no block yet, and every request still open is asked again. */
  resendRequests(): void {
    this.#lastReqBlock = null;
    for (const { block, page } of this.#requested.values()) this.#request(block, page);
  }

  /** How many requested pages are still awaited. */
  get pendingRequests(): number {
    return this.#requested.size;
  }

  /**
   * postcopy_place_page: the page's bytes arrive whole and are mapped at once; a vCPU waiting on it goes
   * on. `data` null is a zero page (postcopy_place_page_zero).
   */
  place(block: RamBlock, page: number, data: Uint8Array | null): void {
    // The page has arrived and is not mapped yet: a guest touching it now faults and asks for it, and its
    // request crosses the page (the simulated world runs the guest here; real threads do anyway).
    this.host.clock.interleave?.("postcopy-page-arrived", block.offset + page * TARGET_PAGE_SIZE);
    const blockIndex = this.host.blocks.indexOf(block);
    if (this.host.userfault.isPresent(blockIndex, page)) {
      throw new Error(
        `postcopy_place_page: File exists copy host: block ${block.idstr} page ${page} ` +
          `(offset 0x${(page * TARGET_PAGE_SIZE).toString(16)}) was placed already`,
      );
    }
    if (data) block.page(page).set(data);
    else block.page(page).fill(0);
    block.testAndSetReceived(page);
    this.placed++;
    if (!data) this.placedZero++;
    const addr = block.offset + page * TARGET_PAGE_SIZE;
    const req = this.#requested.get(addr);
    if (req) {
      this.#requested.delete(addr);
      const ms = this.host.clock.now() - req.since;
      this.#blocktimeMs += ms;
      const us = Math.max(1, Math.round(ms * 1000));
      this.#latencySumNs += Math.round(ms * 1e6);
      this.#latencyDist[Math.min(LATENCY_BUCKETS - 1, 31 - Math.clz32(us))]++;
    }
    this.host.userfault.place(blockIndex, page);
  }

  isPresent(block: RamBlock, page: number): boolean {
    return this.host.userfault.isPresent(this.host.blocks.indexOf(block), page);
  }

  /** The blocktime fields of the destination's query-migrate (postcopy-blocktime on). */
  query(): Record<string, unknown> {
    const blocktime = Math.round(this.#blocktimeMs);
    const resolved = this.#faults - this.#requested.size;
    return {
      "postcopy-blocktime": blocktime,
      "postcopy-vcpu-blocktime": [blocktime],
      "postcopy-latency": resolved > 0 ? Math.round(this.#latencySumNs / resolved) : 0,
      "postcopy-latency-dist": [...this.#latencyDist],
      "postcopy-vcpu-latency": [resolved > 0 ? Math.round(this.#latencySumNs / resolved) : 0],
      "postcopy-non-vcpu-latency": 0,
    };
  }

  /** Faults so far and how many were resolved (for x-test introspection and the bench). */
  stats(): PostcopyIncomingStats {
    return {
      faults: this.#faults,
      faultsOnDiscarded: this.#faultsOnDiscarded,
      resolved: this.#faults - this.#requested.size,
      placed: this.placed,
      blocktimeMs: this.#blocktimeMs,
      latencyDist: [...this.#latencyDist],
    };
  }
}
