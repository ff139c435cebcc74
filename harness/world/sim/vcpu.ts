/**
 * The simulated world's vCPU: the same workload code the engine's vCPU thread runs, stepped from the
 * scheduler's virtual clock instead of a Worker. It runs at a seeded speed on its own (virtual) core:
 * each step does a seeded number of page writes, then the next step is a timer that far in the future,
 * so migration code and guest writes interleave at every point the scheduler can choose, and a `stop`
 * may see the guest finish a few more writes before it parks, as a real vCPU finishes its instruction.
 *
 * A page write has two effects, the data and the dirty bit, which KVM makes visible one after the other.
 * At the interleave knob's rate a step ends half-way through its last write (a split): whichever of the
 * two the workload did second is held back, migration runs on, and the vCPU completes it before anything
 * else it does (program order) and before it parks. The model's vCPU writes, then marks, so the held bit
 * only delays a resend; a vCPU that marked first would have its write land after the sync took the bit.
 */
import { createWorkload, type GuestMemory, type Workload } from "../../../engine/guest/workload.ts";
import type { VcpuDriver, VcpuOptions } from "../../../engine/guest/vcpu.ts";
import { DirtyRing } from "../../../engine/guest/dirty_ring.ts";
import { userfaultAccess } from "../../../engine/guest/userfault.ts";
import { errorMessage } from "../../../engine/error.ts";
import { viewRam } from "../../../engine/hostmem.ts";
import type { Simulation } from "./scheduler.ts";

/** The vCPU's dirty ring, stepped in this thread like the rest of the guest. */
function ringMarker(opts: VcpuOptions): (block: number, page: number) => void {
  const ring = new DirtyRing(opts.dirtyRing!, opts.blocks.map((b) => new Int32Array(b.dirtyLog)));
  return (block, page) => ring.mark(block, page);
}

/** The longest stretch of guest time one step covers (virtual ms). */
const MAX_STEP_MS = 0.05;
/** The longest a split write keeps the vCPU away, in MAX_STEP_MS. */
const SPLIT_STALL_STEPS = 40;

export class SimVcpu implements VcpuDriver {
  readonly #workload: Workload | null = null;
  #running = false;
  #terminated = false;
  #cancel: (() => void) | null = null;
  #parkWaiters: (() => void)[] = [];
  /** Page writes done so far (a figure for the trace and the bench). */
  writes = 0;
  /** Writes per virtual ms: the seed's speed, scaled by the side's duty cycle against the default 2/2. */
  readonly #fullSpeed: number;
  /** auto-converge's throttle: the vCPU gets (100 - pct) % of its time. */
  #throttle = 0;
  /** Each block's page count. */
  readonly #pages: number[];
  readonly #blocks: GuestMemory["blocks"];
  readonly #markNow: (block: number, page: number) => void;
  /** Splitting the current write: its first mark is held (with the page as it was then). */
  #splitting = false;
  /** The half of a split write still to happen: the dirty bit, or the data (the page as written). */
  #held: { block: number; page: number; before: Uint8Array; data?: Uint8Array } | null = null;

  constructor(
    private readonly sim: Simulation,
    private readonly name: string,
    private readonly opts: VcpuOptions,
  ) {
    const g: GuestMemory = {
      blocks: opts.blocks.map((b) => {
        const mem = viewRam(b.mem);
        return { mem, dirtyLog: new Int32Array(b.dirtyLog), pages: mem.length / 4096 };
      }),
      cpu: new Int32Array(opts.cpu),
      dev: new Int32Array(opts.dev),
      serial: (ch) => opts.onSerial(ch),
      suspend: () => opts.onSuspend?.(),
      mark: (block, page) => this.#mark(block, page),
      // A missing page ends the step; the next step retries it (the page may have been placed by then).
      access: userfaultAccess(opts.userfault, (block, page) => opts.onFault(block, page), null),
    };
    this.#pages = g.blocks.map((b) => b.pages);
    this.#blocks = g.blocks;
    this.#markNow = opts.dirtyRing
      ? ringMarker(opts)
      : (block, page) => Atomics.or(g.blocks[block].dirtyLog, page >>> 5, 1 << (page & 31));
    // At an interleave point a running guest writes a few pages at once, as another core would, and
    // the page the point names, if any (a hot page the guest keeps writing, in the middle of its send).
    this.#leave = sim.addGuest((page) => {
      // A vCPU held in the host half-way through a write writes nothing until its next step.
      if (!this.#running || this.#held) return;
      // A throttled vCPU sleeps that share of its time: it is that much less often running at the point.
      if (this.#throttle > 0 && sim.int(0, 9999) < this.#throttle * 100) return;
      const split = this.#splits();
      this.#run(sim.int(1, sim.knobs.vcpuMaxWrites), split && page === undefined);
      if (page !== undefined) this.#touch(page, split);
      if (this.#held) {
        // Its next step waits out the stall.
        this.#cancel?.();
        this.#schedule(this.#stall());
      }
    });
    const [run, sleep] = [opts.runMs ?? 2, opts.sleepMs ?? 2];
    this.#fullSpeed = sim.knobs.vcpuWritesPerMs * (run / (run + sleep)) / 0.5;
    try {
      this.#workload = createWorkload(opts.workload, g);
    } catch (e) {
      opts.onError(errorMessage(e));
    }
  }

  /** Leaves the simulation's interleave points (terminate). */
  readonly #leave: () => void;

  get running(): boolean {
    return this.#running;
  }

  get #speed(): number {
    return this.#fullSpeed * (100 - this.#throttle) / 100;
  }

  setThrottle(pct: number): void {
    this.#throttle = pct;
  }

  cont(): void {
    if (this.#terminated || this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  stop(): Promise<void> {
    const wasRunning = this.#running;
    this.#running = false;
    if (this.#terminated || !wasRunning) {
      return this.#parkWaiters.length ? new Promise((r) => this.#parkWaiters.push(r)) : Promise.resolve();
    }
    this.#cancel?.();
    // The park is acknowledged at a later decision, after the writes in progress (maybe none).
    const tail = this.sim.int(0, 3) === 0 ? this.sim.int(1, this.sim.knobs.vcpuMaxWrites) : 0;
    const parked = new Promise<void>((r) => this.#parkWaiters.push(r));
    this.#cancel = this.sim.engineClock.timer(() => {
      this.#cancel = null;
      this.#run(tail);
      const ws = this.#parkWaiters;
      this.#parkWaiters = [];
      for (const w of ws) w();
    }, 0);
    return parked;
  }

  terminate(): void {
    this.#leave();
    this.#terminated = true;
    this.#running = false;
    this.#cancel?.();
    this.#cancel = null;
    const ws = this.#parkWaiters;
    this.#parkWaiters = [];
    for (const w of ws) w();
  }

  #schedule(stalled = 0): void {
    // A running guest writes all the time: at most MAX_STEP_MS of its writes in one step, so a slow guest
    // does not go quiet for whole passes between two bursts (a migration would converge that must not).
    const most = Math.max(1, Math.min(this.sim.knobs.vcpuMaxWrites, Math.round(this.#speed * MAX_STEP_MS)));
    const n = this.sim.int(1, most);
    this.#cancel = this.sim.engineClock.timer(() => {
      this.#cancel = null;
      if (!this.#running) return;
      this.#run(n, this.#splits());
      this.#schedule(this.#held ? this.#stall() : 0);
    }, n / this.#speed + stalled);
  }

  /** Whether this write is split (the interleave knob's rate). */
  #splits(): boolean {
    const pct = this.sim.knobs.interleavePercent;
    return pct > 0 && this.sim.int(0, 99) < pct;
  }

  /**
   * How long a split write keeps the vCPU in the host (a write fault's exit): long enough for a dirty
   * sync and the page's send to pass between its two halves.
   */
  #stall(): number {
    return this.sim.int(1, SPLIT_STALL_STEPS) * MAX_STEP_MS;
  }

  /** The workload's own kind of write to the page at ram_addr `addr` (blocks are laid out in order). */
  #touch(addr: number, split = false): void {
    this.#complete();
    if (!this.#workload?.touch) return;
    let page = Math.floor(addr / 4096);
    for (let b = 0; b < this.opts.blocks.length; b++) {
      const pages = this.#pages[b];
      if (page < pages) {
        try {
          this.#splitting = split;
          this.#workload.touch(b, page);
          this.#splitting = false;
          this.#splitEnd();
          this.writes++;
        } catch (e) {
          this.#splitting = false;
          this.opts.onError(`${this.name}: ${errorMessage(e)}`);
        }
        return;
      }
      page -= pages;
    }
  }

  #run(n: number, split = false): void {
    this.#complete();
    if (n <= 0 || !this.#workload) return;
    try {
      if (split) {
        this.#workload.step(n - 1);
        this.#splitting = true;
        this.#workload.step(1);
        this.#splitting = false;
        this.#splitEnd();
      } else this.#workload.step(n);
      this.writes += n;
    } catch (e) {
      this.#splitting = false;
      this.opts.onError(`${this.name}: ${errorMessage(e)}`);
    }
  }

  #mark(block: number, page: number): void {
    if (!this.#splitting || this.#held) return this.#markNow(block, page);
    const mem = this.#blocks[block].mem;
    this.#held = { block, page, before: mem.slice(page * 4096, (page + 1) * 4096) };
  }

  /**
   * The split write's step is over: if the page changed after its mark, the workload marked first, so
   * the bit is set now and the data held (the page put back as it was); otherwise the bit is held.
   */
  #splitEnd(): void {
    const h = this.#held;
    if (!h) return;
    const mem = this.#blocks[h.block].mem;
    const now = mem.subarray(h.page * 4096, (h.page + 1) * 4096);
    const same = now.every((b, i) => b === h.before[i]);
    this.sim.traceLine(`vcpu ${this.name} split ${h.block}:${h.page} holds ${same ? "mark" : "data"}`);
    if (Deno.env.get("DBG")) {
      console.error(`split ${this.name} ${h.page} ${same ? "mark" : "data"} t=${this.sim.now}`);
    }
    if (same) return;
    this.#markNow(h.block, h.page);
    h.data = now.slice();
    now.set(h.before);
  }

  /** The held half of a split write happens (before the vCPU's next write, or its park). */
  #complete(): void {
    const h = this.#held;
    if (!h) return;
    this.#held = null;
    if (h.data) this.#blocks[h.block].mem.set(h.data, h.page * 4096);
    else this.#markNow(h.block, h.page);
  }
}
