/**
 * The sending side of multifd (migration/multifd.c, multifd-nocomp.c, multifd-zero-page.c): pages are
 * queued into a batch that covers one RAM block and at most MULTIFD_PAGE_COUNT pages; a full batch goes to
 * the next idle channel (round robin) as one packet; `sync` sends one SYNC packet per channel.
 */
import { errorMessage } from "../error.ts";
import { type OutputFaults, QEMUFileWriter } from "../qemu_file.ts";
import { isZeroPage, type RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import type { Link } from "../transport/link.ts";
import { isSeekable } from "../transport/file.ts";
import { copyRun, type MappedRamSave } from "../ram_mapped.ts";
import type { MultifdCompressor, MultifdMethod } from "./compression.ts";
import { encodeInit, MULTIFD_FLAG_SYNC, MULTIFD_PAGE_COUNT, writePacket } from "./packet.ts";

/** Where a test fault (engine/testing/faults.ts) may act on the multifd sender. */
export interface MultifdSendFaultHooks {
  /** Byte faults for the writer of the main channel (`channel` omitted) or of multifd channel `channel`. */
  output(channel?: number): OutputFaults;
  /** The id multifd channel `id` announces in its handshake. */
  multifdChannelId(id: number): number;
  /** May rewrite the offsets of a packet about to be sent (its `normalPages` normal pages first). */
  multifdPacket(block: RamBlock, offsets: number[], normalPages: number): void;
}

export interface MultifdSendOptions {
  uuid: Uint8Array;
  method: MultifdMethod;
  level: number;
  /** "multifd": the channel detects zero pages and sends only their offsets. */
  detectZeroPages: boolean;
  /** Test faults (x-test-inject-fault). */
  faults?: MultifdSendFaultHooks;
  /**
   * mapped-ram (multifd_file_nocomp): the channels are the file opened once each; a batch's pages are
   * written at their offsets, no packets, no handshake, and zero pages only clear their bits.
   */
  mappedRam?: MappedRamSave;
}

class SendChannel {
  readonly f: QEMUFileWriter;
  /** The packet being written; null when idle. */
  busy: Promise<void> | null = null;
  constructor(readonly id: number, link: Link, readonly compressor: MultifdCompressor | null) {
    this.f = new QEMUFileWriter(link, 1 << 20);
  }
}

export class MultifdSendState {
  readonly #channels: SendChannel[];
  #next = 0;
  #packetNum = 0;
  #batchBlock: RamBlock | null = null;
  #batch: number[] = [];
  #error: Error | null = null;
  /** Pages sent with data, and zero pages sent as offsets only. */
  normalPages = 0;
  zeroPages = 0;
  /** Bytes the channels wrote at page offsets (mapped-ram). */
  #fileBytes = 0;

  constructor(links: Link[], private readonly opts: MultifdSendOptions) {
    this.#channels = links.map((l, i) => MultifdSendState.#channel(i, l, opts));
  }

  static #channel(i: number, link: Link, opts: MultifdSendOptions): SendChannel {
    const c = new SendChannel(i, link, opts.method.compressor(opts.level));
    if (opts.faults) c.f.faults = opts.faults.output(i);
    return c;
  }

  /**
   * multifd_send_setup: opens `n` channels, each sending its initial packet as soon as it is open, as
   * QEMU's channel does before the others are up. A QEMU destination reads a channel's initial packet on
   * its main loop as the channel arrives: over TLS, whose next channel's handshake needs that loop, a
   * source that holds every packet back until all channels are open never gets them open (found by the
   * engine-to-qemu pair). Fails naming the first channel that could not be opened or greeted.
   */
  static async open(
    n: number,
    open: () => Promise<Link>,
    opts: MultifdSendOptions,
  ): Promise<MultifdSendState> {
    const settled = await Promise.allSettled(Array.from({ length: n }, async (_, i) => {
      const link = await open();
      const c = MultifdSendState.#channel(i, link, opts);
      try {
        if (!opts.mappedRam) {
          c.f.putBytes(encodeInit(opts.uuid, opts.faults?.multifdChannelId(i) ?? i));
          await c.f.flush();
        }
      } catch (e) {
        c.compressor?.close();
        link.close();
        throw e;
      }
      return c;
    }));
    const channels = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const failed = settled.findIndex((s) => s.status === "rejected");
    const state = new MultifdSendState([], opts);
    state.#channels.push(...channels);
    if (failed >= 0) {
      state.close();
      throw new Error(
        `multifd: failed to connect channel ${failed}: ${
          errorMessage((settled[failed] as PromiseRejectedResult).reason)
        }`,
      );
    }
    return state;
  }

  /** Bytes written on all channels (multifd-bytes). */
  get bytes(): number {
    return this.#fileBytes + this.#channels.reduce((n, c) => n + c.f.position, 0);
  }

  /** multifd_send_initial_packet on every channel (channels made by the constructor; `open` sends its own). */
  async setup(): Promise<void> {
    if (this.opts.mappedRam) return;
    await Promise.all(this.#channels.map(async (c) => {
      c.f.putBytes(encodeInit(this.opts.uuid, this.opts.faults?.multifdChannelId(c.id) ?? c.id));
      await c.f.flush();
    }));
  }

  /** multifd_queue_page: returns a promise only when a full batch had to be handed to a channel. */
  queuePage(block: RamBlock, page: number): Promise<void> | undefined {
    if (this.#error) throw this.#error;
    if (this.#batchBlock !== block && this.#batch.length) {
      const p = this.#send();
      this.#batchBlock = block;
      this.#batch.push(page * TARGET_PAGE_SIZE);
      return p;
    }
    this.#batchBlock = block;
    this.#batch.push(page * TARGET_PAGE_SIZE);
    return this.#batch.length >= MULTIFD_PAGE_COUNT ? this.#send() : undefined;
  }

  /** Sends the partial batch, if any. */
  async flush(): Promise<void> {
    if (this.#batch.length) await this.#send();
  }

  /** multifd_send_sync_main: flush, then each channel sends SYNC after its pending packet. */
  async sync(): Promise<void> {
    await this.flush();
    if (this.opts.mappedRam) {
      await Promise.all(this.#channels.map((c) => c.busy));
      return this.#check();
    }
    await Promise.all(this.#channels.map(async (c) => {
      await c.busy;
      this.#check();
      writePacket(c.f, {
        // QEMU's SYNC packet: that flag alone, no compression method's (found by the qemu-to-engine pair:
        // the model's destination wanted the method's flag on every packet and refused QEMU 10.0's).
        flags: MULTIFD_FLAG_SYNC,
        pagesAlloc: MULTIFD_PAGE_COUNT,
        normalPages: 0,
        zeroPages: 0,
        nextPacketSize: 0,
        packetNum: this.#packetNum++,
        ramblock: "",
        offsets: [],
      });
      await c.f.flush();
    }));
    this.#check();
  }

  #check(): void {
    if (this.#error) throw this.#error;
  }

  /** multifd_send: hand the batch to the next idle channel, round robin from the last one used. */
  async #send(): Promise<void> {
    const block = this.#batchBlock!;
    const offsets = this.#batch;
    this.#batch = [];
    let ch: SendChannel | undefined;
    while (!ch) {
      this.#check();
      for (let i = 0; i < this.#channels.length; i++) {
        const c = this.#channels[(this.#next + i) % this.#channels.length];
        if (!c.busy) {
          ch = c;
          this.#next = (c.id + 1) % this.#channels.length;
          break;
        }
      }
      if (!ch) await Promise.race(this.#channels.map((c) => c.busy));
    }
    // send_prepare: zero-page detection partitions the offsets (the guest may be running; a page it
    // changes from now on is dirty and sent again later).
    const normal: number[] = [];
    const zero: number[] = [];
    for (const off of offsets) {
      const page = block.mem.subarray(off, off + TARGET_PAGE_SIZE);
      if (this.opts.detectZeroPages && isZeroPage(page)) zero.push(off);
      else normal.push(off);
    }
    this.normalPages += normal.length;
    this.zeroPages += zero.length;
    if (this.opts.mappedRam) return this.#writeInPlace(ch, block, normal, zero, this.opts.mappedRam);
    const packetNum = this.#packetNum++;
    const wireOffsets = [...normal, ...zero];
    this.opts.faults?.multifdPacket(block, wireOffsets, normal.length);
    // A codec reads the pages from a copy taken now (as QEMU's zlib does): a page changing under a
    // running deflate stream would corrupt it. nocomp needs no copy: below, with no await in between,
    // the pages go straight from guest memory into the channel's buffer (QEMU's iovs point into RAM).
    const copy = ch.compressor && normal.length ? copyPages(block, normal) : null;
    const c = ch;
    c.busy = (async () => {
      const payload = copy ? await c.compressor!.compress([copy]) : null;
      writePacket(c.f, {
        flags: this.opts.method.flag,
        pagesAlloc: MULTIFD_PAGE_COUNT,
        normalPages: normal.length,
        zeroPages: zero.length,
        nextPacketSize: payload ? payload.length : normal.length * TARGET_PAGE_SIZE,
        packetNum,
        ramblock: block.idstr,
        offsets: wireOffsets,
      });
      if (payload) c.f.putBytes(payload);
      else for (const off of normal) c.f.putBytes(block.mem.subarray(off, off + TARGET_PAGE_SIZE));
      await c.f.flush();
    })().catch((e) => {
      this.#error ??= new Error(`multifd channel ${c.id}: ${errorMessage(e)}`);
    }).finally(() => (c.busy = null));
  }

  /** file_write_ramblock_iov: the batch's pages at their file offsets, in contiguous runs; then their bits. */
  #writeInPlace(
    c: SendChannel,
    block: RamBlock,
    normal: number[],
    zero: number[],
    mapped: MappedRamSave,
  ): void {
    const mb = mapped.of(block);
    for (const off of zero) mb.clear(off / TARGET_PAGE_SIZE);
    const link = c.f.link;
    if (!isSeekable(link)) throw new Error(`multifd channel ${c.id}: ${link.description} is not seekable`);
    // Copied now, as the packet path copies into its buffer: the guest may change a page from here on
    // (it is then dirty and sent again).
    const runs: { first: number; data: Uint8Array }[] = [];
    const pages = normal.map((off) => off / TARGET_PAGE_SIZE).sort((a, b) => a - b);
    for (let i = 0; i < pages.length;) {
      let n = 1;
      while (i + n < pages.length && pages[i + n] === pages[i] + n) n++;
      runs.push({ first: pages[i], data: copyRun(block, pages[i], n) });
      i += n;
    }
    c.busy = (async () => {
      for (const run of runs) {
        await link.pwrite(run.data, mb.pageOffset(run.first));
        this.#fileBytes += run.data.length;
      }
      for (const p of pages) mb.set(p);
    })().catch((e) => {
      this.#error ??= new Error(`multifd channel ${c.id}: ${errorMessage(e)}`);
    }).finally(() => (c.busy = null));
  }

  close(): void {
    for (const c of this.#channels) {
      c.compressor?.close();
      c.f.link.close();
    }
  }
}

function copyPages(block: RamBlock, offsets: number[]): Uint8Array {
  const out = new Uint8Array(offsets.length * TARGET_PAGE_SIZE);
  offsets.forEach((off, i) => out.set(block.mem.subarray(off, off + TARGET_PAGE_SIZE), i * TARGET_PAGE_SIZE));
  return out;
}
