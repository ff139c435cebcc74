/**
 * One swarm run: a case, a seed, the scheduler's knobs and a variant of the case's features (channels,
 * compression, zero-page detection, XBZRLE, the COLO checkpoint delay), swarm-testing style: each run
 * turns features on and off, so no run tests everything and every feature is sometimes absent. Plans
 * are generated and shrunk by fast-check; every choice lists its simplest value first ("as the case
 * says"), so a shrunk plan is as close to the plain case as the failure allows.
 */
import fc from "fast-check";
import type { MigrationParameters } from "../../engine/options.ts";
import type { MigrationCase } from "../../harness/families/mod.ts";
import { caseProblems } from "../../harness/families/mod.ts";
import { familyOf } from "../../harness/select.ts";
import { KNOB_CHOICES, type SimKnobs } from "../../harness/world/sim/scheduler.ts";
import type { SimLinkFault } from "../../harness/world/sim/net.ts";
import { type Probe, PROBE_KINDS } from "../../harness/control_plane.ts";

type Compression = MigrationParameters["multifd-compression"];
type ZeroPageDetection = MigrationParameters["zero-page-detection"];

export interface Variant {
  channels?: number;
  compression?: Compression;
  zeroPageDetection?: ZeroPageDetection;
  xbzrle?: boolean;
  checkpointDelayMs?: number;
  /** A smaller guest (8 MiB), for a case whose workload is not the a-b guest (which needs 100 MiB). */
  machine?: "tiny";
}

export interface SwarmPlan {
  case: string;
  seed: number;
  knobs: SimKnobs;
  variant: Variant;
  /**
   * A migration connection (by the order they are made: the main channel first, then multifd channels)
   * reset once that many bytes have crossed it; the case must then complete or fail cleanly.
   */
  fault?: SimLinkFault;
  /**
   * QMP commands at seeded moments (virtual ms after the pair is up) on either side, beside the case's
   * flow, each judged by the state machine's oracle (harness/control_plane.ts).
   */
  probes?: Probe[];
}

const knobsArb: fc.Arbitrary<SimKnobs> = fc.record({
  vcpuWritesPerMs: fc.constantFrom(...KNOB_CHOICES.vcpuWritesPerMs),
  vcpuMaxWrites: fc.constantFrom(...KNOB_CHOICES.vcpuMaxWrites),
  maxChunk: fc.constantFrom(...KNOB_CHOICES.maxChunk),
  linkCapacity: fc.constantFrom(...KNOB_CHOICES.linkCapacity),
  qmpLatencyMs: fc.constantFrom(...KNOB_CHOICES.qmpLatencyMs),
  startupMs: fc.constantFrom(...KNOB_CHOICES.startupMs),
  skewedLinks: fc.constantFrom(false, true),
  interleavePercent: fc.constantFrom(...KNOB_CHOICES.interleavePercent),
  linkMBps: fc.constantFrom(...KNOB_CHOICES.linkMBps),
  linkLatencyMs: fc.constantFrom(...KNOB_CHOICES.linkLatencyMs),
});

const variantArb: fc.Arbitrary<Variant> = fc.record({
  channels: fc.constantFrom(undefined, 1, 2, 8),
  compression: fc.constantFrom<Compression | undefined>(undefined, "zlib", "zstd"),
  zeroPageDetection: fc.constantFrom<ZeroPageDetection | undefined>(undefined, "none", "legacy"),
  xbzrle: fc.constantFrom(undefined, true),
  checkpointDelayMs: fc.constantFrom(undefined, 20, 200),
  machine: fc.constantFrom(undefined, "tiny" as const),
}, { requiredKeys: [] });

/**
 * Plans over `cases` (names). The family is drawn first, then a case in it, so a family of a few cases
 * (the regressions) is drawn as often as one of forty (COLO): a swarm knows nothing of where a bug is,
 * and should not spend most of its plans where most of the cases happen to be.
 */
export function planArb(cases: readonly string[]): fc.Arbitrary<SwarmPlan> {
  const byFamily = new Map<string, string[]>();
  for (const name of cases) {
    // A top-level case (/migration/validate_uuid, ...) is a family of one: they go together.
    const f = name.split("/").length > 3 ? familyOf(name) : "misc";
    byFamily.set(f, [...(byFamily.get(f) ?? []), name]);
  }
  const caseArb = fc.oneof(...[...byFamily.values()].map((names) => fc.constantFrom(...names)));
  // Byte counts spread over 16 B .. 64 MiB (a header, a page, a pass), shrinking towards small ones.
  const afterBytes = fc.tuple(fc.integer({ min: 4, max: 26 }), fc.nat({ max: 0xffffff }))
    .map(([k, r]) => (1 << k) + (r % (1 << k)));
  const fault = fc.record({ connection: fc.integer({ min: 0, max: 4 }), afterBytes });
  // Moments over the first 4 s (virtual): setup, the passes, the switchover, the end of most cases.
  const probe: fc.Arbitrary<Probe> = fc.record({
    atMs: fc.integer({ min: 0, max: 4000 }),
    side: fc.constantFrom<Probe["side"]>("src", "dst"),
    kind: fc.constantFrom(...PROBE_KINDS),
  });
  return fc.noBias(fc.record({
    case: caseArb,
    seed: fc.integer({ min: 0, max: 0xffffffff }),
    knobs: knobsArb,
    variant: variantArb,
    // One plan in four resets a connection; shrinking drops the fault first.
    fault: fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: fault, weight: 1 }),
    // Up to eight commands from the control plane; shrinking drops them one by one.
    probes: fc.array(probe, { maxLength: 8 }),
    // fast-check's bias (towards first elements and extreme integers, for finding edge cases in small
    // inputs) would make a swarm draw the first case of each family and seeds near 0 and 2^32 over and
    // over: every choice here is uniform. Shrinking still walks towards the first values.
  }));
}

/**
 * The case with the variant's features, where they apply: only to a case that expects success (an
 * expected error is tied to its exact setup) and only features its family has; a variant the case table
 * would refuse is dropped. Returns the case and the features actually applied.
 */
export function applyVariant(c: MigrationCase, v: Variant): { case: MigrationCase; applied: Variant } {
  if ("expect" in c && c.expect !== undefined && c.expect !== "succeed") return { case: c, applied: {} };
  const flows = ["precopy", "colo", "converge-after-raise", "postcopy"];
  if (!flows.includes(c.flow)) return { case: c, applied: {} };
  const caps = c.caps ?? [];
  const multifd = caps.includes("multifd");
  const applied: Variant = {};
  const params: Record<string, unknown> = {};
  if (multifd && v.channels !== undefined) {
    params["multifd-channels"] = applied.channels = v.channels;
  }
  // Postcopy: multifd's channel count and zero pages, XBZRLE in its precopy phase; compression stays with
  // the precopy families.
  if (multifd && v.compression !== undefined && c.flow !== "colo" && c.flow !== "postcopy") {
    params["multifd-compression"] = applied.compression = v.compression;
  }
  if (v.zeroPageDetection !== undefined) {
    params["zero-page-detection"] = applied.zeroPageDetection = v.zeroPageDetection;
  }
  let extraCaps = caps;
  if (v.xbzrle && !multifd && c.flow !== "colo" && !caps.includes("xbzrle")) {
    extraCaps = [...caps, "xbzrle"];
    applied.xbzrle = true;
  }
  let out: MigrationCase = {
    ...c,
    caps: extraCaps,
    srcParams: { ...c.srcParams, ...params },
    dstParams: { ...c.dstParams, ...params },
  };
  const workload = out.workload?.kind ?? "a-b";
  // Not where the case needs passes that do not converge: a small guest's first pass ends at once.
  const needsPasses = out.flow === "converge-after-raise" ||
    ("iterations" in out && (out.iterations ?? 1) > 1);
  if (
    v.machine && workload !== "a-b" && (out.machine ?? "pc") === "pc" && !needsPasses &&
    out.flow !== "postcopy" &&
    !("fillRandom" in out && out.fillRandom)
  ) {
    out = { ...out, machine: v.machine };
    applied.machine = v.machine;
  }
  if (out.flow === "colo" && v.checkpointDelayMs !== undefined) {
    out = { ...out, colo: { ...out.colo, checkpointDelayMs: v.checkpointDelayMs } };
    applied.checkpointDelayMs = v.checkpointDelayMs;
  }
  if (caseProblems(out).length > 0) return { case: c, applied: {} };
  return { case: out, applied };
}

/**
 * A case that can take the plan's connection reset: a precopy (not COLO: a reset there is a failover)
 * that expects to succeed now expects to complete or fail cleanly; others run without the fault.
 */
export function withFault(c: MigrationCase, fault: SimLinkFault | undefined): {
  case: MigrationCase;
  fault?: SimLinkFault;
} {
  if (!fault || c.flow !== "precopy" || (c.expect ?? "succeed") !== "succeed") return { case: c };
  if ((c.caps ?? []).includes("x-colo")) return { case: c };
  // Not where the case table refuses an outcome other than success (found: suspend/source-cont, whose
  // `cont` after the migration is for a completed one, waited for a RESUME a failed one never gives).
  const out: MigrationCase = { ...c, expect: "complete-or-fail" };
  if (caseProblems(out).length > 0) return { case: c };
  return { case: out, fault };
}

/** The plan as one line of JSON (what `--replay` takes back). */
export function planText(p: SwarmPlan): string {
  return JSON.stringify(p);
}

/** Parses a `--replay` plan, checking each knob against the values the scheduler knows. */
export function parsePlan(text: string): SwarmPlan {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`--replay: not JSON: ${(e as Error).message}`);
  }
  const p = v as Partial<SwarmPlan>;
  if (typeof p.case !== "string" || typeof p.seed !== "number" || !p.knobs || typeof p.knobs !== "object") {
    throw new Error("--replay: a plan has case (string), seed (number), knobs and variant");
  }
  // A plan from before links had time: its links are instant, as they were.
  const given: Partial<SimKnobs> = p.knobs;
  const knobs = {
    ...given,
    linkMBps: given.linkMBps ?? 0,
    linkLatencyMs: given.linkLatencyMs ?? 0,
  } as SimKnobs;
  for (const k of Object.keys(KNOB_CHOICES) as (keyof SimKnobs)[]) {
    const allowed: readonly unknown[] = KNOB_CHOICES[k];
    if (!allowed.includes(knobs[k])) {
      throw new Error(`--replay: knob ${k} is ${JSON.stringify(knobs[k])}, one of ${allowed.join(", ")}`);
    }
  }
  const f = p.fault;
  if (f !== undefined && (typeof f.connection !== "number" || typeof f.afterBytes !== "number")) {
    throw new Error("--replay: a fault has connection and afterBytes (numbers)");
  }
  const probes = p.probes ?? [];
  if (!Array.isArray(probes) || probes.some((x) => !isProbe(x))) {
    throw new Error(`--replay: probes is a list of {atMs, side: src|dst, kind: ${PROBE_KINDS.join("|")}}`);
  }
  return { case: p.case, seed: p.seed >>> 0, knobs, variant: p.variant ?? {}, fault: f, probes };
}

function isProbe(x: unknown): x is Probe {
  if (typeof x !== "object" || x === null) return false;
  const o: Record<string, unknown> = { ...x };
  return typeof o.atMs === "number" && (o.side === "src" || o.side === "dst") &&
    PROBE_KINDS.some((k) => k === o.kind);
}
