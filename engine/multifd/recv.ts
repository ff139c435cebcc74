/**
 * The receiving side of multifd: one loop per channel reading packets and writing pages, and the sync
 * barrier (multifd_recv_sync_main). A channel that reads a SYNC packet posts it and then blocks until the
 * main channel reaches the matching MULTIFD_FLUSH and every channel has posted: so a page re-sent in
 * round N+1 on a fast channel can never be overwritten by its round-N copy arriving late on a slow one.
 */
import { type QEMUFileReader, StreamError } from "../qemu_file.ts";
import { handleZeroPage } from "../ram.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { uuidToString } from "../uuid.ts";
import type { Link } from "../transport/link.ts";
import type { ColoCache } from "../colo/cache.ts";
import type { MultifdDecompressor, MultifdMethod } from "./compression.ts";
import {
  MULTIFD_FLAG_COMPRESSION_MASK,
  MULTIFD_FLAG_SYNC,
  MULTIFD_MAGIC,
  MULTIFD_VERSION,
  type MultifdInit,
  readPacket,
} from "./packet.ts";

export interface MultifdRecvOptions {
  channels: number;
  /** The destination's own uuid (zeros when unset), which every channel must present. */
  uuid: Uint8Array;
  method: MultifdMethod;
  blocks: RamBlock[];
  /** Known defect: channels do not wait at the barrier after a SYNC. */
  skipSyncWait?: boolean;
  /** Known defect: in COLO state pages bypass the cache (written to guest RAM, not recorded). */
  coloBypassCache?: boolean;
  /** Known defect: in COLO state zero pages are not recorded in the COLO bitmap. */
  coloZeroNotRecorded?: boolean;
  /** x-colo: the secondary's cache (pages go there, and in COLO state only there). */
  colo?: ColoCache | null;
  /** Called before a packet of COLO-state pages is written (a test breakpoint). */
  beforeColoPacket?: () => Promise<void>;
  /** Fault: channel id → milliseconds its first packet with pages waits before its pages are written. */
  delays?: Map<number, number>;
}

interface RecvChannel {
  id: number;
  link: Link;
  r: QEMUFileReader;
  decompressor: MultifdDecompressor | null;
  loop: Promise<void>;
  /** Clean end of stream at a packet boundary. */
  ended: boolean;
  /** SYNC packets read so far. */
  syncs: number;
}

export class MultifdRecvState {
  readonly #channels: (RecvChannel | undefined)[];
  #connected = 0;
  /** Syncs the main channel has passed (MULTIFD_FLUSH handled). */
  #generation = 0;
  #release: PromiseWithResolvers<void> = Promise.withResolvers();
  /** Resolved whenever a channel reads a SYNC or ends. */
  #progress: PromiseWithResolvers<void> = Promise.withResolvers();
  #error: Error | null = null;
  #failed: PromiseWithResolvers<never> = Promise.withResolvers();
  #closing = false;
  normalPages = 0;
  zeroPages = 0;
  /** Highest packet_num seen (recorded at each sync, as QEMU does). */
  packetNum = 0;

  constructor(private readonly opts: MultifdRecvOptions, private readonly onError: (e: Error) => void) {
    this.#channels = new Array(opts.channels);
    this.#failed.promise.catch(() => {});
  }

  get complete(): boolean {
    return this.#connected === this.opts.channels;
  }

  get connected(): number {
    return this.#connected;
  }

  /** multifd_recv_initial_packet checks, then the channel's receive loop starts. */
  addChannel(init: MultifdInit, r: QEMUFileReader, link: Link, at: number): void {
    const fail = (msg: string) => new StreamError(`multifd: ${msg}`, at);
    if (init.magic !== MULTIFD_MAGIC) {
      throw fail(`received packet magic ${init.magic.toString(16)} expected ${MULTIFD_MAGIC.toString(16)}`);
    }
    if (init.version !== MULTIFD_VERSION) {
      throw fail(`received packet version ${init.version} expected ${MULTIFD_VERSION}`);
    }
    if (init.uuid.some((b, i) => b !== this.opts.uuid[i])) {
      throw fail(
        `received uuid '${uuidToString(init.uuid)}' and expected uuid '${uuidToString(this.opts.uuid)}' ` +
          `for channel ${init.id}`,
      );
    }
    if (init.id >= this.opts.channels) {
      throw fail(`received channel id ${init.id} is greater than number of channels ${this.opts.channels}`);
    }
    if (this.#channels[init.id]) throw fail(`received channel id ${init.id} twice`);
    const ch: RecvChannel = {
      id: init.id,
      link,
      r,
      decompressor: this.opts.method.decompressor(),
      loop: Promise.resolve(),
      ended: false,
      syncs: 0,
    };
    this.#channels[init.id] = ch;
    this.#connected++;
    ch.loop = this.#run(ch).catch((e) => this.#fail(e)).finally(() => {
      // However it stopped, this channel will post no more SYNCs: a waiting syncMain must know.
      ch.ended = true;
      this.#progress.resolve();
    });
  }

  #fail(e: unknown): void {
    if (this.#closing || this.#error) return;
    this.#error = e instanceof Error ? e : new Error(String(e));
    this.#failed.reject(this.#error);
    this.#release.resolve();
    this.onError(this.#error);
  }

  async #run(ch: RecvChannel): Promise<void> {
    const { r } = ch;
    const find = (idstr: string) => this.opts.blocks.find((b) => b.idstr === idstr);
    let delay = this.opts.delays?.get(ch.id) ?? 0;
    while (true) {
      if (await r.atEnd()) {
        ch.ended = true;
        return;
      }
      const at = r.position;
      const p = await readPacket(r, ch.id, find);
      const flag = p.flags & MULTIFD_FLAG_COMPRESSION_MASK;
      if (flag !== this.opts.method.flag) {
        throw r.error(
          `multifd channel ${ch.id}: flags received ${flag.toString(16)} flags expected ${
            this.opts.method.flag.toString(16)
          } (compression ${this.opts.method.name})`,
          at,
        );
      }
      if (this.opts.colo?.inColoState && p.normalPages + p.zeroPages > 0) {
        await this.opts.beforeColoPacket?.();
      }
      if (delay && p.normalPages + p.zeroPages > 0) {
        await new Promise((res) => setTimeout(res, delay));
        delay = 0;
      }
      if (p.normalPages) {
        await this.#receivePages(ch, p.block!, p.offsets.slice(0, p.normalPages), p.nextPacketSize);
      } else if (p.nextPacketSize) {
        throw r.error(`multifd channel ${ch.id}: payload of ${p.nextPacketSize} bytes without pages`, at);
      }
      const colo = this.opts.colo;
      for (const off of p.offsets.slice(p.normalPages)) {
        const block = p.block!;
        const index = off / TARGET_PAGE_SIZE;
        if (colo?.inColoState && !this.opts.coloBypassCache) {
          // multifd-colo: a page that turned zero is recorded too, or the flush would keep stale content.
          handleZeroPage(
            this.opts.coloZeroNotRecorded ? colo.page(block, index) : colo.recordPage(block, index),
          );
        } else if (colo?.inColoState) {
          handleZeroPage(block.page(index));
        } else {
          // The receivedmap rule: a never-received page is already zero and is not touched.
          if (block.testAndSetReceived(index)) handleZeroPage(block.page(index));
          colo?.mirror(block, index);
        }
        this.zeroPages++;
      }
      this.packetNum = Math.max(this.packetNum, p.packetNum);
      if (p.flags & MULTIFD_FLAG_SYNC) {
        ch.syncs++;
        this.#progress.resolve();
        // Parked until the main channel has passed the matching MULTIFD_FLUSH.
        if (!this.opts.skipSyncWait) {
          while (this.#generation < ch.syncs && !this.#error && !this.#closing) await this.#release.promise;
        }
      }
    }
  }

  async #receivePages(ch: RecvChannel, block: RamBlock, offsets: number[], size: number): Promise<void> {
    const colo = this.opts.colo;
    const inColo = colo?.inColoState ?? false;
    if (inColo && this.opts.coloBypassCache) {
      // The defect: straight into guest RAM, as multifd did before it knew about COLO.
      return await this.#receiveInto(
        ch,
        offsets.map((off) => block.page(off / TARGET_PAGE_SIZE)),
        size,
        offsets,
      );
    }
    // multifd_ram_unfill_packet: the target is the COLO cache when x-colo is on (recorded in COLO state).
    const dests = offsets.map((off) => {
      const index = off / TARGET_PAGE_SIZE;
      return inColo ? colo!.recordPage(block, index) : block.page(index);
    });
    await this.#receiveInto(ch, dests, size, offsets);
    if (!inColo) {
      for (const off of offsets) {
        block.testAndSetReceived(off / TARGET_PAGE_SIZE);
        // Before COLO state the cache mirrors guest RAM (multifd_colo_process_recv).
        colo?.mirror(block, off / TARGET_PAGE_SIZE);
      }
    }
  }

  /** Reads one packet's payload into `dests` (raw or through the channel's decompressor). */
  async #receiveInto(ch: RecvChannel, dests: Uint8Array[], size: number, offsets: number[]): Promise<void> {
    const { r } = ch;
    if (!ch.decompressor) {
      if (size !== offsets.length * TARGET_PAGE_SIZE) {
        throw r.error(`multifd channel ${ch.id}: packet of ${offsets.length} pages carries ${size} bytes`);
      }
      for (const d of dests) {
        await r.need(TARGET_PAGE_SIZE, `page data on multifd channel ${ch.id}`);
        r.copyTo(d);
      }
    } else {
      await r.need(size, `compressed payload on multifd channel ${ch.id}`);
      const at = r.position;
      const payload = r.getBytes(size);
      try {
        await ch.decompressor.decompress(payload, dests);
      } catch (e) {
        throw r.error(`multifd channel ${ch.id}: ${e instanceof Error ? e.message : String(e)}`, at);
      }
    }
    this.normalPages += offsets.length;
  }

  /** multifd_recv_sync_main: wait for a SYNC from every channel, then release them all. */
  async syncMain(): Promise<void> {
    const target = this.#generation + 1;
    while (true) {
      if (this.#error) throw this.#error;
      if (this.#closing) throw new Error("multifd channels were shut down while waiting for their SYNC");
      const all = this.#channels.every((c) => c && c.syncs >= target);
      if (all) break;
      const ended = this.#channels.find((c) => c && c.ended && c.syncs < target);
      if (ended) throw new Error(`multifd channel ${ended.id} closed before its SYNC packet`);
      this.#progress = Promise.withResolvers();
      await Promise.race([this.#progress.promise, this.#failed.promise]);
    }
    this.#generation = target;
    const release = this.#release;
    this.#release = Promise.withResolvers();
    release.resolve();
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#release.resolve();
    for (const c of this.#channels) {
      c?.link.close();
      c?.decompressor?.close();
    }
    await Promise.all(this.#channels.map((c) => c?.loop));
  }
}
