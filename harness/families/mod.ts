/**
 * The registry of families: one line each below. Everything that differs between families comes from
 * here — the case union, the tables' validation, the flow a case runs, what it needs of each world (so
 * `--list`'s worlds and the skip reasons) and what it adds to the pair — so the core names none.
 * A new family: its folder harness/families/<family>/ (case.ts, flow.ts, mod.ts) and one line here.
 */
import type { AnyCase } from "../case.ts";
import type { CaseOfFlow, FlowDescriptor } from "../family.ts";
import type { CaseContext, PairFamily } from "../framework.ts";
import { MigrationPair } from "../framework.ts";
import { caseProblems as problemsWith, validateTable } from "../validate.ts";
import type { CaseNeeds, KnownBug, World } from "../world/world.ts";
import { ANALYZE } from "./analyze/mod.ts";
import { CANCEL } from "./cancel/mod.ts";
import { COLO } from "./colo/mod.ts";
import { CPR } from "./cpr/mod.ts";
import { DIRTYRATE } from "./dirtyrate/mod.ts";
import { FD } from "./fd/mod.ts";
import { FILE } from "./file/mod.ts";
import { MISC } from "./misc/mod.ts";
import { MULTIFD } from "./multifd/mod.ts";
import { POSTCOPY } from "./postcopy/mod.ts";
import { PRECOPY } from "./precopy/mod.ts";

/** Every family's flows, one line a family. */
const FLOWS = [
  ...PRECOPY,
  ...FILE,
  ...FD,
  ...CANCEL,
  ...MISC,
  ...MULTIFD,
  ...ANALYZE,
  ...COLO,
  ...POSTCOPY,
  ...DIRTYRATE,
  ...CPR,
] as const;

/** A case of any family: the union of every family's record type, discriminated by `flow`. */
export type MigrationCase = CaseOfFlow<typeof FLOWS[number]>;
/** The name of a flow. */
export type Flow = MigrationCase["flow"];
/** The record type of one flow. */
export type CaseOf<F extends Flow> = Extract<MigrationCase, { flow: F }>;

/** The descriptors by flow name; two families claiming one flow name stop the load. */
export function indexFlows(
  flows: readonly FlowDescriptor<AnyCase>[],
): ReadonlyMap<string, FlowDescriptor<AnyCase>> {
  const byFlow = new Map<string, FlowDescriptor<AnyCase>>();
  for (const d of flows) {
    if (byFlow.has(d.flow)) throw new TypeError(`two families declare the flow '${d.flow}'`);
    byFlow.set(d.flow, d);
  }
  return byFlow;
}

const BY_FLOW = indexFlows(FLOWS);

/** The descriptor of a flow by name, or undefined. */
export function lookupFlow(flow: string): FlowDescriptor<AnyCase> | undefined {
  return BY_FLOW.get(flow);
}

/** The descriptor of a case's flow (a validated case always has one). */
export function flowOf(c: AnyCase): FlowDescriptor<AnyCase> {
  const d = BY_FLOW.get(c.flow);
  if (!d) throw new TypeError(`case '${c.name}': unknown flow '${c.flow}'`);
  return d;
}

/** The flow names, in registry order. */
export const FLOW_NAMES: readonly string[] = [...BY_FLOW.keys()];

/** Validates a table against the registry; throws a CaseTableError listing every problem. */
export function validateCases<T extends readonly AnyCase[]>(cases: T): T {
  return validateTable(cases, lookupFlow);
}

/** The problems of one case (empty when it is valid). */
export function caseProblems(c: MigrationCase): string[] {
  return problemsWith(c, lookupFlow);
}

/** What the case needs of the worlds, as its family declares it. */
export function caseNeeds(c: AnyCase): CaseNeeds {
  return flowOf(c).needs?.(c) ?? {};
}

/** Why `world` cannot run the case, or null. */
export function cannotRunIn(world: World, c: AnyCase): string | null {
  return world.cannotRun(c, caseNeeds(c));
}

/** The known bug of `world` the case hits, or null. */
export function knownBugIn(world: World, c: AnyCase): KnownBug | null {
  return world.knownBug?.(c, caseNeeds(c)) ?? null;
}

/** The pair's view of the case's family. */
export function pairFamily(c: AnyCase): PairFamily {
  return { hooks: flowOf(c), needs: caseNeeds(c) };
}

/** Starts the pair of case `c` with what its family adds. */
export function startPair(c: MigrationCase, ctx: CaseContext): Promise<MigrationPair> {
  return MigrationPair.start(c, ctx, pairFamily(c));
}

/** Runs the case's flow on the pair. */
export function runFlow(p: MigrationPair, c: AnyCase): Promise<void> {
  return flowOf(c).run(p, c);
}
