/**
 * The sampler: while a case runs, `query-migrate` on both sides at a fixed interval, plus the pass and
 * status events, as time series for the progress line and the HTML report. Only QMP is used, so it works
 * in every world. It is a bystander: its errors are swallowed, a side that exited or whose connection is
 * gone is no longer asked, at most one request per side is in flight (a slow side is skipped, never
 * queued), and its commands stay out of the QMP transcript.
 */
import { QmpCommandError, type QmpEvent, type QmpWaitOptions } from "../../engine/qmp/client.ts";

export type SampleSide = "source" | "target";

/** The RAM counters of a query-migrate answer (QEMU's names, camel-cased); absent when not reported. */
export interface RamCounters {
  transferred?: number;
  remaining?: number;
  total?: number;
  duplicate?: number;
  normal?: number;
  dirtySyncCount?: number;
  /** Pages dirtied per second. */
  dirtyPagesRate?: number;
  mbps?: number;
  pagesPerSecond?: number;
  multifdBytes?: number;
}

/** One query-migrate answer. */
export interface PollSample {
  kind: "poll";
  /** Milliseconds since the case (the pair) started. */
  t: number;
  side: SampleSide;
  status: string;
  ram?: RamCounters;
  /** COLO checkpoints done so far (the primary in status `colo`, where x-test-colo-info exists). */
  checkpoints?: number;
}

/** A MIGRATION_PASS event: a dirty-bitmap sync started pass `pass`. */
export interface PassSample {
  kind: "pass";
  t: number;
  side: SampleSide;
  pass: number;
}

/** A MIGRATION event: the side's status changed (`device` marks the switchover). */
export interface StatusSample {
  kind: "status";
  t: number;
  side: SampleSide;
  status: string;
}

export type Sample = PollSample | PassSample | StatusSample;

/** What the sampler needs of a QMP client (QmpClient has it; tests give a fake). */
export interface SamplerQmp {
  readonly closed: boolean;
  readonly events: readonly QmpEvent[];
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts?: QmpWaitOptions): Promise<T>;
}

/** What the sampler needs of a side (a world's Side has it). */
export interface SampledSide {
  readonly name: SampleSide;
  readonly qmp: SamplerQmp;
  readonly exitStatus: Deno.CommandStatus | null;
}

export interface SamplerOptions {
  /** Between two polls of a side (default 100 ms). */
  intervalMs?: number;
  /** Of each request; a side that does not answer in time is asked again later (default 1 s). */
  timeoutMs?: number;
  /** performance.now() at the case start (default: now). */
  t0?: number;
}

export const DEFAULT_SAMPLE_MS = 100;

/** A QMP number (a 64-bit counter may arrive as a bigint) as a number, else undefined. */
function num(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The RAM counters of a query-migrate answer, or undefined when it has no `ram` object. */
export function ramCounters(reply: Record<string, unknown>): RamCounters | undefined {
  const r = reply.ram;
  if (!isRecord(r)) return undefined;
  const out: RamCounters = {
    transferred: num(r.transferred),
    remaining: num(r.remaining),
    total: num(r.total),
    duplicate: num(r.duplicate),
    normal: num(r.normal),
    dirtySyncCount: num(r["dirty-sync-count"]),
    dirtyPagesRate: num(r["dirty-pages-rate"]),
    mbps: num(r.mbps),
    pagesPerSecond: num(r["pages-per-second"]),
    multifdBytes: num(r["multifd-bytes"]),
  };
  for (const k of Object.keys(out) as (keyof RamCounters)[]) if (out[k] === undefined) delete out[k];
  return out;
}

export class Sampler {
  readonly samples: Sample[] = [];
  readonly #sides: () => readonly (SampledSide | undefined)[];
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #t0: number;
  /** The case start on the wall clock QMP event timestamps use. */
  readonly #wall0: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;
  readonly #inflight = new Map<SamplerQmp, Promise<void>>();
  /** Per client (a restarted destination is a new one): how many of its events were read. */
  readonly #eventsRead = new Map<SamplerQmp, number>();
  /** Clients without x-test-colo-info (real QEMU): not asked again. */
  readonly #noColoInfo = new Set<SamplerQmp>();

  constructor(sides: () => readonly (SampledSide | undefined)[], opts: SamplerOptions = {}) {
    this.#sides = sides;
    this.#intervalMs = opts.intervalMs ?? DEFAULT_SAMPLE_MS;
    this.#timeoutMs = opts.timeoutMs ?? 1000;
    this.#t0 = opts.t0 ?? performance.now();
    this.#wall0 = performance.timeOrigin + this.#t0;
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
  }

  /** No request is sent after this; what is in flight ends with its reply or the client's close. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Stops, waits for the requests in flight (bounded by their timeout) and reads the last events. */
  async settled(): Promise<void> {
    this.stop();
    await Promise.all(this.#inflight.values());
    this.#readEvents();
    this.samples.sort((a, b) => a.t - b.t);
  }

  #live(): SampledSide[] {
    return this.#sides().filter((s): s is SampledSide => !!s && !s.exitStatus && !s.qmp.closed);
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#readEvents();
    for (const side of this.#live()) {
      if (this.#inflight.has(side.qmp)) continue;
      const p = this.#poll(side).catch(() => {}).finally(() => this.#inflight.delete(side.qmp));
      this.#inflight.set(side.qmp, p);
    }
  }

  async #poll(side: SampledSide): Promise<void> {
    const opts = { timeoutMs: this.#timeoutMs, untraced: true };
    const reply = await side.qmp.execute<Record<string, unknown>>("query-migrate", {}, opts);
    const sample: PollSample = {
      kind: "poll",
      t: performance.now() - this.#t0,
      side: side.name,
      status: typeof reply.status === "string" ? reply.status : "none",
    };
    const ram = ramCounters(reply);
    if (ram) sample.ram = ram;
    if (sample.status === "colo" && side.name === "source" && !this.#noColoInfo.has(side.qmp)) {
      try {
        const info = await side.qmp.execute<{ primary?: { checkpoints?: number } | null }>(
          "x-test-colo-info",
          {},
          opts,
        );
        sample.checkpoints = num(info.primary?.checkpoints);
      } catch (e) {
        // Real QEMU has no such command: do not ask again. A timeout or a closed side is just skipped.
        if (e instanceof QmpCommandError) this.#noColoInfo.add(side.qmp);
      }
    }
    this.samples.push(sample);
  }

  /** MIGRATION_PASS and MIGRATION events of every side seen, timed by their QMP timestamps. */
  #readEvents(): void {
    for (const side of this.#sides()) {
      if (!side) continue;
      const events = side.qmp.events;
      for (let i = this.#eventsRead.get(side.qmp) ?? 0; i < events.length; i++) {
        const e = events[i];
        const t = e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000 - this.#wall0;
        if (e.event === "MIGRATION_PASS") {
          const pass = num(e.data.pass);
          if (pass !== undefined) this.samples.push({ kind: "pass", t, side: side.name, pass });
        } else if (e.event === "MIGRATION" && typeof e.data.status === "string") {
          this.samples.push({ kind: "status", t, side: side.name, status: e.data.status });
        }
      }
      this.#eventsRead.set(side.qmp, events.length);
    }
  }
}
