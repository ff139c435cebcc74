/**
 * The source's postcopy phase (migration.c's postcopy_start, the postcopy iterations, postcopy_pause and
 * postcopy_do_resume): the switch — stop, discard what the destination must not keep, the devices in a
 * PACKAGED command with LISTEN and RUN —, then pages in the background while the destination's requests
 * go first, on the preempt channel when there is one; a broken channel pauses it (postcopy-paused)
 * until `migrate` with `resume: true` reconnects and the received bitmaps tell what is left to send.
 */
import { BUFFER_DELAY_MS, slotEnded } from "./rate_limit.ts";
import type { Clock } from "./clock.ts";
import { errorMessage } from "./error.ts";
import type { Machine } from "./guest/machine.ts";
import type { MigrationStatus } from "./migration_status.ts";
import type { MigrationOptions } from "./options.ts";
import { QEMUFileWriter } from "./qemu_file.ts";
import type { RamSaveState } from "./ram.ts";
import { RAM_SAVE_FLAG_EOS } from "./ram.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import {
  MIGRATION_RESUME_ACK_VALUE,
  recvBitmapBytes,
  ReturnPathReader,
  siblingError,
} from "./return_path.ts";
import {
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_POSTCOPY_LISTEN,
  MIG_CMD_POSTCOPY_RAM_DISCARD,
  MIG_CMD_POSTCOPY_RESUME,
  MIG_CMD_POSTCOPY_RUN,
  MIG_CMD_RECV_BITMAP,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_PART,
  RAM_SECTION_ID,
  saveCommand,
  saveFooter,
  saveSectionShort,
  type SaveVMState,
} from "./savevm.ts";
import { CollectLink } from "./transport/buffer.ts";
import type { Link } from "./transport/link.ts";

/** MAX_DISCARDS_PER_COMMAND: ranges per POSTCOPY_RAM_DISCARD command. */
const MAX_DISCARDS_PER_COMMAND = 12;
/** The migration was cancelled or the engine is going away. */
export class PostcopyAbort extends Error {}

/** A return-path message the source cannot accept: the migration fails (it is not a broken channel). */
export class PostcopyProtocolError extends Error {}

/** POSTCOPY_ADVISE: the RAM page-size summary and the target page size (16 bytes). */
export function savePostcopyAdvise(f: QEMUFileWriter, blocks: { pageSize: number }[]): void {
  const p = new Uint8Array(16);
  const v = new DataView(p.buffer);
  v.setUint32(4, blocks.reduce((s, b) => s | b.pageSize, 0));
  v.setUint32(12, TARGET_PAGE_SIZE);
  saveCommand(f, MIG_CMD_POSTCOPY_ADVISE, p);
}

function be32(n: number): Uint8Array {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint32(0, n);
  return p;
}

/** The connection of one postcopy run (the first one, or a recovery's). */
export interface PostcopyChannel {
  link: Link;
  f: QEMUFileWriter;
  rp: ReturnPathReader;
  /** Opens one more connection to the same address (the preempt channel). */
  openChannel?(): Promise<Link>;
}

export interface PostcopyHost {
  machine: Machine;
  options: MigrationOptions;
  clock: Clock;
  ram: RamSaveState;
  savevm: SaveVMState;
  setStatus(s: MigrationStatus): void;
  /** The guest stopped: pre-switchover (if asked) and device; throws when cancelled meanwhile. */
  switchoverStart(): Promise<void>;
  status(): MigrationStatus;
  log(msg: string): void;
  /** Throws PostcopyAbort when the migration must end now (cancel before postcopy, engine shutdown). */
  checkAbort(): void;
  /** Sleeps; cut short by a page request, a pause or an abort. */
  sleep(ms: number): Promise<void>;
  /** Waits for `migrate` with resume: true while paused (rejects with PostcopyAbort at shutdown). */
  waitResume(): Promise<() => Promise<{ link: Link; openChannel?(): Promise<Link> }>>;
  /** A return path reading this link, with the postcopy handlers. */
  openReturnPath(link: Link, bitmaps: BitmapWait): ReturnPathReader;
  /** Downtime: the guest stopped at `start`, and runs on the destination from `end`. */
  downtime(start: number, end: number): void;
  /** Ends a sleep at once (a request came, or the return path ended). */
  wake(): void;
  /** A test breakpoint (x-test-breakpoint) at a step of the recovery. */
  breakpoint(name: "postcopy-bitmaps-reloaded"): Promise<void>;
}

/** The RECV_BITMAP / RESUME_ACK handshake of a recovery, as the return path reports it. */
export class BitmapWait {
  readonly pending = new Set<string>();
  readonly done = Promise.withResolvers<void>();
  readonly ack = Promise.withResolvers<void>();
  constructor(readonly ram: RamSaveState) {
    // Only a recovery waits on these; an unconsumed rejection must not surface.
    this.done.promise.catch(() => {});
    this.ack.promise.catch(() => {});
  }
  bitmapSize(idstr: string): number | Error {
    const b = this.ram.blocks.find((x) => x.idstr === idstr);
    return b ? recvBitmapBytes(b.pages) : new Error(`RECV_BITMAP for unknown block '${idstr}'`);
  }
  bitmap(idstr: string, bitmap: Uint8Array): void {
    if (!this.pending.delete(idstr)) {
      throw new PostcopyProtocolError(`received bitmap of block '${idstr}' that was not asked for`);
    }
    this.ram.reloadBitmap(idstr, bitmap);
    if (this.pending.size === 0) this.done.resolve();
  }
  resumeAck(value: number): void {
    if (value !== MIGRATION_RESUME_ACK_VALUE) {
      throw new PostcopyProtocolError(
        `RESUME_ACK with value ${value}, expected ${MIGRATION_RESUME_ACK_VALUE}`,
      );
    }
    this.ack.resolve();
  }
}

export class PostcopySource {
  #ch: PostcopyChannel;
  #preempt: { link: Link; f: QEMUFileWriter } | null = null;
  /** Set by migrate-pause (and a channel error): the current channels are dropped. */
  #paused = false;

  /** The current return path ended (broken, or a bad message): the loop stops at its next check. */
  #rpEnded = false;

  constructor(private readonly host: PostcopyHost, ch: PostcopyChannel) {
    this.#ch = ch;
    this.#watch(ch.rp);
  }

  #watch(rp: ReturnPathReader): void {
    void rp.shut.then((r) => {
      if (rp !== this.#ch.rp || !(r instanceof Error)) return;
      this.#rpEnded = true;
      this.host.wake();
    });
  }

  /** migrate-pause on the source: shut the channels down; the postcopy thread pauses. */
  pause(): void {
    this.#paused = true;
    this.#ch.link.close();
    this.#preempt?.link.close();
  }

  close(): void {
    this.#ch.link.close();
    this.#preempt?.link.close();
  }

  /** postcopy_start: the switch. Returns once the destination has its devices and runs. */
  async start(downtimeStart: number): Promise<void> {
    const { machine, ram, savevm } = this.host;
    const f = this.#ch.f;
    machine.globalState.store(machine.runstate, machine.wasSuspended);
    await machine.stop("finish-migrate");
    this.host.checkAbort();
    await this.host.switchoverStart();
    // Every multifd page is in the destination's RAM before anything is discarded or placed there.
    if (ram.multifd) {
      saveSectionShort(f, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
      await ram.flushMultifd(f);
      f.putBe64(RAM_SAVE_FLAG_EOS);
      saveFooter(f, RAM_SECTION_ID);
    }
    // What the destination holds of a page dirtied since it was sent is stale: it drops it.
    for (const { block, ranges } of ram.discardRanges()) {
      const name = new TextEncoder().encode(block.idstr);
      for (let i = 0; i < ranges.length; i += MAX_DISCARDS_PER_COMMAND) {
        const chunk = ranges.slice(i, i + MAX_DISCARDS_PER_COMMAND);
        const p = new Uint8Array(3 + name.length + chunk.length * 16);
        const v = new DataView(p.buffer);
        p[0] = 0;
        p[1] = name.length;
        p.set(name, 2);
        p[2 + name.length] = 0;
        chunk.forEach(([start, len], k) => {
          const at = 3 + name.length + k * 16;
          v.setUint32(at, Math.floor(start / 0x1_0000_0000));
          v.setUint32(at + 4, start >>> 0);
          v.setUint32(at + 8, Math.floor(len / 0x1_0000_0000));
          v.setUint32(at + 12, len >>> 0);
        });
        saveCommand(f, MIG_CMD_POSTCOPY_RAM_DISCARD, p);
      }
    }
    saveCommand(f, MIG_CMD_PING, be32(2));
    // The package: LISTEN, the devices, RUN — loaded from a buffer, so the main channel stays free for
    // the pages the destination faults on meanwhile.
    const pkgLink = new CollectLink();
    const pf = new QEMUFileWriter(pkgLink);
    saveCommand(pf, MIG_CMD_POSTCOPY_LISTEN);
    savevm.saveDevices(pf);
    saveCommand(pf, MIG_CMD_PING, be32(3));
    saveCommand(pf, MIG_CMD_POSTCOPY_RUN);
    await pf.flush();
    const pkg = pkgLink.bytes();
    saveCommand(f, MIG_CMD_PACKAGED, be32(pkg.length));
    f.putBytes(pkg);
    ram.enterPostcopy();
    saveCommand(f, MIG_CMD_PING, be32(4));
    await f.flush();
    this.host.downtime(downtimeStart, this.host.clock.now());
    // QEMU 10.0 leaves device only once the package is out (7.2 went postcopy-active before the stop).
    this.host.setStatus("postcopy-active");
  }

  /** The postcopy iterations, pauses and recoveries included, then the end of the stream. */
  async run(): Promise<void> {
    const { options } = this.host;
    while (true) {
      try {
        if (options.cap("postcopy-preempt") && !this.#preempt) await this.#openPreempt();
        await this.#iterate();
        await this.#complete();
        return;
      } catch (e) {
        if (e instanceof PostcopyAbort || e instanceof PostcopyProtocolError) throw e;
        const rpErr = await this.#rpProtocolError();
        if (rpErr) throw rpErr;
        this.host.log(`postcopy: channel lost (${errorMessage(e)}): pausing`);
        await this.#pauseAndResume();
      }
    }
  }

  /** A return path that ended on a bad message (not a broken channel) fails the migration. */
  async #rpProtocolError(): Promise<Error | null> {
    const rp = this.#ch.rp;
    const r = await Promise.race([rp.shut, Promise.resolve(null)]);
    if (r instanceof Error && !rp.lostChannel) return new PostcopyProtocolError(`return path: ${r.message}`);
    return null;
  }

  async #openPreempt(): Promise<void> {
    if (!this.#ch.openChannel) throw new Error("postcopy-preempt needs a socket transport");
    const link = await this.#ch.openChannel();
    this.#preempt = { link, f: new QEMUFileWriter(link, 64 << 10) };
  }

  /** Background pages under max-postcopy-bandwidth; requested pages whenever they come. */
  async #iterate(): Promise<void> {
    const { ram, options, clock } = this.host;
    const f = this.#ch.f;
    const sent = () => f.position + (this.#preempt?.f.position ?? 0);
    let slotStart = clock.now();
    let slotBytes = sent();
    const limit = () => options.params["max-postcopy-bandwidth"] / (1000 / BUFFER_DELAY_MS);
    const rateExceeded = () => limit() > 0 && sent() - slotBytes >= limit();
    while (ram.dirtyPages > 0) {
      this.#check();
      if (slotEnded(clock.now(), slotStart)) {
        slotStart = clock.now();
        slotBytes = sent();
      }
      saveSectionShort(f, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
      await ram.postcopyIterate(f, this.#preempt?.f ?? null, rateExceeded);
      saveFooter(f, RAM_SECTION_ID);
      await f.flush();
      if (rateExceeded() && !ram.hasRequests) {
        await this.host.sleep(slotStart + BUFFER_DELAY_MS - clock.now());
      }
    }
  }

  /** qemu_savevm_state_complete_postcopy: ram's END section, EOF; then the destination's SHUT. */
  async #complete(): Promise<void> {
    const { ram } = this.host;
    const f = this.#ch.f;
    this.#check();
    saveSectionShort(f, QEMU_VM_SECTION_END, RAM_SECTION_ID);
    await ram.completePostcopy(f, this.#preempt?.f ?? null);
    // The preempt channel ends before the main stream does: once the destination has read EOF there it
    // completes and closes its channels, and an EOS written after that would break on a closed socket
    // (and pause a migration that had finished).
    if (this.#preempt) {
      this.#preempt.f.putBe64(RAM_SAVE_FLAG_EOS);
      await this.#preempt.f.flush();
    }
    saveFooter(f, RAM_SECTION_ID);
    f.put8(QEMU_VM_EOF);
    await f.flush();
    const flag = await this.#ch.rp.shut;
    if (flag instanceof Error) {
      if (this.#ch.rp.lostChannel) throw flag;
      throw new PostcopyProtocolError(`return path: ${flag.message}`);
    }
    if (flag !== 0) throw new PostcopyProtocolError(siblingError(flag).message);
    this.#preempt?.link.close();
  }

  #check(): void {
    this.host.checkAbort();
    if (this.#paused) throw new Error("paused by migrate-pause");
    if (this.#rpEnded) throw new Error("the return path ended");
  }

  /** postcopy_pause, then postcopy_do_resume once `migrate` resumes; paused again if that fails. */
  async #pauseAndResume(): Promise<void> {
    const { ram } = this.host;
    while (true) {
      this.close();
      this.#preempt = null;
      this.host.setStatus("postcopy-paused");
      const connect = await this.host.waitResume();
      this.host.setStatus("postcopy-recover-setup");
      let opened;
      try {
        opened = await connect();
      } catch (e) {
        this.host.log(`postcopy recovery: connect failed: ${errorMessage(e)}`);
        continue;
      }
      this.host.checkAbort();
      this.host.setStatus("postcopy-recover");
      const bitmaps = new BitmapWait(ram);
      const f = new QEMUFileWriter(opened.link);
      const rp = this.host.openReturnPath(opened.link, bitmaps);
      this.#ch = { link: opened.link, f, rp, openChannel: opened.openChannel };
      // Only now: the old return path ends some time after its channel closed, and until the switch
      // above it was the current one (that end belongs to the pause, not to the new channel).
      this.#paused = false;
      this.#rpEnded = false;
      this.#watch(rp);
      try {
        ram.resumePrepare();
        for (const b of ram.blocks) {
          bitmaps.pending.add(b.idstr);
          const name = new TextEncoder().encode(b.idstr);
          const p = new Uint8Array(1 + name.length);
          p[0] = name.length;
          p.set(name, 1);
          saveCommand(f, MIG_CMD_RECV_BITMAP, p);
        }
        await f.flush();
        await this.#until(bitmaps.done.promise, rp);
        await this.host.breakpoint("postcopy-bitmaps-reloaded");
        this.#check();
        saveCommand(f, MIG_CMD_POSTCOPY_RESUME);
        await f.flush();
        await this.#until(bitmaps.ack.promise, rp);
        this.host.setStatus("postcopy-active");
        return;
      } catch (e) {
        if (e instanceof PostcopyAbort || e instanceof PostcopyProtocolError) throw e;
        this.host.log(`postcopy recovery failed: ${errorMessage(e)}: paused again`);
      }
    }
  }

  /** Waits for a step of the handshake; a broken or bad return path ends the wait. */
  async #until(p: Promise<void>, rp: ReturnPathReader): Promise<void> {
    const r = await Promise.race([p.then(() => null), rp.shut]);
    this.#check();
    if (r === null) return;
    if (r instanceof Error && !rp.lostChannel) throw new PostcopyProtocolError(`return path: ${r.message}`);
    throw new Error(
      `the return path ended during the recovery handshake (${r instanceof Error ? r.message : `SHUT ${r}`})`,
    );
  }
}
