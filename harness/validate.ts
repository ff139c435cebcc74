/**
 * The case-table validator: what the types cannot say. It runs when the tables load (cases/all.ts and
 * every `registerCases`) and rejects a table with every problem listed, each naming the case and the
 * field — a field its flow would ignore, a fault its transport cannot carry, a capability a parameter
 * needs, a duplicate name — so a case can never pass by silently not doing what it says.
 */
import { CAPABILITIES, type Capability, DEFAULT_PARAMETERS } from "../engine/options.ts";
import { isDefect } from "../engine/testing/defects.ts";
import { isRelease } from "../engine/testing/releases.ts";
import { MACHINES } from "../fixtures/machines.ts";
import {
  CANCEL_PHASES,
  type CaseBase,
  type CaseOf,
  type FaultSpec,
  type Flow,
  type MigrationCase,
  type Outcome,
  type SocketCase,
  TIERS,
} from "./case.ts";

/** Every field of each record type, spelled out: the compiler checks each list is complete. */
const BASE: Record<keyof CaseBase, true> = {
  name: true,
  tier: true,
  why: true,
  timeoutMs: true,
  machine: true,
  workload: true,
  caps: true,
  srcCaps: true,
  dstCaps: true,
  srcParams: true,
  dstParams: true,
  uuid: true,
  vcpu: true,
  dstVcpu: true,
  memPrealloc: true,
  simInterleavePercent: true,
  defects: true,
  guards: true,
};
const SOCKET: Record<keyof SocketCase, true> = { transport: true, defer: true, exitOnError: true };
const OUTCOME: Record<keyof Outcome, true> = { expect: true, error: true };

const FIELDS: { [F in Flow]: Record<keyof CaseOf<F>, true> } = {
  precopy: {
    ...BASE,
    ...SOCKET,
    ...OUTCOME,
    flow: true,
    live: true,
    iterations: true,
    migrateChannels: true,
    fillRandom: true,
    writeOnce: true,
    fault: true,
    dstFaults: true,
    expectXbzrlePages: true,
    release: true,
  },
  "converge-after-raise": {
    ...BASE,
    ...SOCKET,
    flow: true,
    iterations: true,
    dstFaults: true,
    expectDirtyPagesRate: true,
    expectXbzrlePages: true,
  },
  file: { ...BASE, ...OUTCOME, flow: true, fileOffset: true, stopSrc: true },
  cancel: { ...BASE, flow: true, cancelAfter: true, dstFaults: true, whenBlocked: true },
  "bad-dest": { ...BASE, flow: true },
  "multifd-cancel": { ...BASE, ...SOCKET, flow: true },
  "analyze-script": { ...BASE, flow: true },
  colo: { ...BASE, ...SOCKET, flow: true, colo: true, fillRam: true },
};

function isFlow(f: unknown): f is Flow {
  return typeof f === "string" && Object.hasOwn(FIELDS, f);
}

export class CaseTableError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid case table (${problems.length} problem(s)):\n  ${problems.join("\n  ")}`);
    this.name = "CaseTableError";
  }
}

/** Capabilities on one side: the shared ones plus that side's own. */
function capsOf(c: MigrationCase, side: "src" | "dst"): Capability[] {
  return [...(c.caps ?? []), ...((side === "src" ? c.srcCaps : c.dstCaps) ?? [])];
}

const NAME = /^\/migration(\/[A-Za-z0-9_.-]+)+$/;

/** The problems of one case (empty when it is valid). */
export function caseProblems(c: MigrationCase): string[] {
  const out: string[] = [];
  const bad = (field: string, problem: string) => out.push(`case '${c.name}': ${field}: ${problem}`);

  if (typeof c.name !== "string" || !NAME.test(c.name)) bad("name", "must be a /migration/... path");
  if (!TIERS.includes(c.tier)) bad("tier", `must be one of ${TIERS.join("|")}, got '${c.tier}'`);
  if (typeof c.why !== "string" || c.why.trim() === "") bad("why", "missing: say what bug class it guards");
  else if (c.why.includes("\n")) bad("why", "must be one line");
  if (!isFlow(c.flow)) {
    bad("flow", `unknown flow '${String(c.flow)}'`);
    return out;
  }
  const allowed = FIELDS[c.flow];
  for (const [k, v] of Object.entries(c)) {
    if (v !== undefined && !Object.hasOwn(allowed, k)) {
      bad(k, `not a field of a '${c.flow}' case (its flow would ignore it)`);
    }
  }
  if (c.timeoutMs !== undefined && !(c.timeoutMs > 0)) bad("timeoutMs", "must be positive");
  if (
    c.simInterleavePercent !== undefined &&
    !(Number.isInteger(c.simInterleavePercent) && c.simInterleavePercent >= 1 &&
      c.simInterleavePercent <= 100)
  ) {
    bad("simInterleavePercent", "must be an integer percent, 1..100");
  }
  if (c.machine !== undefined && !Object.hasOwn(MACHINES, c.machine)) {
    bad("machine", `unknown machine '${c.machine}'`);
  }

  for (const field of ["caps", "srcCaps", "dstCaps"] as const) {
    for (const cap of c[field] ?? []) {
      if (!(CAPABILITIES as readonly string[]).includes(cap)) bad(field, `unknown capability '${cap}'`);
    }
  }
  for (const side of ["src", "dst"] as const) {
    const field = side === "src" ? "srcParams" : "dstParams";
    for (const k of Object.keys(c[field] ?? {})) {
      if (!Object.hasOwn(DEFAULT_PARAMETERS, k)) bad(field, `unknown parameter '${k}'`);
      else if (k.startsWith("multifd-") && !capsOf(c, side).includes("multifd")) {
        bad(
          field,
          `'${k}' does nothing without the multifd capability on the ${side === "src" ? "source" : "target"}`,
        );
      }
    }
  }
  for (const side of ["src", "dst"] as const) {
    for (const d of c.defects?.[side] ?? []) {
      if (!isDefect(d)) bad(`defects.${side}`, `unknown defect '${d}'`);
    }
  }
  if (c.guards && !isDefect(c.guards.defect)) bad("guards.defect", `unknown defect '${c.guards.defect}'`);

  if ("exitOnError" in c && c.exitOnError !== undefined && !c.defer) {
    bad("exitOnError", "is a migrate-incoming argument: it needs defer");
  }
  if ("error" in c && c.error !== undefined && (c.expect ?? "succeed") === "succeed") {
    bad("error", "only a failing case (expect fail|fail-dest-exits|qmp-error) has an error to match");
  }
  if ("expectXbzrlePages" in c && c.expectXbzrlePages && !capsOf(c, "src").includes("xbzrle")) {
    bad("expectXbzrlePages", "needs the xbzrle capability on the source");
  }

  switch (c.flow) {
    case "precopy": {
      if (c.iterations !== undefined && !c.live) bad("iterations", "only a live case iterates");
      if (c.fillRandom && c.live) bad("fillRandom", "fills the stopped source: not with live");
      if (c.writeOnce && !c.live) {
        bad("writeOnce", "writes the running guest's RAM during the migration: live only");
      }
      if (c.writeOnce && c.workload?.kind !== "idle") {
        bad("writeOnce", "needs the idle workload (a guest that writes nothing after the write)");
      }
      if (c.fault) faultProblems(c, c.fault, "fault", "src", bad);
      for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
      for (const side of ["src", "dst"] as const) {
        const r = c.release?.[side];
        if (r !== undefined && !isRelease(r)) bad(`release.${side}`, `unknown release '${r}'`);
      }
      if (c.release?.src !== undefined && c.release.src === c.release.dst) {
        bad("release", "both sides run the same release: nothing crosses a version");
      }
      break;
    }
    case "converge-after-raise":
      for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
      break;
    case "cancel":
      for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
      if (c.whenBlocked && c.cancelAfter !== "active") {
        bad("whenBlocked", "only a cancel while 'active' waits");
      }
      if (!CANCEL_PHASES.includes(c.cancelAfter)) bad("cancelAfter", `unknown status '${c.cancelAfter}'`);
      break;
    case "multifd-cancel":
      if (!capsOf(c, "src").includes("multifd")) {
        bad("caps", "a multifd-cancel case needs the multifd capability");
      }
      if (!c.defer) bad("defer", "the multifd-cancel flow sends migrate-incoming itself: set defer");
      break;
    case "colo": {
      if (!capsOf(c, "src").includes("x-colo") || !capsOf(c, "dst").includes("x-colo")) {
        bad("caps", "COLO needs x-colo on both sides");
      }
      const sc = c.colo;
      if (sc.checkpoints !== undefined && !(Number.isInteger(sc.checkpoints) && sc.checkpoints >= 1)) {
        bad("colo.checkpoints", "must be a positive integer");
      }
      const moments =
        (["duringCheckpoint", "killPrimaryAt", "failoverDuringApply", "failoverDuringMultifdPacket"] as const)
          .filter((k) => sc[k]);
      if (moments.length > 1) bad("colo", `one failure moment at a time, got ${moments.join(" and ")}`);
      for (const k of ["killPrimaryAt", "failoverDuringApply", "failoverDuringMultifdPacket"] as const) {
        if (sc[k] && sc.survivor !== "secondary") bad(`colo.${k}`, "the secondary is the survivor there");
      }
      if (sc.failoverDuringMultifdPacket && !capsOf(c, "dst").includes("multifd")) {
        bad("colo.failoverDuringMultifdPacket", "needs multifd");
      }
      break;
    }
  }
  return out;
}

/** The faults of x-test-inject-fault by the side whose stream they act on. */
const DESTINATION_FAULTS: ReadonlySet<FaultSpec["kind"]> = new Set([
  "multifd-channel-delay",
  "multifd-channel-slow",
]);

function faultProblems(
  c: CaseOf<"precopy" | "converge-after-raise" | "cancel">,
  f: FaultSpec,
  field: string,
  side: "src" | "dst",
  bad: (field: string, problem: string) => void,
): void {
  if (DESTINATION_FAULTS.has(f.kind) !== (side === "dst")) {
    bad(
      field,
      `'${f.kind}' acts on the ${
        DESTINATION_FAULTS.has(f.kind) ? "destination (dstFaults)" : "source (fault)"
      }`,
    );
  }
  const multifd = f.kind.startsWith("multifd-") || f.channel !== undefined;
  if (multifd && !capsOf(c, side).includes("multifd")) bad(field, `'${f.kind}' on a channel needs multifd`);
  if ((f.kind === "corrupt" || f.kind === "truncate") && f.offset === undefined) {
    bad(field, `'${f.kind}' needs an offset`);
  }
  if (f.xor !== undefined && f.kind !== "corrupt") bad(field, "xor is for 'corrupt' only");
  if ((f.delayMs !== undefined) !== DESTINATION_FAULTS.has(f.kind)) {
    bad(
      field,
      DESTINATION_FAULTS.has(f.kind) ? `'${f.kind}' needs delayMs` : `delayMs is for a channel delay only`,
    );
  }
}

/** Validates a table (each case, and names unique); throws a CaseTableError listing every problem. */
export function validateCases<T extends readonly MigrationCase[]>(cases: T): T {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const c of cases) {
    problems.push(...caseProblems(c));
    if (seen.has(c.name)) problems.push(`case '${c.name}': name: duplicate`);
    seen.add(c.name);
  }
  if (problems.length) throw new CaseTableError(problems);
  return cases;
}
