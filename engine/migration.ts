/**
 * The outgoing migration (migration/migration.c): status machine, the migration "thread" (setup,
 * iterations under a rate limit, convergence, switchover), cancel, and query-migrate.
 */
import { multifdFlushAfterEachSection } from "./hw_compat.ts";
import type { Clock } from "./clock.ts";
import { BUFFER_DELAY_MS, slotEnded } from "./rate_limit.ts";
import type { MigrationStatus } from "./migration_status.ts";
import { errorMessage } from "./error.ts";
import type { Machine } from "./guest/machine.ts";
import { QEMUFileWriter } from "./qemu_file.ts";
import { RamSaveState, registerRam } from "./ram.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import { XbzrleSaveState } from "./ram_xbzrle.ts";
import type { MigrationOptions } from "./options.ts";
import { ReturnPathReader, siblingError } from "./return_path.ts";
import {
  type ConfigurationInfo,
  MIG_CMD_ENABLE_COLO,
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  QEMU_VM_EOF,
  saveCommand,
  saveEofAndVmdesc,
  saveHeader,
  SaveVMState,
} from "./savevm.ts";
import type { Breakpoints } from "./testing/breakpoints.ts";
import type { OutgoingFaultHooks } from "./testing/faults.ts";
import { ColoPrimary } from "./colo/primary.ts";
import { BitmapWait, PostcopyAbort, PostcopySource, savePostcopyAdvise } from "./migration_postcopy.ts";
import { AutoConverge, THROTTLE_SYNC_MS, ThrottleTrigger } from "./cpu_throttle.ts";
import type { DirtyLimit } from "./dirtylimit.ts";
import type { Link } from "./transport/link.ts";
import { isSeekable } from "./transport/file.ts";
import { MappedRamSave } from "./ram_mapped.ts";
import type { MigrationAddress } from "./transport/uri.ts";
import { multifdMethod } from "./multifd/methods.ts";
import { MultifdSendState } from "./multifd/send.ts";

/** BUFFER_DELAY: the rate-limit and counter period. */
export { BUFFER_DELAY_MS };
/** How long the source waits for the destination's SHUT at the end. */
const RETURN_PATH_SHUT_TIMEOUT_MS = 30_000;

export class MigrationCancelled extends Error {
  constructor() {
    super("migration cancelled");
  }
}

export interface MigrationHost {
  breakpoints: Breakpoints;
  /** The VM's uuid (zeros when unset), which multifd channels present in their handshake. */
  uuid(): Uint8Array;
  machine: Machine;
  options: MigrationOptions;
  config(): ConfigurationInfo;
  /** The test faults armed for a new outgoing migration (x-test-inject-fault). */
  faults(): OutgoingFaultHooks;
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  /** The vCPU dirty limit a migration with dirty-limit applies when it does not converge. */
  dirtyLimit?: DirtyLimit;
}

/** Opens the outgoing channel; `returnPath` says whether the transport can carry one. */
export interface OutgoingChannels {
  link: Link;
  returnPath: boolean;
  finish?(): void;
  /** Opens one more connection to the same address (a multifd channel); absent for files. */
  openChannel?(): Promise<Link>;
}
export type Connector = () => Promise<OutgoingChannels>;

/**
 * migration_channels_and_transport_compatible (and, for `migrate`, migrate_prepare's compression check):
 * mapped-ram needs a seekable transport, multifd several channels (a file has them only with mapped-ram).
 * Returns QEMU's error, or null.
 */
export function transportCompatible(
  addr: MigrationAddress,
  options: MigrationOptions,
  outgoing: boolean,
): string | null {
  const mapped = options.cap("mapped-ram");
  if (mapped && addr.transport !== "file") return "Migration requires seekable transport (e.g. file)";
  if (options.cap("multifd") && (addr.transport === "file" || addr.transport === "fd") && !mapped) {
    return "Migration requires multi-channel URIs (e.g. tcp)";
  }
  if (outgoing && mapped && options.cap("multifd") && options.params["multifd-compression"] !== "none") {
    return "Cannot use compression with mapped-ram";
  }
  return null;
}

/** migrate_prepare's refusal of what a cpr mode cannot be combined with, or null. */
export function cprConflict(options: MigrationOptions): string | null {
  if (options.params.mode === "normal") return null;
  const conflict = options.cap("postcopy-ram")
    ? "postcopy"
    : options.cap("background-snapshot")
    ? "background snapshot"
    : options.cap("x-colo")
    ? "COLO"
    : null;
  return conflict ? `Cannot use ${conflict} with CPR` : null;
}

export class MigrationState {
  status: MigrationStatus = "none";
  errorDesc: string | null = null;
  /** The COLO primary, once the initial precopy completed with x-colo. */
  colo: ColoPrimary | null = null;

  #ram: RamSaveState | null = null;
  #f: QEMUFileWriter | null = null;
  #mappedRam: MappedRamSave | null = null;
  #link: Link | null = null;
  #multifd: MultifdSendState | null = null;
  #startTime = 0;
  #setupTime = 0;
  #endTime = 0;
  #downtime = 0;
  #downtimeStart = 0;
  #thresholdBytes = 0;
  #bandwidth = 0;
  #mbps = 0;
  #expectedDowntime = 0;
  #continue: PromiseWithResolvers<void> | null = null;
  #wake: PromiseWithResolvers<void> = Promise.withResolvers();
  #thread: Promise<void> | null = null;
  #vmWasRunning = false;
  /** auto-converge, while a migration with it runs. */
  #autoConverge: AutoConverge | null = null;
  /** The destination's RP_SWITCHOVER_ACK came (switchover-ack). */
  #switchoverAcked = false;
  #ackArrived: PromiseWithResolvers<void> = Promise.withResolvers();
  #rpError: Error | null = null;
  /** migrate-start-postcopy was given: switch at the next iteration. */
  #startPostcopy = false;
  #postcopy: PostcopySource | null = null;
  /** migrate with resume: true while paused: the new connection. */
  #resume: PromiseWithResolvers<Connector> | null = null;
  /** The engine is shutting down: even postcopy ends. */
  #shutdown = false;

  constructor(private readonly host: MigrationHost) {}

  isActive(): boolean {
    return [
      "setup",
      "active",
      "pre-switchover",
      "device",
      "cancelling",
      "colo",
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover-setup",
      "postcopy-recover",
    ].includes(this.status);
  }

  /** migration_in_postcopy. */
  inPostcopy(): boolean {
    return this.status.startsWith("postcopy-");
  }

  /** yank: shut the migration channels down (the peer is presumed unreachable). */
  yank(): void {
    this.#link?.close();
    this.#multifd?.close();
    this.#postcopy?.close();
  }

  /** migrate-start-postcopy. */
  startPostcopy(): void {
    if (!this.host.options.cap("postcopy-ram")) {
      throw new Error("Enable postcopy with migrate_set_capability before the start of migration");
    }
    if (this.status === "none") throw new Error("Postcopy must be started after migration has been started");
    this.#startPostcopy = true;
    this.#wake.resolve();
  }

  /** migrate-pause on the source: only while postcopy runs or recovers. */
  pause(): void {
    if (this.status !== "postcopy-active" && this.status !== "postcopy-recover") {
      throw new Error(
        "migrate-pause is currently only supported during postcopy-active or postcopy-recover state",
      );
    }
    // migrate_set_error keeps the first error: a pause after a failure leaves that one.
    this.errorDesc ??= "Postcopy migration is paused by the user";
    this.#postcopy?.pause();
    this.#wake.resolve();
  }

  /** migrate with resume: true: a paused postcopy reconnects. */
  resume(connect: Connector): void {
    if (this.status !== "postcopy-paused" || !this.#resume) {
      throw new Error("Cannot resume if there is no paused migration");
    }
    this.#resume.resolve(connect);
  }

  #setStatus(s: MigrationStatus): void {
    if (this.status === s) return;
    this.status = s;
    if (this.host.options.cap("events")) this.host.emit("MIGRATION", { status: s });
  }

  /** Starts a migration; the QMP command returns once the migration has been set up to run. */
  start(connect: Connector): void {
    this.errorDesc = null;
    this.colo = null;
    this.#rpError = null;
    this.#thresholdBytes = 0;
    this.#bandwidth = 0;
    this.#mbps = 0;
    this.#downtime = 0;
    this.#startTime = this.#clock.now();
    this.#endTime = 0;
    this.#ram = null;
    this.#startPostcopy = false;
    this.#postcopy = null;
    this.#wake = Promise.withResolvers();
    this.#setStatus("setup");
    this.#thread = this.#run(connect);
  }

  /**
   * migrate_fd_error before anything started (the channel could not be had): setup, then failed with
   * the reason, as QEMU reports an fd: name or an fdset it cannot find.
   */
  failToStart(why: string): void {
    this.errorDesc = why;
    this.#startTime = this.#endTime = this.#clock.now();
    this.#setStatus("setup");
    this.#setStatus("failed");
  }

  /** Resolves when the current migration thread has finished (for orderly shutdown). */
  async join(): Promise<void> {
    await this.#thread;
  }

  /**
   * migrate_cancel: only a running migration is affected; cancelling twice is harmless. In postcopy the
   * guest runs on the destination: the source cannot take it back, so it refuses.
   */
  cancel(): void {
    if (this.inPostcopy()) throw new Error("Postcopy migration in progress, cannot cancel.");
    if (!["setup", "active", "pre-switchover", "device"].includes(this.status)) return;
    this.#setStatus("cancelling");
    // Shutting the channel down unblocks a writer stuck on a slow or dead peer (qemu_file_shutdown).
    this.#link?.close();
    this.#multifd?.close();
    this.#wake.resolve();
    this.#continue?.reject(new MigrationCancelled());
  }

  /** migrate-continue: leaves pre-switchover. */
  continueFrom(state: string, anyState = false): void {
    if (this.status !== state && !anyState) {
      throw new Error(`Migration not in expected state: ${this.status}`);
    }
    this.#continue?.resolve();
  }

  /** Engine shutdown: ends any migration, postcopy included. */
  shutdown(): void {
    this.#shutdown = true;
    this.#postcopy?.close();
    this.#resume?.reject(new PostcopyAbort("the engine is shutting down"));
    if (!this.inPostcopy()) this.cancel();
    this.#wake.resolve();
  }

  #checkCancelled(): void {
    if (this.#shutdown) throw new MigrationCancelled();
    if (this.status === "cancelling") throw new MigrationCancelled();
    if (this.#rpError) throw this.#rpError;
  }

  get #clock(): Clock {
    return this.host.machine.clock;
  }

  async #sleep(ms: number): Promise<void> {
    let cancel = () => {};
    await Promise.race([new Promise<void>((r) => (cancel = this.#clock.timer(r, ms))), this.#wake.promise]);
    cancel();
    // In postcopy a wake (a page request) only ends this sleep: the next one waits again.
    if (this.#postcopy && !this.#shutdown) this.#wake = Promise.withResolvers();
  }

  /** Sleeps at most `ms`, less if the switchover ack comes (or a cancel or return-path error wakes). */
  async #sleepUntilAck(ms: number): Promise<void> {
    let cancel = () => {};
    await Promise.race([
      new Promise<void>((r) => (cancel = this.#clock.timer(r, Math.max(ms, 1)))),
      this.#ackArrived.promise,
      this.#wake.promise,
    ]);
    cancel();
  }

  /** migration_stop_vm: the downtime starts, the run state is kept for the destination, the VM stops. */
  async #stopVm(machine: Machine): Promise<void> {
    this.#downtimeStart = this.#clock.now();
    machine.globalState.store(machine.runstate, machine.wasSuspended);
    await machine.stop("finish-migrate");
  }

  async #run(connect: Connector): Promise<void> {
    const { machine, options } = this.host;
    // vm_old_state is live: running, or suspended (a suspended guest is given back suspended).
    this.#vmWasRunning = machine.live;
    this.#switchoverAcked = false;
    this.#ackArrived = Promise.withResolvers();
    this.#autoConverge = null;
    let finish: (() => void) | undefined;
    let rp: ReturnPathReader | null = null;
    try {
      let opened;
      try {
        opened = await connect();
      } catch (e) {
        throw new Error(`Failed to connect: ${errorMessage(e)}`);
      }
      this.#link = opened.link;
      finish = opened.finish;
      this.#checkCancelled();
      const faults = this.host.faults();
      const f = new QEMUFileWriter(faults.mainChannel(opened.link));
      f.faults = faults.output();
      this.#f = f;
      let mappedRam: MappedRamSave | null = null;
      if (options.cap("mapped-ram")) {
        if (!isSeekable(opened.link)) throw new Error("Migration requires seekable transport (e.g. file)");
        mappedRam = new MappedRamSave(opened.link);
      }
      this.#mappedRam = mappedRam;
      // cpr-reboot (migrate_fd_connect): the VM stops before any RAM is saved, so RAM and devices cannot
      // drift apart: the image is what a restarted QEMU resumes from.
      const cpr = options.params.mode !== "normal";
      if (cpr) await this.#stopVm(machine);
      const multifd = options.cap("multifd") ? await this.#multifdSetup(opened, faults, mappedRam) : null;
      this.#multifd = multifd;
      this.#checkCancelled();
      const interleave = machine.clock.interleave?.bind(machine.clock);
      const ram = new RamSaveState(
        machine.blocks,
        () => options.params["zero-page-detection"],
        () => machine.clock.now(),
        {
          multifd,
          xbzrle: options.cap("xbzrle")
            ? new XbzrleSaveState(options.params["xbzrle-cache-size"], interleave)
            : null,
          interleave,
          mappedRam,
          flushDirtyRing: machine.dirtyRing ? () => void machine.dirtyRing!.reap() : undefined,
          ignoreShared: options.cap("x-ignore-shared"),
          cprTransfer: options.params.mode === "cpr-transfer",
          syncPerSection: multifdFlushAfterEachSection(machine.fixture.type),
        },
      );
      this.#ram = ram;
      const savevm = new SaveVMState(machine.devices);
      registerRam(savevm, ram);

      // Setup: header, configuration, return path, the live sections' START sections.
      const cfg = faults.configuration(this.host.config());
      const cfgDesc = saveHeader(f, cfg);
      // COLO messages use the reverse direction of the main connection, so no return path alongside.
      const postcopy = options.cap("postcopy-ram");
      if (postcopy && !opened.returnPath) {
        throw new Error("postcopy-ram needs a return path: not over a file");
      }
      if (options.cap("x-colo")) saveCommand(f, MIG_CMD_ENABLE_COLO);
      else if ((options.cap("return-path") || postcopy) && opened.returnPath) {
        saveCommand(f, MIG_CMD_OPEN_RETURN_PATH);
        saveCommand(f, MIG_CMD_PING, new Uint8Array([0, 0, 0, 1]));
        rp = this.#openReturnPath(opened.link, null);
      }
      // Postcopy may be asked for later: the destination refuses now if it cannot do it.
      if (postcopy) savePostcopyAdvise(f, machine.blocks);
      await savevm.saveSetup(f);
      this.#passEvent();
      faults.afterSetup(f, machine.blocks);
      await f.flush();
      this.#setupTime = this.#clock.now() - this.#startTime;
      this.#checkCancelled();
      this.#setStatus("active");

      // Iterations until the remaining dirty memory fits in the downtime at the measured bandwidth.
      let slotStart = this.#clock.now();
      // Main channel and multifd channels both count against the rate limit.
      const sent = () => f.position + (multifd?.bytes ?? 0) + (mappedRam?.bytes ?? 0);
      let slotBytes = sent();
      if (options.cap("auto-converge")) {
        const ac = new AutoConverge((pct) => machine.vcpu.setThrottle(pct));
        this.#autoConverge = ac;
        ram.onSyncPeriod = (dirtied) => ac.period(dirtied, sent(), options.params);
      }
      const dl = this.host.dirtyLimit;
      if (options.cap("dirty-limit") && dl) {
        const trigger = new ThrottleTrigger();
        ram.onSyncPeriod = (dirtied) => {
          if (trigger.period(dirtied, sent(), options.params["throttle-trigger-threshold"]) === null) return;
          dl.startForMigration(
            options.params["vcpu-dirty-limit"],
            options.params["x-vcpu-dirty-limit-period"],
          );
        };
      }
      const rateExceeded = () => {
        const limit = options.params["max-bandwidth"] / (1000 / BUFFER_DELAY_MS);
        return limit > 0 && sent() - slotBytes >= limit;
      };
      while (true) {
        this.#checkCancelled();
        const now = this.#clock.now();
        if (slotEnded(now, slotStart)) {
          this.#updateCounters(sent() - slotBytes, now - slotStart);
          slotStart = now;
          slotBytes = sent();
        }
        // While throttled, the dirty log is synced at least every few seconds, so the throttle follows the
        // guest even when a pass takes long (the CPU throttle's periodic sync, QEMU 9.2 on).
        if ((this.#autoConverge?.percentage ?? 0) > 0 && now - ram.lastSync >= THROTTLE_SYNC_MS) {
          ram.syncBitmap();
          this.#passEvent();
        }
        let pending = ram.pendingBytes();
        if (pending < this.#thresholdBytes) {
          ram.syncBitmap();
          this.#passEvent();
          pending = ram.pendingBytes();
        }
        const converged = pending <= this.#thresholdBytes;
        if (converged && this.#canSwitchover()) break;
        // migrate-start-postcopy: the switch comes while there is still much to send.
        if (this.#startPostcopy) break;
        await savevm.saveIterate(f, rateExceeded, (id) => faults.partFooterId(id));
        await f.flush();
        if (rateExceeded()) await this.#sleep(slotStart + BUFFER_DELAY_MS - this.#clock.now());
        // Converged but not acked: the pages the guest dirties meanwhile go on, a slot at a time.
        else if (converged) await this.#sleepUntilAck(slotStart + BUFFER_DELAY_MS - this.#clock.now());
      }

      if (this.#startPostcopy && ram.pendingBytes() > this.#thresholdBytes) {
        await this.#runPostcopy(opened, f, rp!, ram, savevm);
        return;
      }
      // Switchover: stop the guest, optionally pause, then the rest of RAM and the devices.
      if (!cpr) await this.#stopVm(machine);
      await this.#switchoverStart();
      await savevm.saveCompletePrecopy(f);
      const devices = savevm.saveDevices(f);
      faults.afterDevices(f, machine.devices);
      const colo = options.cap("x-colo");
      // Under COLO the stream goes on with checkpoints after EOF: no vmdesc (see README).
      if (colo) f.put8(QEMU_VM_EOF);
      else saveEofAndVmdesc(f, cfgDesc, devices);
      await f.flush();
      finish?.();
      if (rp) await this.#awaitShut(rp);
      this.#checkCancelled();
      this.#endTime = this.#clock.now();
      this.#downtime = this.#endTime - this.#downtimeStart;
      this.#updateCounters(0, 0);
      if (colo) {
        // migration_completion under COLO: device → colo, then the checkpoint loop (the guest runs again
        // once the secondary is ready).
        this.#setStatus("colo");
        this.colo = new ColoPrimary({
          machine,
          options,
          breakpoints: this.host.breakpoints,
          emit: this.host.emit,
          log: this.host.log,
          f,
          link: opened.link,
          ram,
          savevm,
          multifd,
          completed: () => this.#setStatus("completed"),
        });
        await this.colo.run();
        return;
      }
      machine.setRunstate("postmigrate");
      this.#setStatus("completed");
    } catch (e) {
      this.#endTime = this.#clock.now();
      if (this.inPostcopy() && !(e instanceof MigrationCancelled) && !(e instanceof PostcopyAbort)) {
        // The guest ran on the destination already: the source cannot take it back (it stays stopped).
        this.errorDesc = errorMessage(e);
        this.host.log(`postcopy failed: ${this.errorDesc}`);
        this.#setStatus("failed");
        return;
      }
      if (this.status === "cancelling" || e instanceof MigrationCancelled || e instanceof PostcopyAbort) {
        this.#setStatus("cancelled");
      } else {
        this.errorDesc = errorMessage(e);
        this.host.log(`migration failed: ${this.errorDesc}`);
        this.#setStatus("failed");
      }
      // A failed or cancelled migration gives the guest back (migration_iteration_finish).
      if (this.#vmWasRunning && !machine.live) machine.start();
    } finally {
      this.#autoConverge?.stop();
      this.host.dirtyLimit?.stopForMigration();
      this.#link?.close();
      this.#link = null;
      this.#multifd?.close();
      this.#postcopy?.close();
      if (rp) await rp.shut;
    }
  }

  /** The return path, with postcopy's page requests and (in a recovery) the bitmap handshake. */
  #openReturnPath(link: Link, bitmaps: BitmapWait | null): ReturnPathReader {
    return new ReturnPathReader(link, (e) => {
      this.#rpError = e;
      this.#wake.resolve();
    }, {
      reqPages: (idstr, start, len) => this.#ram!.queueRequest(idstr, start, len),
      bitmapSize: (idstr) =>
        bitmaps ? bitmaps.bitmapSize(idstr) : new Error("RECV_BITMAP outside a recovery"),
      recvBitmap: (idstr, bitmap) => {
        if (!bitmaps) throw new Error("RECV_BITMAP outside a recovery");
        bitmaps.bitmap(idstr, bitmap);
      },
      resumeAck: (v) => {
        if (!bitmaps) throw new Error("RESUME_ACK outside a recovery");
        bitmaps.resumeAck(v);
      },
      switchoverAck: () => {
        this.#switchoverAcked = true;
        this.#ackArrived.resolve();
      },
    });
  }

  /**
   * migration_can_switchover: with switchover-ack a live guest waits for the destination's ack; a
   * stopped one does not need it.
   */
  /**
   * migration_switchover_start, the guest stopped: pre-switchover until migrate-continue when asked, then
   * device (precopy's completion and postcopy's start alike, as QEMU 10.0).
   */
  async #switchoverStart(): Promise<void> {
    this.#checkCancelled();
    if (this.host.options.cap("pause-before-switchover")) {
      this.#continue = Promise.withResolvers();
      this.#setStatus("pre-switchover");
      await this.#continue.promise;
      this.#continue = null;
    }
    this.#checkCancelled();
    this.#setStatus("device");
  }

  #canSwitchover(): boolean {
    return !this.host.options.cap("switchover-ack") || !this.#vmWasRunning || this.#switchoverAcked;
  }

  /** postcopy_start and the postcopy phase (migration_postcopy.ts), to completed or failed. */
  async #runPostcopy(
    opened: OutgoingChannels,
    f: QEMUFileWriter,
    rp: ReturnPathReader,
    ram: RamSaveState,
    savevm: SaveVMState,
  ): Promise<void> {
    const { machine, options } = this.host;
    ram.onRequest = () => this.#wake.resolve();
    const pc = new PostcopySource({
      machine,
      options,
      clock: this.#clock,
      ram,
      savevm,
      setStatus: (s) => this.#setStatus(s),
      switchoverStart: () => this.#switchoverStart(),
      status: () => this.status,
      log: (m) => this.host.log(m),
      checkAbort: () => {
        if (this.#shutdown || this.status === "cancelling") throw new PostcopyAbort("migration cancelled");
      },
      sleep: (ms) => this.#sleep(ms),
      wake: () => this.#wake.resolve(),
      breakpoint: (name) => this.host.breakpoints.hit(name),
      waitResume: async () => {
        this.#resume = Promise.withResolvers();
        if (this.#shutdown) this.#resume.reject(new PostcopyAbort("the engine is shutting down"));
        try {
          const connect = await this.#resume.promise;
          return async () => {
            const o = await connect();
            this.#link = o.link;
            return { link: o.link, openChannel: o.openChannel };
          };
        } finally {
          this.#resume = null;
        }
      },
      openReturnPath: (link, bitmaps) => this.#openReturnPath(link, bitmaps),
      downtime: (start, end) => {
        this.#downtime = end - start;
      },
    }, { link: opened.link, f, rp, openChannel: opened.openChannel });
    this.#postcopy = pc;
    this.#downtimeStart = this.#clock.now();
    await pc.start(this.#downtimeStart);
    await pc.run();
    this.#endTime = this.#clock.now();
    this.#updateCounters(0, 0);
    machine.setRunstate("postmigrate");
    this.#setStatus("completed");
  }

  /** Connects the multifd channels and sends their handshakes (multifd_send_setup). */
  async #multifdSetup(
    opened: OutgoingChannels,
    faults: OutgoingFaultHooks,
    mappedRam: MappedRamSave | null,
  ): Promise<MultifdSendState> {
    const { options } = this.host;
    if (!opened.openChannel) throw new Error("Migration requires multi-channel URIs (e.g. tcp)");
    const n = faults.multifdChannels(options.params["multifd-channels"]);
    const m = await MultifdSendState.open(n, () => opened.openChannel!(), {
      uuid: this.host.uuid(),
      method: multifdMethod(options.params["multifd-compression"]),
      level: options.params["multifd-compression"] === "zstd"
        ? options.params["multifd-zstd-level"]
        : options.params["multifd-zlib-level"],
      detectZeroPages: options.params["zero-page-detection"] === "multifd",
      faults,
      mappedRam: mappedRam ?? undefined,
    });
    this.#multifd = m;
    return m;
  }

  async #awaitShut(rp: ReturnPathReader): Promise<void> {
    let cancel = () => {};
    const flag = await Promise.race([
      rp.shut,
      new Promise<Error>((r) =>
        cancel = this.#clock.timer(
          () => r(new Error(`no SHUT from the destination within ${RETURN_PATH_SHUT_TIMEOUT_MS} ms`)),
          RETURN_PATH_SHUT_TIMEOUT_MS,
        )
      ),
      this.#wake.promise.then(() => new MigrationCancelled()),
    ]);
    cancel();
    if (flag instanceof MigrationCancelled) throw flag;
    if (flag instanceof Error) throw new Error(`return path: ${flag.message}`);
    if (flag !== 0) throw siblingError(flag);
  }

  #passEvent(): void {
    if (this.host.options.cap("events") && this.#ram) {
      this.host.emit("MIGRATION_PASS", { pass: this.#ram.dirtySyncCount });
    }
  }

  /** migration_update_counters: bandwidth, threshold, expected downtime, dirty-pages-rate. */
  #updateCounters(bytes: number, ms: number): void {
    const p = this.host.options.params;
    if (ms > 0) {
      this.#bandwidth = bytes / ms;
      const expectedBw = p["avail-switchover-bandwidth"] > 0
        ? p["avail-switchover-bandwidth"] / 1000
        : this.#bandwidth;
      this.#thresholdBytes = expectedBw * p["downtime-limit"];
      this.#mbps = bytes * 8 / ms / 1000;
      if (this.#ram && expectedBw > 0) this.#expectedDowntime = this.#ram.pendingBytes() / expectedBw;
    }
  }

  /** The source's query-migrate answer. */
  /** The last migration's postcopy requests, and those for pages sent already; null before any. */
  postcopyRequestStats(): { requests: number; requestsForSentPages: number } | null {
    const ram = this.#ram;
    return ram ? { requests: ram.postcopyRequests, requestsForSentPages: ram.requestsForSentPages } : null;
  }

  query(): Record<string, unknown> {
    if (this.status === "none") return {};
    const out: Record<string, unknown> = { status: this.status };
    const now = this.#endTime || this.#clock.now();
    if (this.status !== "setup") {
      out["total-time"] = Math.round(now - this.#startTime);
      out["setup-time"] = Math.round(this.#setupTime);
    }
    if (this.status === "completed" || (this.inPostcopy() && this.#downtime)) {
      out["downtime"] = Math.round(this.#downtime);
    } else if (this.isActive()) out["expected-downtime"] = Math.round(this.#expectedDowntime);
    const ram = this.#ram;
    if (ram) {
      const mf = this.#multifd;
      const multifdBytes = mf?.bytes ?? 0;
      const transferred = (this.#f?.position ?? 0) + multifdBytes + (this.#mappedRam?.bytes ?? 0);
      const normal = ram.counters.normal + (mf?.normalPages ?? 0);
      out["ram"] = {
        transferred,
        remaining: ram.pendingBytes(),
        total: ram.totalBytes,
        duplicate: ram.counters.duplicate + (mf?.zeroPages ?? 0),
        normal,
        "normal-bytes": normal * TARGET_PAGE_SIZE,
        "dirty-pages-rate": ram.dirtyPagesRate,
        mbps: this.#mbps,
        "dirty-sync-count": ram.dirtySyncCount,
        "postcopy-requests": ram.postcopyRequests,
        "page-size": TARGET_PAGE_SIZE,
        "multifd-bytes": multifdBytes,
        "pages-per-second": Math.round(this.#bandwidth * 1000 / TARGET_PAGE_SIZE),
        "precopy-bytes": transferred,
        "downtime-bytes": 0,
        "postcopy-bytes": 0,
        "dirty-sync-missed-zero-copy": 0,
      };
    }
    if (ram?.xbzrle) out["xbzrle-cache"] = ram.xbzrle.query();
    if (this.host.options.cap("auto-converge") && this.isActive()) {
      out["cpu-throttle-percentage"] = this.#autoConverge?.percentage ?? 0;
    }
    const limited = this.host.options.cap("dirty-limit") ? this.host.dirtyLimit?.migrationInfo() : null;
    if (limited) {
      out["dirty-limit-throttle-time-per-round"] = limited.throttleUs;
      out["dirty-limit-ring-full-time"] = limited.ringFullUs;
    }
    // Whatever the status (QEMU 8.2 on): a user's postcopy pause stays on record through the recovery.
    if (this.errorDesc) out["error-desc"] = this.errorDesc;
    return out;
  }
}
