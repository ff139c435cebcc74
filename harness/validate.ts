/**
 * The case-table validator: what the types cannot say. It runs when the tables load (cases/all.ts and
 * every `registerCases`) and rejects a table with every problem listed, each naming the case and the
 * field — a field its flow would ignore, a fault its transport cannot carry, a capability a parameter
 * needs, a duplicate name — so a case can never pass by silently not doing what it says.
 */
import { probeApplies } from "./control_plane.ts";
import { CAPABILITIES, type Capability, DEFAULT_PARAMETERS } from "../engine/options.ts";
import { isDefect } from "../engine/testing/defects.ts";
import { MACHINES } from "../fixtures/machines.ts";
import type { AnyCase, CaseBase, FaultSpec, Outcome, SocketCase } from "./case.ts";
import { TIERS } from "./case.ts";
import type { FlowDescriptor, Problem } from "./family.ts";

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
  dirtyRingSize: true,
  memType: true,
  auxRamShare: true,
  simInterleavePercent: true,
  wireEdits: true,
  probes: true,
  defects: true,
  guards: true,
};
/** The fields of a socket case and of an outcome, for the families whose records have them. */
export const SOCKET_FIELDS: Record<keyof SocketCase, true> = {
  transport: true,
  defer: true,
  exitOnError: true,
  tls: true,
  ipv6: true,
};
export const OUTCOME_FIELDS: Record<keyof Outcome, true> = {
  expect: true,
  error: true,
  srcError: true,
  qemuError: true,
};

export class CaseTableError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid case table (${problems.length} problem(s)):\n  ${problems.join("\n  ")}`);
    this.name = "CaseTableError";
  }
}

/** Capabilities on one side: the shared ones plus that side's own. */
export function capsOf(c: AnyCase, side: "src" | "dst"): Capability[] {
  return [...(c.caps ?? []), ...((side === "src" ? c.srcCaps : c.dstCaps) ?? [])];
}

/**
 * Upstream names use letters, digits, `_.-` and `+` (/migration/multifd+postcopy/...); one, /dirty_limit,
 * is registered without the /migration prefix upstream, and keeps its name here.
 */
const NAME = /^(\/migration(\/[A-Za-z0-9_.+-]+)+|\/dirty_limit)$/;

/** Finds the descriptor of a flow by name (the registry's lookup), or undefined for an unknown flow. */
export type FlowLookup = (flow: string) => FlowDescriptor<AnyCase> | undefined;

/** The problems of one case (empty when it is valid); `lookup` finds its flow's descriptor. */
export function caseProblems(c: AnyCase, lookup: FlowLookup): string[] {
  const out: string[] = [];
  const bad: Problem = (field, problem) => out.push(`case '${c.name}': ${field}: ${problem}`);

  if (typeof c.name !== "string" || !NAME.test(c.name)) bad("name", "must be a /migration/... path");
  if (!TIERS.includes(c.tier)) bad("tier", `must be one of ${TIERS.join("|")}, got '${c.tier}'`);
  if (typeof c.why !== "string" || c.why.trim() === "") bad("why", "missing: say what bug class it guards");
  else if (c.why.includes("\n")) bad("why", "must be one line");
  const flow = lookup(String(c.flow));
  if (!flow) {
    bad("flow", `unknown flow '${String(c.flow)}'`);
    return out;
  }
  for (const [k, v] of Object.entries(c)) {
    if (v !== undefined && !Object.hasOwn(BASE, k) && !Object.hasOwn(flow.fields, k)) {
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
  for (const p of c.probes ?? []) {
    if (!probeApplies(p, c)) bad("probes", `${p.side}:${p.kind} would act in this case, not only be refused`);
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

  flow.problems?.(c, bad);
  return out;
}

/** The problems of a socket case's fields (a family whose records have them calls this first). */
export function socketProblems(c: SocketCase, bad: Problem): void {
  if (c.ipv6 && c.transport !== "rdma") bad("ipv6", "picks the RDMA link's address family: only with rdma");
  if (c.exitOnError !== undefined && !c.defer) {
    bad("exitOnError", "is a migrate-incoming argument: it needs defer");
  }
}

/** The problems of an outcome's fields. */
export function outcomeProblems(c: Outcome, bad: Problem): void {
  if (c.error !== undefined && (c.expect ?? "succeed") === "succeed") {
    bad("error", "only a failing case (expect fail|fail-dest-exits|qmp-error|refused) has an error to match");
  }
  if (c.qemuError !== undefined && c.error === undefined) {
    bad("qemuError", "is QEMU's words for the case's error: the case needs its error too");
  }
  if (c.srcError !== undefined && !["fail", "fail-dest-exits", "refused"].includes(c.expect ?? "succeed")) {
    bad("srcError", "only a case whose source fails (expect fail|fail-dest-exits|refused) has its error");
  }
}

/** `expectXbzrlePages` needs what it expects to see used. */
export function xbzrlePagesProblems(c: AnyCase & { expectXbzrlePages?: boolean }, bad: Problem): void {
  if (c.expectXbzrlePages && !capsOf(c, "src").includes("xbzrle")) {
    bad("expectXbzrlePages", "needs the xbzrle capability on the source");
  }
}

/** The faults of x-test-inject-fault by the side whose stream they act on. */
const DESTINATION_FAULTS: ReadonlySet<FaultSpec["kind"]> = new Set([
  "multifd-channel-delay",
  "multifd-channel-slow",
]);

/** The problems of a fault a case injects on `side` (its field `field`). */
export function faultProblems(
  c: AnyCase,
  f: FaultSpec,
  field: string,
  side: "src" | "dst",
  bad: Problem,
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
  if (f.xor !== undefined && f.kind !== "corrupt" && f.at === undefined) {
    bad(field, "xor is for 'corrupt' only (or for a fault's wire form at a named place)");
  }
  if ((f.delayMs !== undefined) !== DESTINATION_FAULTS.has(f.kind)) {
    bad(
      field,
      DESTINATION_FAULTS.has(f.kind) ? `'${f.kind}' needs delayMs` : `delayMs is for a channel delay only`,
    );
  }
}

/**
 * Validates a table (each case, and names unique); throws a CaseTableError listing every problem. The
 * registry's validateCases (harness/families/mod.ts) is this with its lookup.
 */
export function validateTable<T extends readonly AnyCase[]>(cases: T, lookup: FlowLookup): T {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const c of cases) {
    problems.push(...caseProblems(c, lookup));
    if (seen.has(c.name)) problems.push(`case '${c.name}': name: duplicate`);
    seen.add(c.name);
  }
  if (problems.length) throw new CaseTableError(problems);
  return cases;
}
