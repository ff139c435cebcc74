/**
 * The incoming migration (MigrationIncomingState in migration/migration.c): listen, accept the main
 * channel, load the stream off the control loop, then start the guest or stay paused (-S).
 */
import { multifdFlushAfterEachSection } from "./hw_compat.ts";
import { errorMessage } from "./error.ts";
import type { Machine } from "./guest/machine.ts";
import type { MigrationStatus } from "./migration_status.ts";
import type { MigrationOptions } from "./options.ts";
import { ChannelLostError, QEMUFileReader, StreamError } from "./qemu_file.ts";
import { PostcopyIncoming } from "./postcopy_ram.ts";
import { ramblockIsIgnored, RamLoadState, registerRam } from "./ram.ts";
import { ReturnPathSender } from "./return_path.ts";
import {
  type ConfigurationInfo,
  type LoadVMContext,
  QEMU_VM_FILE_MAGIC,
  SaveVMState,
  VmStateLoader,
} from "./savevm.ts";
import type { Breakpoints } from "./testing/breakpoints.ts";
import { defectsOf } from "./testing/defects.ts";
import type { IncomingFaultHooks } from "./testing/faults.ts";
import { ColoCache } from "./colo/cache.ts";
import { ColoSecondary } from "./colo/secondary.ts";
import type { FileStore, SeekableLink } from "./transport/file.ts";
import type { Link } from "./transport/link.ts";
import { multifdMethod } from "./multifd/methods.ts";
import { decodeInit, MULTIFD_INIT_SIZE, MULTIFD_MAGIC } from "./multifd/packet.ts";
import { MultifdRecvState } from "./multifd/recv.ts";
import type { MigrationListener, Network } from "./transport/socket.ts";
import type { MonitorFds } from "./monitor/fds.ts";
import type { MigrationAddress, SocketAddress } from "./transport/uri.ts";

/** The destination yields to its control loop at least this often while loading. */
const LOAD_SLICE_MS = 5;

/** QEMU waits for every multifd channel; we give up after this long, so a lost channel cannot hang. */
const MULTIFD_CHANNEL_WAIT_MS = 5000;

export interface IncomingHost {
  breakpoints: Breakpoints;
  /** This VM's uuid (zeros when unset): multifd channels must present it. */
  uuid(): Uint8Array;
  /** Known defects switched on (engine/defects.ts). */
  defects: ReadonlySet<string>;
  machine: Machine;
  options: MigrationOptions;
  config(): ConfigurationInfo;
  /** The test faults armed on this destination (x-test-inject-fault). */
  faults(): IncomingFaultHooks;
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  /** Whether the guest starts when the load completes (false with -S until `cont`). */
  autostart(): boolean;
  net: Network;
  files: FileStore;
  /** Descriptors the monitor was given (fd: channels). */
  fds: MonitorFds;
  /** A new channel as the load reads it: a TLS session when tls-creds is set (it may refuse the peer). */
  secure(link: Link): Promise<Link>;
  /** exit-on-error: the process ends with EXIT_FAILURE after a failed load. */
  exit(code: number): void;
  /** A memory-safety failure: end the process at once, as a crash would (absent in in-process tests). */
  abort?(msg: string): never;
  /** This process came from a cpr-transfer (its incoming mode): every RAM block is mapped, none is loaded. */
  cprTransfer?: boolean;
  /** The main channel listens: cpr-transfer's target hangs up the cpr channel, so the source connects. */
  listening?(): void;
}

export class MigrationIncoming {
  status: MigrationStatus = "none";
  errorDesc: string | null = null;
  exitOnError = true;
  #listener: MigrationListener | null = null;
  #link: Link | null = null;
  /** mapped-ram: the file's main handle, then one per multifd channel (closed with the main link). */
  #fileReaders: SeekableLink[] | null = null;
  #socketAddress: SocketAddress[] = [];
  #startTime = 0;
  #endTime = 0;
  #task: Promise<void> | null = null;
  #ram: RamLoadState | null = null;
  #coloCache: ColoCache | null = null;

  /** The COLO cache (x-colo destinations), for test introspection. */
  get coloCache(): ColoCache | null {
    return this.#coloCache;
  }
  #setupDone = false;
  /** The COLO secondary, once the initial precopy completed with COLO enabled. */
  colo: ColoSecondary | null = null;
  #multifd: MultifdRecvState | null = null;
  #main: { link: Link; r: QEMUFileReader } | null = null;
  /** Connections not yet identified. */
  #pending = new Set<Link>();
  #loading = false;
  #cancelChannelTimer: (() => void) | undefined;
  #channelError: Error | null = null;
  #done: PromiseWithResolvers<void> = Promise.withResolvers();
  #bytes = 0;
  /** The postcopy destination (its state stays "none" unless the source advises postcopy). */
  #postcopy: PostcopyIncoming | null = null;
  /** The return path of the current main channel (a recovery opens a new one). */
  #rp: ReturnPathSender | null = null;
  /** postcopy-preempt: the channel urgent pages arrive on. */
  #preemptLink: Link | null = null;
  /** The preempt thread: the load completes only after it read its channel's EOS (no page in flight lost). */
  #preemptTask: Promise<void> | null = null;
  /**
   * The preempt thread exists from LISTEN on (postcopy_ram_incoming_setup) and waits for its channel,
   * which may come before LISTEN is loaded (held here until then) or after it (awaited here): either
   * way nothing reads it before LISTEN, and the end of the migration joins it once it has come.
   */
  #preemptEarly: { link: Link; r: QEMUFileReader } | null = null;
  #preemptWaiter: PromiseWithResolvers<{ link: Link; r: QEMUFileReader } | null> | null = null;
  /** postcopy-paused: the next main channel, from the listener migrate-recover opened. */
  #recover: PromiseWithResolvers<{ link: Link; r: QEMUFileReader }> | null = null;
  #recoverTriggered = false;
  #closing = false;

  get postcopy(): PostcopyIncoming | null {
    return this.#postcopy;
  }

  constructor(private readonly host: IncomingHost) {}

  get started(): boolean {
    return this.status !== "none";
  }

  isActive(): boolean {
    return ["setup", "active", "postcopy-active", "postcopy-paused", "postcopy-recover"].includes(
      this.status,
    );
  }

  /** yank: shut the migration channels down. */
  yank(): void {
    this.#closeLink();
    this.#main?.link.close();
    this.#preemptLink?.close();
    void this.#multifd?.close();
  }

  /** migrate-pause on the destination: shut the channel of a postcopy that runs or recovers. */
  pause(): void {
    if (this.status !== "postcopy-active" && this.status !== "postcopy-recover") {
      throw new Error(
        "migrate-pause is currently only supported during postcopy-active or postcopy-recover state",
      );
    }
    this.#closeLink();
    this.#preemptLink?.close();
  }

  /** migrate-recover: listen for the source's new main channel of a paused postcopy. */
  recover(addr: MigrationAddress): void {
    if (this.status !== "postcopy-paused") {
      throw new Error("Migrate recover can only be run when postcopy is paused.");
    }
    if (this.#recoverTriggered) throw new Error("Migrate recovery is triggered already");
    if (addr.transport === "file") throw new Error("postcopy recovery needs a socket");
    this.#listener?.close();
    this.#listener = this.host.net.listen(addr);
    this.#socketAddress = this.#listener.addresses;
    this.#recoverTriggered = true;
    void this.#acceptLoop();
  }

  #closeLink(): void {
    this.#link?.close();
    for (const l of this.#fileReaders ?? []) l.close();
  }

  #setStatus(s: MigrationStatus): void {
    if (this.status === s) return;
    this.status = s;
    if (this.host.options.cap("events")) this.host.emit("MIGRATION", { status: s });
  }

  /** qemu_start_incoming_migration: listens (or opens the file) and returns; loading runs after. */
  start(addr: MigrationAddress): void {
    if (addr.transport === "file") {
      this.#setStatus("setup");
      const { options } = this.host;
      if (options.cap("multifd") && !options.cap("mapped-ram")) {
        this.#task = Promise.resolve(
          this.#fail(new Error("Migration requires multi-channel URIs (e.g. tcp)")),
        );
        return;
      }
      // With mapped-ram and multifd, each channel opens the file and reads its share of the pages.
      const readers = options.cap("mapped-ram") && options.cap("multifd")
        ? options.params["multifd-channels"]
        : 0;
      // Under direct-io the channels' handles are O_DIRECT; the main channel's never is (its reads are not
      // aligned), as QEMU keeps a second descriptor for the channels.
      const direct = options.params["direct-io"];
      this.#task = Promise.allSettled(
        Array.from(
          { length: 1 + readers },
          (_, i) => this.host.files.incoming(addr.path, addr.offset, { direct: i > 0 && direct }),
        ),
      ).then((opened) => {
        const links = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
        const failed = opened.find((o) => o.status === "rejected");
        if (failed) {
          // No handle outlives a failed open of another.
          for (const l of links) l.close();
          return this.#fail(new Error(`Failed to open ${addr.path}: ${errorMessage(failed.reason)}`));
        }
        this.#fileReaders = options.cap("mapped-ram") ? links : null;
        return this.#process(links[0], new QEMUFileReader(links[0]));
      });
      return;
    }
    if (addr.transport === "fd") {
      // fd: the channel is connected already (fd_start_incoming_migration): nothing to listen on.
      this.acceptLink(this.host.fds.host.link(addr.fd, `fd:${addr.name}`));
      return;
    }
    this.#listener = this.host.net.listen(addr);
    this.#socketAddress = this.#listener.addresses;
    this.#setStatus("setup");
    this.#task = this.#acceptLoop();
    this.host.listening?.();
  }

  /** Takes an already-connected channel: in-process tests, and what QEMU's fd: transport does. */
  acceptLink(link: Link): void {
    if (this.status === "none") this.#setStatus("setup");
    this.#onConnection(link);
  }

  /** Resolves once the current incoming migration finished (completed or failed). */
  async join(): Promise<void> {
    await this.#task;
    await this.#done.promise;
  }

  #multifdSetup(): MultifdRecvState | null {
    const { options, machine } = this.host;
    // The COLO cache exists before any page can arrive (on any channel).
    if (options.cap("x-colo") && !this.#coloCache) {
      this.#coloCache = new ColoCache(machine.blocks);
      const abort = this.host.abort;
      if (abort) this.#coloCache.onUseAfterRelease = () => abort("COLO cache used after it was released");
    }
    if (!options.cap("multifd")) return null;
    return new MultifdRecvState({
      colo: this.#coloCache,
      channels: options.params["multifd-channels"],
      uuid: this.host.uuid(),
      method: multifdMethod(options.params["multifd-compression"]),
      blocks: machine.blocks,
      // Read with the capabilities, at the first connection.
      defects: defectsOf(this.host.defects),
      beforeColoPacket: () => this.host.breakpoints.hit("colo-multifd-packet"),
      delays: this.host.faults().multifdChannelDelays(),
      clock: machine.clock,
    }, (e) => {
      // A broken channel fails the whole migration: unblock the main loader, keep the channel's error.
      this.#channelError ??= e;
      this.#main?.link.close();
      if (!this.#loading) this.#fail(e);
    });
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener!;
    // Until loading starts; with postcopy-preempt also its channel; in a recovery, the new channels.
    while (listener === this.#listener && !["completed", "failed"].includes(this.status)) {
      let link: Link | null;
      try {
        link = await listener.accept();
      } catch (e) {
        return this.#fail(new Error(`accept failed: ${errorMessage(e)}`));
      }
      if (!link) return;
      // A peer TLS refuses is logged and dropped; the destination keeps listening (as QEMU's does).
      this.host.secure(link).then(
        (l) => this.#onConnection(l, listener),
        (e) => this.host.log(`TLS handshake failed: ${errorMessage(e)}`),
      );
    }
  }

  /** migration_ioc_process_incoming: tell the channel's kind by its first four bytes. */
  async #onConnection(link: Link, from: MigrationListener | null = null): Promise<void> {
    // Capabilities and parameters count as of the first connection (they may be set after -incoming).
    if (!this.#setupDone) {
      this.#setupDone = true;
      this.#multifd = this.#multifdSetup();
    }
    const r = new QEMUFileReader(link);
    // A paused postcopy's first new connection is its main channel (no header: the stream goes on).
    if (this.#recover) {
      // Only migrate-recover's listener brings the new main channel: a connection the old listener
      // accepted before the pause (a preempt channel still in its TLS handshake) is from the broken one.
      if (!this.#recoverTriggered || from !== this.#listener) {
        this.host.log("postcopy: dropping a connection made before the pause");
        link.close();
        return;
      }
      const rec = this.#recover;
      this.#recover = null;
      this.#setStatus("postcopy-recover");
      rec.resolve({ link, r });
      return;
    }
    // postcopy-preempt: after the main channel (and every multifd channel), the next is the preempt
    // channel; it carries page records only, no magic to tell it by.
    if (
      this.#main && this.host.options.cap("postcopy-preempt") && !this.#preemptLink &&
      (!this.#multifd || this.#multifd.complete)
    ) {
      this.#preemptLink = link;
      const waiter = this.#preemptWaiter;
      this.#preemptWaiter = null;
      if (waiter) waiter.resolve({ link, r });
      else this.#preemptEarly = { link, r };
      return;
    }
    this.#pending.add(link);
    try {
      // Without multifd there is nothing to tell apart: the connection is the main channel, and a bad
      // magic is the loader's "Not a migration stream" (QEMU only peeks when multifd is on).
      if (!this.#multifd) {
        if (this.#main) throw r.error("a second main channel connected");
        this.#main = { link, r };
        this.#pending.delete(link);
        this.#maybeStart();
        return;
      }
      // A TLS channel cannot be peeked at (no QIO_CHANNEL_FEATURE_READ_MSG_PEEK): the first connection is
      // the main channel, every later one a multifd channel, whose handshake then checks its own magic.
      const peek = !this.host.options.params["tls-creds"];
      const magic = peek
        ? await r.need(4, "channel magic").then(() => new DataView(r.peek(4).slice().buffer).getUint32(0))
        : this.#main
        ? MULTIFD_MAGIC
        : QEMU_VM_FILE_MAGIC;
      if (magic === QEMU_VM_FILE_MAGIC) {
        if (this.#main) throw r.error("a second main channel connected");
        this.#main = { link, r };
        if (this.#multifd && !this.#multifd.complete) this.#armChannelTimer();
      } else if (magic === MULTIFD_MAGIC) {
        if (!this.#multifd) throw r.error("received a multifd channel, but multifd is not enabled here");
        await r.need(MULTIFD_INIT_SIZE, "multifd channel handshake");
        this.#multifd.addChannel(decodeInit(r.getBytes(MULTIFD_INIT_SIZE)), r, link, 0);
      } else {
        throw r.error(
          `unknown channel magic 0x${magic.toString(16).padStart(8, "0")} on an incoming connection`,
        );
      }
      this.#pending.delete(link);
      this.#maybeStart();
    } catch (e) {
      this.#pending.delete(link);
      link.close();
      this.#fail(e);
    }
  }

  #armChannelTimer(): void {
    if (this.#cancelChannelTimer !== undefined) return;
    this.#cancelChannelTimer = this.host.machine.clock.timer(() => {
      const m = this.#multifd!;
      this.#fail(
        new Error(
          `multifd: only ${m.connected} of ${this.host.options.params["multifd-channels"]} channels ` +
            `connected within ${MULTIFD_CHANNEL_WAIT_MS} ms of the main channel`,
        ),
      );
    }, MULTIFD_CHANNEL_WAIT_MS);
  }

  /** migration_has_all_channels: the load starts once the main channel and every multifd channel are in. */
  #maybeStart(): void {
    if (this.#loading || !this.#main || (this.#multifd && !this.#multifd.complete)) return;
    if (this.status !== "setup") return;
    this.#loading = true;
    this.#cancelChannelTimer?.();
    // The postcopy preempt channel comes later, on the same listener.
    if (!this.host.options.cap("postcopy-preempt")) this.#listener?.close();
    this.#task = this.#process(this.#main.link, this.#main.r);
  }

  async #process(link: Link, r: QEMUFileReader): Promise<void> {
    this.#link = link;
    this.#startTime = this.host.machine.clock.now();
    this.#setStatus("active");
    const machine = this.host.machine;
    const ram = new RamLoadState(
      machine.blocks,
      this.#multifd,
      this.#coloCache,
      this.host.options.cap("x-ignore-shared"),
      this.host.cprTransfer ?? false,
    );
    ram.mappedRam = this.#fileReaders;
    ram.syncPerSection = multifdFlushAfterEachSection(machine.fixture.type);
    this.#ram = ram;
    const savevm = new SaveVMState(machine.devices);
    registerRam(savevm, ram);
    let rp: ReturnPathSender | null = null;
    let slice = this.host.machine.clock.now();
    let coloEnabled = false;
    const postcopy = new PostcopyIncoming({
      blocks: machine.blocks,
      userfault: machine.userfault,
      clock: machine.clock,
      enabled: () => this.host.options.cap("postcopy-ram"),
      ignored: (b) => ramblockIsIgnored(b, this.host.options.cap("x-ignore-shared"), this.host.cprTransfer),
      log: this.host.log,
    });
    this.#postcopy = postcopy;
    ram.postcopy = postcopy;
    machine.onFault = (b, p) => postcopy.fault(b, p);
    let listenThread: Promise<void> | null = null;
    try {
      const ctx: LoadVMContext = {
        local: this.host.config(),
        savevm,
        openReturnPath: () => {
          rp = new ReturnPathSender(link);
          this.#rp = rp;
          postcopy.rp = rp;
          // No device here needs to approve the switchover: the ack goes as soon as there is a path to
          // send it on (loadvm_process_command, OPEN_RETURN_PATH).
          if (this.host.options.cap("switchover-ack")) void this.#sendSwitchoverAck(rp);
        },
        ping: (v) => {
          this.#rp?.pong(v).catch(() => {});
        },
        progress: async () => {
          this.#bytes = r.position;
          // Keep QMP answering during a load: yield to the event loop every few milliseconds.
          if (this.host.machine.clock.now() - slice > LOAD_SLICE_MS) {
            await this.host.machine.clock.yield();
            slice = this.host.machine.clock.now();
          }
        },
        enableColo: this.#coloCache ? () => (coloEnabled = true) : undefined,
        coloEnabled: () => coloEnabled,
        postcopy: {
          advise: (p) => postcopy.advise(p),
          discard: (p) => postcopy.discard(p),
          listen: () => {
            if (!this.#rp) throw new Error("CMD_POSTCOPY_LISTEN without a return path to ask for pages on");
            postcopy.listen();
            if (this.host.options.cap("postcopy-preempt")) this.#startPreemptThread();
            this.#setStatus("postcopy-active");
            // The listen thread loads the rest of the main stream from here, while this loader goes on
            // with the package (the devices).
            listenThread = this.#listenThread(loader, r);
            listenThread.catch(() => {});
          },
          run: () => {
            postcopy.run();
            // From here the destination's dirty log is what its own guest writes (tests compare the rest).
            for (const b of machine.blocks) b.clearDirtyLog();
            machine.resumeIncoming(this.host.autostart());
          },
          resume: async () => {
            if (this.status !== "postcopy-recover") {
              throw new Error(`POSTCOPY_RESUME in state ${this.status}, expected postcopy-recover`);
            }
            const rp = this.#rp;
            await this.host.breakpoints.hit("postcopy-resume-ack");
            if (this.status !== "postcopy-recover" || rp !== this.#rp) {
              throw new ChannelLostError(
                "the recovery's channel went while acknowledging the resume",
                r.position,
              );
            }
            this.#setStatus("postcopy-active");
            // A path that broke under the ack is a lost channel: the listen thread pauses again.
            await rp?.resumeAck().catch((e) => {
              throw new ChannelLostError(`RESUME_ACK not sent: ${errorMessage(e)}`, r.position);
            });
            postcopy.resendRequests();
          },
          recvBitmap: async (idstr) => {
            if (this.status !== "postcopy-recover") {
              throw new Error(
                `RECV_BITMAP: can only receive bitmap in postcopy-recover state (${this.status})`,
              );
            }
            const block = machine.block(idstr);
            if (!block) throw new Error(`RECV_BITMAP: RAM block '${idstr}' not found`);
            const rp = this.#rp!;
            await this.host.breakpoints.hit("postcopy-recv-bitmap", { block: idstr });
            // A path that broke meanwhile loses the bitmap; the listen thread pauses on the channel.
            await rp.recvBitmap(idstr, block.receivedmap, block.pages).catch(() => {});
          },
          listening: () => postcopy.running,
        },
      };
      const loader = new VmStateLoader(ctx);
      const end = await loader.loadVmState(r);
      this.#bytes = r.position;
      if (end === "quit") {
        // Postcopy: the guest runs; the listen thread finishes the stream (and any recovery).
        await listenThread;
        this.#done.resolve();
        return;
      }
      if (coloEnabled) {
        await this.#runColo(link, r, loader, ctx);
        this.#done.resolve();
        return;
      }
      // Every multifd channel has stopped before the guest may run (multifd_recv_cleanup), and before
      // the COLO cache they write into may go.
      await this.#multifd?.close();
      this.#coloCache?.release();
      this.#listener?.close();
      if (rp) await (rp as ReturnPathSender).shut(false).catch(() => {});
      this.#endTime = this.host.machine.clock.now();
      link.close();
      this.#link = null;
      this.#setStatus("completed");
      machine.resumeIncoming(this.host.autostart());
    } catch (e) {
      if (this.#rp) await this.#rp.shut(true).catch(() => {});
      // When a multifd channel broke, the main channel's error is only a consequence.
      this.#fail(this.#channelError ?? e);
      // A postcopy destination that fails has a guest with pages it can never get: it cannot go on.
      if (postcopy.running && !this.#closing) this.host.exit(1);
    } finally {
      postcopy.end();
    }
    this.#done.resolve();
  }

  /**
   * postcopy_ram_listen_thread: the main stream after LISTEN, to EOF; a broken channel pauses it
   * (postcopy_pause_incoming) until migrate-recover brings a new one.
   */
  async #listenThread(loader: VmStateLoader, r: QEMUFileReader): Promise<void> {
    await Promise.resolve();
    let reader = r;
    while (true) {
      try {
        const end = await loader.loadSections(reader);
        if (end === "quit") throw reader.error("POSTCOPY_RUN in the listen thread's stream");
        break;
      } catch (e) {
        if (!(e instanceof ChannelLostError) || this.#closing || this.status === "failed") throw e;
        this.host.log(`postcopy: ${e.message}: paused`);
        const next = await this.#pauseIncoming();
        reader = next.r;
      }
    }
    // postcopy_ram_incoming_cleanup joins the preempt thread: its pages are placed before the end.
    await this.#preemptTask;
    this.#postcopy?.end();
    this.#preemptLink?.close();
    await this.#multifd?.close();
    await this.#rp?.shut(false).catch(() => {});
    this.#endTime = this.host.machine.clock.now();
    this.#closeLink();
    this.#link = null;
    this.#listener?.close();
    this.#setStatus("completed");
  }

  /** postcopy_pause_incoming: drop the channels, wait for migrate-recover's new main channel. */
  async #pauseIncoming(): Promise<{ link: Link; r: QEMUFileReader }> {
    this.#closeLink();
    this.#preemptLink?.close();
    this.#preemptLink = null;
    this.#abandonPreemptWait();
    this.#rp = null;
    if (this.#postcopy) this.#postcopy.rp = null;
    this.#recoverTriggered = false;
    this.#recover = Promise.withResolvers();
    this.#setStatus("postcopy-paused");
    const next = await this.#recover.promise;
    this.#link = next.link;
    this.#rp = new ReturnPathSender(next.link);
    this.#postcopy!.rp = this.#rp;
    // The recovery brings a new preempt channel too; the thread waits for it as at LISTEN.
    if (this.host.options.cap("postcopy-preempt")) this.#startPreemptThread();
    return next;
  }

  async #sendSwitchoverAck(rp: ReturnPathSender): Promise<void> {
    try {
      await this.host.breakpoints.hit("switchover-ack");
      await rp.switchoverAck();
    } catch (e) {
      this.host.log(`could not send the switchover ack: ${errorMessage(e)}`);
    }
  }

  /** At LISTEN, and after a recovery: the preempt thread, on its channel once that has come. */
  #startPreemptThread(): void {
    const early = this.#preemptEarly;
    this.#preemptEarly = null;
    if (early) {
      this.#preemptTask = this.#preemptThread(early.link, early.r);
      return;
    }
    const waiter = Promise.withResolvers<{ link: Link; r: QEMUFileReader } | null>();
    this.#preemptWaiter = waiter;
    this.#preemptTask = waiter.promise.then((c) => (c ? this.#preemptThread(c.link, c.r) : undefined));
  }

  /** Nothing more will come for a waiting preempt thread (the migration failed, paused or closes). */
  #abandonPreemptWait(): void {
    this.#preemptWaiter?.resolve(null);
    this.#preemptWaiter = null;
    this.#preemptEarly?.link.close();
    this.#preemptEarly = null;
  }

  /** postcopy_preempt_thread: urgent pages, placed as they come. */
  async #preemptThread(link: Link, r: QEMUFileReader): Promise<void> {
    try {
      await this.#ram!.loadPreemptChannel(r);
    } catch (e) {
      // A broken preempt channel is the main channel's pause too (the source pauses both).
      if (e instanceof ChannelLostError || this.#closing) return;
      this.#fail(e);
      this.#closeLink();
    } finally {
      link.close();
      if (this.#preemptLink === link) this.#preemptLink = null;
    }
  }

  /** The secondary: checkpoints until a failover, then the secondary VM runs on its own. */
  async #runColo(link: Link, r: QEMUFileReader, loader: VmStateLoader, ctx: LoadVMContext): Promise<void> {
    const machine = this.host.machine;
    const devices = new VmStateLoader({ ...ctx, enableColo: undefined });
    const defects = defectsOf(this.host.defects);
    this.colo = new ColoSecondary({
      machine,
      breakpoints: this.host.breakpoints,
      emit: this.host.emit,
      log: this.host.log,
      link,
      r,
      loader,
      ram: this.#ram!,
      cache: this.#coloCache!,
      multifd: this.#multifd,
      resetDevices: !defects["colo-no-device-reset"],
      releaseCacheEarly: defects["colo-cache-early-release"],
      loadDevices: async (br) => {
        await devices.loadSections(br);
      },
      setStatus: (s) => {
        if (s === "completed") this.#endTime = this.host.machine.clock.now();
        this.#setStatus(s);
      },
    });
    await this.colo.run();
    this.#link = null;
  }

  #fail(e: unknown): void {
    if (this.status === "failed") return;
    this.#abandonPreemptWait();
    this.#cancelChannelTimer?.();
    this.#endTime = this.host.machine.clock.now();
    this.errorDesc = e instanceof StreamError ? `load of migration failed: ${e.message}` : errorMessage(e);
    this.host.log(this.errorDesc);
    this.#closeLink();
    this.#link = null;
    this.#main?.link.close();
    for (const l of this.#pending) l.close();
    this.#listener?.close();
    // Channels stop before anything else is released (the COLO cache, later, must outlive them).
    void this.#multifd?.close();
    this.#setStatus("failed");
    this.#done.resolve();
    if (this.exitOnError) this.host.exit(1);
  }

  /** Stops listening and drops every channel (engine shutdown). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#abandonPreemptWait();
    this.#recover?.reject(new Error("the engine is shutting down"));
    this.#recover?.promise.catch(() => {});
    this.#preemptLink?.close();
    this.#cancelChannelTimer?.();
    this.#listener?.close();
    this.#closeLink();
    this.#main?.link.close();
    for (const l of this.#pending) l.close();
    await this.#multifd?.close();
    await this.#task;
  }

  query(): Record<string, unknown> {
    if (this.status === "none") return {};
    const out: Record<string, unknown> = { status: this.status };
    if (this.#socketAddress.length && this.status !== "completed") {
      out["socket-address"] = this.#socketAddress;
    }
    if (this.#startTime) {
      out["total-time"] = Math.round((this.#endTime || this.host.machine.clock.now()) - this.#startTime);
    }
    if (this.#ram) {
      out["ram"] = {
        transferred: this.#bytes,
        normal: this.#ram.counters.normal,
        duplicate: this.#ram.counters.zero,
      };
    }
    const pc = this.#postcopy;
    if (pc && pc.state !== "none" && pc.state !== "advise" && this.host.options.cap("postcopy-blocktime")) {
      Object.assign(out, pc.query());
    }
    if (this.status === "failed" && this.errorDesc) out["error-desc"] = this.errorDesc;
    return out;
  }
}
