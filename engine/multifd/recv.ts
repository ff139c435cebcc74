/**
 * The receiving side of multifd: one loop per channel reading packets and writing pages, and the sync
 * barrier (multifd_recv_sync_main). A channel that reads a SYNC packet posts it and then blocks until the
 * main channel reaches the matching MULTIFD_FLUSH and every channel has posted: so a page re-sent in
 * round N+1 on a fast channel can never be overwritten by its round-N copy arriving late on a slow one.
 */
import { type Clock, hostClock } from "../clock.ts";
import { asError, errorMessage } from "../error.ts";
import { type QEMUFileReader, StreamError } from "../qemu_file.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { uuidToString } from "../uuid.ts";
import type { Link } from "../transport/link.ts";
import type { ColoCache } from "../colo/cache.ts";
import { RamRoute, type RamRouteDefects } from "../colo/ram_route.ts";
import { type Defects, NO_DEFECTS } from "../testing/defects.ts";
import type { MultifdDecompressor, MultifdMethod } from "./compression.ts";
import {
  MULTIFD_FLAG_COMPRESSION_MASK,
  MULTIFD_FLAG_SYNC,
  MULTIFD_MAGIC,
  MULTIFD_VERSION,
  type MultifdInit,
  readPacket,
} from "./packet.ts";

/** The known defects of the receive side: skipping the sync barrier, and those of the COLO page route. */
export type MultifdRecvDefects = Pick<Defects, "multifd-no-recv-sync"> & RamRouteDefects;

/** A fault: how long a channel holds its packets with pages, the first one only or each (a slow channel). */
export interface ChannelDelay {
  ms: number;
  every: boolean;
}

export interface MultifdRecvOptions {
  channels: number;
  /** The destination's own uuid (zeros when unset), which every channel must present. */
  uuid: Uint8Array;
  method: MultifdMethod;
  blocks: RamBlock[];
  defects?: MultifdRecvDefects;
  /** x-colo: the secondary's cache (pages go there, and in COLO state only there). */
  colo?: ColoCache | null;
  /** Called before a packet of COLO-state pages is written (a test breakpoint). */
  beforeColoPacket?: () => Promise<void>;
  /** Fault: channel id → how long its first (or every) packet with pages waits before it is written. */
  delays?: Map<number, ChannelDelay>;
  /** For those delays (default: the host's). */
  clock?: Clock;
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
  readonly #closed = Promise.withResolvers<void>();
  #closing = false;
  normalPages = 0;
  zeroPages = 0;
  /** Highest packet_num seen (recorded at each sync, as QEMU does). */
  packetNum = 0;
  /** Guest RAM, or with x-colo the COLO cache (colo/ram_route.ts). */
  readonly #route: RamRoute;
  readonly #defects: MultifdRecvDefects;

  constructor(private readonly opts: MultifdRecvOptions, private readonly onError: (e: Error) => void) {
    this.#channels = new Array(opts.channels);
    this.#defects = opts.defects ?? NO_DEFECTS;
    this.#route = new RamRoute("multifd", opts.colo ?? null, this.#defects);
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
    this.#error = asError(e);
    this.#failed.reject(this.#error);
    this.#release.resolve();
    this.onError(this.#error);
  }

  async #run(ch: RecvChannel): Promise<void> {
    const { r } = ch;
    const find = (idstr: string) => this.opts.blocks.find((b) => b.idstr === idstr);
    const held = this.opts.delays?.get(ch.id);
    let delay = held?.ms ?? 0;
    while (true) {
      if (await r.atEnd()) {
        ch.ended = true;
        return;
      }
      const at = r.position;
      const p = await readPacket(r, ch.id, find);
      const flag = p.flags & MULTIFD_FLAG_COMPRESSION_MASK;
      // Checked where the method's recv runs, on a packet with pages (QEMU 7.2 and 10.0 alike): a SYNC
      // packet carries only MULTIFD_FLAG_SYNC (10.0's multifd_send_thread sets nothing else).
      if (p.normalPages + p.zeroPages > 0 && flag !== this.opts.method.flag) {
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
        // Held as a stalled peer holds it, but not past close (teardown must not wait out the fault).
        let cancel = () => {};
        const hold = new Promise<void>((r) => cancel = (this.opts.clock ?? hostClock).timer(r, delay));
        await Promise.race([hold, this.#closed.promise]);
        cancel();
        if (this.#closing) return;
        if (!held?.every) delay = 0;
      }
      // Without normal pages no payload is read, whatever next_packet_size says: QEMU 7.2's zlib
      // leaves the last packet's size in its SYNC packets, and QEMU's receivers never look at it there.
      if (p.normalPages) {
        await this.#receivePages(ch, p.block!, p.offsets.slice(0, p.normalPages), p.nextPacketSize);
      }
      for (const off of p.offsets.slice(p.normalPages)) {
        this.#route.zeroPage(p.block!, off / TARGET_PAGE_SIZE);
        this.zeroPages++;
      }
      this.packetNum = Math.max(this.packetNum, p.packetNum);
      if (p.flags & MULTIFD_FLAG_SYNC) {
        ch.syncs++;
        this.#progress.resolve();
        // Parked until the main channel has passed the matching MULTIFD_FLUSH.
        if (!this.#defects["multifd-no-recv-sync"]) {
          while (this.#generation < ch.syncs && !this.#error && !this.#closing) await this.#release.promise;
        }
      }
    }
  }

  /** multifd_ram_unfill_packet + the recv method: the packet's normal pages, where the route says. */
  async #receivePages(ch: RecvChannel, block: RamBlock, offsets: number[], size: number): Promise<void> {
    const indexes = offsets.map((off) => off / TARGET_PAGE_SIZE);
    await this.#receiveInto(ch, indexes.map((i) => this.#route.host(block, i)), size, offsets);
    for (const i of indexes) this.#route.received(block, i);
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
        throw r.error(`multifd channel ${ch.id}: ${errorMessage(e)}`, at);
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
    this.#closed.resolve();
    this.#release.resolve();
    for (const c of this.#channels) {
      c?.link.close();
      c?.decompressor?.close();
    }
    await Promise.all(this.#channels.map((c) => c?.loop));
  }
}
