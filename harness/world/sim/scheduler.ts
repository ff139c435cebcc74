/**
 * The simulated world's scheduler: one seed owns every source of nondeterminism of a pair — the clock,
 * which link delivers next and how many bytes, when and how far the vCPU runs. The engines, the
 * harness's flow and its QMP clients all run in this one process; between two decisions every promise
 * chain runs to where it waits on something only the scheduler provides (a byte, a timer, a vCPU park),
 * so the state at each decision, and the decision taken, are a function of the seed alone.
 *
 * The scheduler decides only while the flow waits on the simulation (a QMP reply or event, a sleep on
 * the virtual clock, a side's shutdown); while the flow does real I/O (a temp dir, artifacts) nothing
 * moves, so real time never leaks into the run. Every decision goes into a SHA-256 trace hash, with
 * every byte of QMP in both directions: the same seed on the same commit gives the same hash.
 */
import { createHash, type Hash } from "node:crypto";
import { setImmediate } from "node:timers";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import type { Clock } from "../../../engine/clock.ts";

/** Something the scheduler can choose to do now. */
export interface SimActor {
  /** Stable name for the trace ("link main:src>dst", "vcpu source"). */
  readonly label: string;
  /** Whether it has work at this decision. */
  ready(): boolean;
  /** How often it is chosen against the others ready (a slow link has a small weight); default 1. */
  readonly weight?: number;
  /** Does one step, with the scheduler's randomness; returns the virtual milliseconds it took. */
  step(sim: Simulation): number;
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  harness: boolean;
  cancelled: boolean;
}

/** How the seed shapes a run (the swarm varies these per seed). */
export interface SimKnobs {
  /** The vCPU's speed: page writes per virtual millisecond (it runs on a core of its own). */
  vcpuWritesPerMs: number;
  /** Upper bound of the writes of one vCPU step. */
  vcpuMaxWrites: number;
  /** Upper bound of the bytes of one delivery (a read returns a partial chunk of a seeded size). */
  maxChunk: number;
  /** Bytes a link holds in flight before its writer waits. */
  linkCapacity: number;
  /** Virtual milliseconds a QMP message takes to arrive (the harness is no faster than a real one). */
  qmpLatencyMs: number;
  /** Virtual milliseconds a side takes to start (its QMP greeting comes after; a running guest runs). */
  startupMs: number;
  /**
   * Whether migration links get uneven speeds: each new one a seeded weight, some 50 times slower than
   * others (a multifd channel far behind the main channel, a return path that lags).
   */
  skewedLinks: boolean;
  /**
   * Percent of the engine's interleave points (Clock.interleave: a page's dirty bit cleared, its data not
   * yet copied; an XBZRLE page cached or copied, not yet sent or encoded) at which a running guest
   * writes, right there (the page the point names among its writes).
   */
  interleavePercent: number;
  /**
   * A migration link's bandwidth in MB/s of virtual time (0: unlimited, each delivery costing the
   * scheduler's one clock its bytes at 4 GB/s, as before). Limited, each link carries its bytes on its
   * own: a write is due once the link has sent what was before it, links in parallel.
   */
  linkMBps: number;
  /** A migration link's one-way latency in virtual ms (bytes arrive that long after they are due). */
  linkLatencyMs: number;
}

/**
 * The values each knob takes, simplest first (the swarm's shrinking walks towards the first): whole
 * chunks and big buffers before short reads and tight ones, even links before skewed ones.
 */
export const KNOB_CHOICES = {
  // The a-b guest prints its 'B' after 64 passes over 99 MiB: 3 s (virtual) at 500 writes per ms. The
  // guest's writes are most of a run's real cost, so the speeds stay as low as still dirty memory fast.
  vcpuWritesPerMs: [500, 2000, 8000],
  vcpuMaxWrites: [64, 512, 4096],
  maxChunk: [1 << 20, 1 << 16, 1 << 12],
  linkCapacity: [4 << 20, 1 << 20, 1 << 16],
  qmpLatencyMs: [0.1, 0.02, 0.5],
  startupMs: [60, 20, 150],
  skewedLinks: [false, true, true],
  interleavePercent: [0, 2, 20],
  // 10 Gb/s, the link a migration usually crosses; a 1 ms link is a long one. (1 Gb/s, 125 MB/s, makes
  // /dirty_limit miss its pre-switchover within 30 s under a fast vCPU: not drawn until that is understood.)
  linkMBps: [0, 1250],
  linkLatencyMs: [0, 0.05, 1],
} as const satisfies { [K in keyof SimKnobs]: readonly SimKnobs[K][] };

/**
 * SplitMix32: a seed (often a small integer: 0, 1, a run number) mixed into 32 well-spread bits before it
 * seeds a generator of its own, so that neighbouring seeds draw unrelated values.
 */
export function splitmix32(seed: number): number {
  let z = (seed + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** The link knobs a seed draws: from a generator of their own, so the other knobs a seed drew stay. */
function linkKnobsFor(seed: number): Pick<SimKnobs, "linkMBps" | "linkLatencyMs"> {
  const rng = xoroshiro128plus(splitmix32(seed));
  const pick = <T>(xs: readonly T[]): T => xs[uniformInt(rng, 0, xs.length - 1)];
  return { linkMBps: pick(KNOB_CHOICES.linkMBps), linkLatencyMs: pick(KNOB_CHOICES.linkLatencyMs) };
}

export function knobsFor(rng: () => number, seed = 0): SimKnobs {
  const pick = <T>(xs: readonly T[]): T => xs[rng() % xs.length];
  const c = KNOB_CHOICES;
  return {
    ...linkKnobsFor(seed),
    vcpuWritesPerMs: pick(c.vcpuWritesPerMs),
    vcpuMaxWrites: pick(c.vcpuMaxWrites),
    maxChunk: pick(c.maxChunk),
    linkCapacity: pick(c.linkCapacity),
    qmpLatencyMs: pick(c.qmpLatencyMs),
    startupMs: pick(c.startupMs),
    skewedLinks: pick(c.skewedLinks),
    interleavePercent: pick(c.interleavePercent),
  };
}

/** A decision as the failure report shows it. */
export interface SimDecision {
  n: number;
  at: number;
  what: string;
}

const RECENT = 40;
/** Wall-clock milliseconds at virtual time 0 (event timestamps): fixed, so they hash alike. */
export const SIM_EPOCH_MS = Date.UTC(2026, 0, 1);

export class SimulationStalled extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimulationStalled";
  }
}

export class Simulation {
  readonly seed: number;
  readonly knobs: SimKnobs;
  #now = 0;
  #seq = 0;
  #decisions = 0;
  #timers: Timer[] = [];
  readonly #actors = new Set<SimActor>();
  readonly #rng;
  readonly #hash: Hash = createHash("sha256");
  readonly #recent: SimDecision[] = [];
  /** Flow-side waits in progress (QMP clients are asked separately). */
  #flowWaits = 0;
  readonly #flowWaiting = new Set<() => boolean>();
  #closed = false;
  #loop: Promise<void> | null = null;
  #stalled: string | null = null;
  readonly #onStall = new Set<(why: string) => void>();

  readonly #lines: string[] | null;

  /**
   * `interleavePercent` is a floor on the knob of that name, whether drawn or given (a case that exists
   * to race the guest against one step of migration code).
   */
  /** `label`: what the run is (its case, a swarm's plan), hashed first: the trace hash names it. */
  constructor(
    seed: number,
    knobs?: SimKnobs,
    opts: { record?: boolean; interleavePercent?: number; label?: string } = {},
  ) {
    this.#lines = opts.record ? [] : null;
    this.seed = seed >>> 0;
    this.#rng = xoroshiro128plus(this.seed);
    const k = knobs ?? knobsFor(() => this.int(0, 0x7fffffff), this.seed);
    const floor = opts.interleavePercent ?? 0;
    this.knobs = k.interleavePercent >= floor ? k : { ...k, interleavePercent: floor };
    if (opts.label !== undefined) this.#trace(`run ${opts.label}`);
    this.#trace(`seed ${this.seed} ${JSON.stringify(this.knobs)}`);
  }

  /** A uniform integer in [from, to], from the seed. */
  int(from: number, to: number): number {
    return uniformInt(this.#rng, from, to);
  }

  get now(): number {
    return this.#now;
  }

  get decisions(): number {
    return this.#decisions;
  }

  /** The trace hash so far (hex): every decision, every QMP byte. */
  traceHash(): string {
    return this.#hash.copy().digest("hex");
  }

  /** The last decisions, oldest first (for a failure report). */
  recent(): readonly SimDecision[] {
    return this.#recent;
  }

  /** Feeds a line into the trace (a QMP message). */
  traceLine(line: string): void {
    this.#trace(line);
  }

  #trace(what: string): void {
    this.#hash.update(what);
    this.#hash.update("\n");
    this.#lines?.push(what);
  }

  /** Every line hashed so far, when recording was asked for (to diff two runs of a seed). */
  get lines(): readonly string[] | null {
    return this.#lines;
  }

  add(actor: SimActor): void {
    this.#actors.add(actor);
  }

  remove(actor: SimActor): void {
    this.#actors.delete(actor);
  }

  /** Registers a flow-side waiter probe (a QMP client's "am I awaiting a reply or an event"). */
  watchFlow(waiting: () => boolean): () => void {
    this.#flowWaiting.add(waiting);
    return () => this.#flowWaiting.delete(waiting);
  }

  /** Runs `p` as a flow-side wait: the scheduler decides while it is pending. */
  async flowWait<T>(p: Promise<T>): Promise<T> {
    this.#flowWaits++;
    try {
      return await p;
    } finally {
      this.#flowWaits--;
    }
  }

  /** Called with the reason when nothing can ever run again while the flow waits. */
  onStall(fn: (why: string) => void): () => void {
    this.#onStall.add(fn);
    return () => this.#onStall.delete(fn);
  }

  get stalled(): string | null {
    return this.#stalled;
  }

  #flowBlocked(): boolean {
    if (this.#flowWaits > 0) return true;
    for (const w of this.#flowWaiting) if (w()) return true;
    return false;
  }

  #addTimer(fn: () => void, ms: number, harness: boolean): () => void {
    const t: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, harness, cancelled: false };
    // Sorted by (at, seq): equal deadlines fire in the order they were set.
    let i = this.#timers.length;
    while (i > 0 && (this.#timers[i - 1].at > t.at)) i--;
    this.#timers.splice(i, 0, t);
    return () => {
      t.cancelled = true;
    };
  }

  readonly #guests = new Set<(page?: number) => void>();

  /**
   * A guest that can write at an interleave point (its vCPU runs a few writes when called, and writes
   * the page the point names, if it names one).
   */
  addGuest(burst: (page?: number) => void): () => void {
    this.#guests.add(burst);
    return () => this.#guests.delete(burst);
  }

  /** The clock the engines see. */
  readonly engineClock: Clock = {
    now: () => this.#now,
    sleep: (ms) => new Promise((r) => this.#addTimer(r, ms, false)),
    timer: (fn, ms) => this.#addTimer(fn, ms, false),
    yield: () => new Promise((r) => this.#addTimer(r, 0, false)),
    interleave: (point, page) => {
      const pct = this.knobs.interleavePercent;
      if (pct === 0 || this.#guests.size === 0 || this.int(0, 99) >= pct) return;
      this.#trace(page === undefined ? `interleave ${point}` : `interleave ${point} ${page}`);
      for (const burst of this.#guests) burst(page);
    },
  };

  /** The clock the flow sees: the same time; its sleeps are waits on the simulation. */
  readonly flowClock: Clock = {
    now: () => this.#now,
    sleep: (ms) => this.flowWait(new Promise((r) => this.#addTimer(r, ms, true))),
    timer: (fn, ms) => this.#addTimer(fn, ms, true),
    yield: () => this.flowWait(new Promise((r) => this.#addTimer(r, 0, true))),
  };

  /** Starts deciding (idempotent). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops deciding; resolves once the loop has ended. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      // A macrotask turn: every microtask chain started by the last decision has run to its next wait.
      await new Promise((r) => setImmediate(r));
      if (this.#closed) break;
      if (!this.#flowBlocked()) continue;
      this.#decide();
    }
  }

  #decide(): void {
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    const due = this.#timers.length > 0 && this.#timers[0].at <= this.#now;
    const ready: SimActor[] = [];
    for (const a of this.#actors) if (a.ready()) ready.push(a);
    const n = ++this.#decisions;
    // A timer whose time has come fires before anything else: the guest's core, a rate-limit slot or a
    // poll do not wait behind the links (a starved guest would let a migration converge that must not).
    if (due) {
      this.#fire(n);
      return;
    }
    if (ready.length === 0) {
      if (this.#timers.length === 0) {
        this.#stall();
        return;
      }
      // Nothing to do until the next timer: time jumps there.
      this.#now = this.#timers[0].at;
      this.#fire(n);
      return;
    }
    const actor = this.#pick(ready);
    const cost = actor.step(this);
    this.#note(n, actor.label);
    this.#now += cost;
  }

  #pick(ready: SimActor[]): SimActor {
    // Weights are multiples of 1/50 (see linkWeight): integers keep the choice exact.
    const w = ready.map((a) => Math.max(1, Math.round((a.weight ?? 1) * 50)));
    let r = this.int(0, w.reduce((s, x) => s + x, 0) - 1);
    for (let i = 0; i < ready.length; i++) {
      r -= w[i];
      if (r < 0) return ready[i];
    }
    return ready[ready.length - 1];
  }

  /** The delivery weight of a new migration link: 1, or with skewed links a seeded 1, 1/5 or 1/50. */
  linkWeight(): number {
    if (!this.knobs.skewedLinks) return 1;
    return [1, 1, 0.2, 0.02][this.int(0, 3)];
  }

  #fire(n: number): void {
    const t = this.#timers.shift()!;
    this.#note(n, `timer ${t.harness ? "flow" : "engine"} @${t.at.toFixed(3)}`);
    t.fn();
  }

  #note(n: number, what: string): void {
    this.#trace(`${n} ${this.#now.toFixed(6)} ${what}`);
    this.#recent.push({ n, at: this.#now, what });
    if (this.#recent.length > RECENT) this.#recent.shift();
  }

  #stall(): void {
    const why = "the simulation stalled: the flow waits, but no link has bytes to deliver, no vCPU runs " +
      "and no timer is set (a deadlock of the sides)";
    this.#stalled = why;
    this.#trace("stalled");
    // The handlers end the flow's waits (its QMP connections close with this reason); idempotent.
    for (const fn of [...this.#onStall]) fn(why);
  }
}
