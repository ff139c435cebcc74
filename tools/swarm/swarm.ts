/**
 * deno task swarm: random plans (case, seed, scheduler knobs, feature variant) in the simulated world
 * until one fails or the budget ends; the failing plan is then shrunk by fast-check to the simplest one
 * that still fails, and printed with the one line that replays it exactly. `--hunt` runs the swarm
 * against each known defect with no hint of where it is and reports how many plans it took to find it.
 */
import type { ParseArgsOptionsConfig } from "node:util";
import fc from "fast-check";
import { ALL_CASES } from "../../cases/all.ts";
import type { MigrationCase } from "../../harness/families/mod.ts";
import { type CaseResult, type DefectSwitch, parseDefects, runCase } from "../../harness/runner.ts";
import { selectCases } from "../../harness/select.ts";
import { createSimWorld, simWorld } from "../../harness/world/sim.ts";
import { cannotRunIn } from "../../harness/families/mod.ts";
import { type DefectName, KNOWN_DEFECTS } from "../../engine/testing/defects.ts";
import {
  asUsage,
  type Cli,
  type CliArgs,
  parseCount,
  parseSeed,
  readCli,
  UsageError,
} from "../../engine/cli.ts";
import { errorMessage } from "../../engine/error.ts";
import {
  applyVariant,
  parsePlan,
  planArb,
  planText,
  type SwarmPlan,
  type Variant,
  withFault,
} from "./plan.ts";
import { quantile } from "../../harness/report/stats.ts";

const USAGE = `usage: deno task swarm [options]

Random plans in the simulated world: each picks a case, a seed, the scheduler's knobs (vCPU speed,
chunk sizes, buffer sizes, uneven links, latencies) and a variant of the case's features (multifd
channels, compression, zero-page detection, XBZRLE, the COLO checkpoint delay). Stops at the first
failure, shrinks it and prints the line that replays it.

  --case PATTERN     only cases whose name contains PATTERN (repeatable; default: every case the
                     simulation can run, smoke and full tiers)
  --seeds N          plans to run (default 100)
  --minutes M        or: run for M minutes
  --seed S           the swarm's own seed (default: random, printed)
  --defect SIDE:NAME switch a known defect on (repeatable)
  --replay PLAN      run one plan (the JSON a failure prints) and print its result and trace
  --hunt             for each known defect (or each --defect given; the side is not used): plans until
                     it is found, on either side, with no hint of where it is
  --trials K         --hunt: independent swarms per defect (default 3)
  --budget N         --hunt: plans per trial before the defect counts as missed (default 200)
  -h, --help
`;

interface Outcome {
  plan: SwarmPlan;
  /** The variant's features the case took. */
  applied: Variant;
  /** The plan's connection reset applied (the case took it). */
  faulted: boolean;
  result: CaseResult;
}

function casesFor(patterns: readonly string[]): MigrationCase[] {
  const pool = ALL_CASES.filter((c) => c.tier !== "slow" && cannotRunIn(simWorld, c) === null);
  return patterns.length ? selectCases(pool, { filters: patterns }) : pool;
}

async function runPlan(plan: SwarmPlan, defects: readonly DefectSwitch[]): Promise<Outcome> {
  const c = ALL_CASES.find((x) => x.name === plan.case);
  if (!c) throw new Error(`no case ${plan.case}`);
  const { case: variant, applied } = applyVariant(c, plan.variant);
  const faulted = withFault(variant, plan.fault);
  const result = await runCase(faulted.case, {
    seed: plan.seed,
    world: createSimWorld({ knobs: plan.knobs, fault: faulted.fault, label: planText(plan) }),
    artifactsDir: null,
    defects,
    probes: plan.probes,
  });
  return { plan, applied, faulted: faulted.fault !== undefined, result };
}

function replayLine(plan: SwarmPlan, defects: readonly DefectSwitch[]): string {
  const d = defects.map((x) => ` --defect ${x.side}:${x.defect}`).join("");
  return `deno task swarm --replay '${planText(plan)}'${d}`;
}

function brief(r: CaseResult): string {
  return r.ok ? "pass" : `FAIL: ${errorMessage(r.error).split("\n").slice(0, 2).join(" | ")}`;
}

/** Runs the swarm; returns the shrunk failing plan, or null when every plan passed. */
async function swarm(opts: {
  cases: MigrationCase[];
  seeds: number;
  minutes?: number;
  seed: number;
  defects: readonly DefectSwitch[];
  quiet?: boolean;
  shrink?: boolean;
}): Promise<{ failure: Outcome | null; runs: number; shrinks: number }> {
  let runs = 0;
  // Written by the property (a closure), read after the run.
  const seen: { last: Outcome | null } = { last: null };
  let failedOnce = false;
  const names = opts.cases.map((c) => c.name);
  const t0 = performance.now();
  const prop = fc.asyncProperty(planArb(names), async (plan) => {
    const out = await runPlan(plan, opts.defects);
    runs++;
    if (!opts.quiet) {
      const phase = failedOnce ? "shrink" : `#${runs}`;
      const f = plan.fault && out.faulted ? [`reset#${plan.fault.connection}@${plan.fault.afterBytes}`] : [];
      if (plan.probes?.length) f.push(`probes=${plan.probes.length}`);
      const v = [...Object.entries(out.applied).map(([k, x]) => `${k}=${x}`), ...f].join(",");
      console.log(
        `${phase.padEnd(7)} ${plan.case}${v ? ` [${v}]` : ""} seed ${plan.seed} ${
          (out.result.timeMs / 1000).toFixed(2)
        } s  ${brief(out.result)}`,
      );
    }
    if (!out.result.ok) {
      failedOnce = true;
      seen.last = out;
    }
    return out.result.ok;
  });
  const details = await fc.check(prop, {
    seed: opts.seed,
    numRuns: opts.minutes ? Number.MAX_SAFE_INTEGER : opts.seeds,
    interruptAfterTimeLimit: opts.minutes ? opts.minutes * 60_000 : undefined,
    markInterruptAsFailure: false,
    endOnFailure: opts.shrink === false,
  });
  if (!details.failed || !details.counterexample) return { failure: null, runs, shrinks: 0 };
  const [plan] = details.counterexample;
  // The last failing run of the shrink is the counterexample fast-check reports; run it once more
  // if the last one recorded is another (it reports the smallest, which is the last that failed).
  const last = seen.last;
  const failure = last && planText(last.plan) === planText(plan) ? last : await runPlan(plan, opts.defects);
  if (!opts.quiet) {
    console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  return { failure, runs, shrinks: details.numShrinks };
}

async function hunt(
  cases: MigrationCase[],
  trials: number,
  budget: number,
  seed: number,
  only: readonly DefectName[],
): Promise<boolean> {
  let allFound = true;
  const rows: string[] = [];
  const names = only.length ? only : Object.keys(KNOWN_DEFECTS) as DefectName[];
  for (const defect of names) {
    const needed: number[] = [];
    let missed = 0;
    // Both sides: the swarm is not told which side the defect lives on.
    const defects: DefectSwitch[] = [{ side: "src", defect }, { side: "dst", defect }];
    for (let t = 0; t < trials; t++) {
      const r = await swarm({ cases, seeds: budget, seed: seed + t, defects, quiet: true, shrink: false });
      if (!r.failure) {
        missed++;
        console.log(`  ${defect} trial ${t + 1}: MISSED in ${budget} plans`);
        continue;
      }
      // A find counts only if the same plan passes without the defect (else it is another bug).
      const clean = await runPlan(r.failure.plan, []);
      const line = errorMessage(r.failure.result.error).split("\n")[0];
      if (!clean.result.ok) {
        allFound = false;
        console.log(`  ${defect} trial ${t + 1}: plan ${planText(r.failure.plan)} FAILS WITHOUT THE DEFECT:`);
        console.log(`    ${errorMessage(clean.result.error).split("\n").slice(0, 3).join("\n    ")}`);
        missed++;
        continue;
      }
      needed.push(r.runs);
      console.log(`  ${defect} trial ${t + 1}: found after ${r.runs} plan(s): ${line}`);
      console.log(`    replay: ${replayLine(r.failure.plan, defects)}`);
    }
    if (missed) allFound = false;
    rows.push(
      `${defect.padEnd(28)} found ${trials - missed}/${trials}  plans median ${
        quantile(needed, 0.5) ?? "-"
      } worst ${needed.length ? Math.max(...needed) : "-"}`,
    );
  }
  console.log(`\nhunt (${cases.length} cases, budget ${budget}, seed ${seed}):`);
  for (const r of rows) console.log(`  ${r}`);
  return allFound;
}

const CLI = {
  tool: "swarm",
  usage: USAGE,
  options: {
    case: { type: "string", multiple: true },
    seeds: { type: "string", default: "100" },
    minutes: { type: "string" },
    seed: { type: "string" },
    defect: { type: "string", multiple: true },
    replay: { type: "string" },
    hunt: { type: "boolean", default: false },
    trials: { type: "string", default: "3" },
    budget: { type: "string", default: "200" },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

/** Minutes may be a fraction (a short run to try something). */
function parseMinutes(text: string): number {
  const m = Number(text);
  if (!/^\d/.test(text) || !Number.isFinite(m) || m <= 0) {
    throw new UsageError(`--minutes must be a positive number, got '${text}'`);
  }
  return m;
}

function swarmOptions({ values: v }: CliArgs<typeof CLI.options>) {
  const replay = v.replay;
  return {
    cases: v.case ?? [],
    seeds: parseCount(v.seeds, "--seeds"),
    minutes: v.minutes !== undefined ? parseMinutes(v.minutes) : undefined,
    seed: v.seed !== undefined ? parseSeed(v.seed, "--seed") : crypto.getRandomValues(new Uint32Array(1))[0],
    defects: asUsage(() => (v.defect ?? []).flatMap((d) => parseDefects(d, "--defect"))),
    replay: replay !== undefined ? asUsage(() => parsePlan(replay)) : undefined,
    hunt: v.hunt,
    trials: parseCount(v.trials, "--trials"),
    budget: parseCount(v.budget, "--budget"),
  };
}

async function main(): Promise<number> {
  const cli = readCli(CLI, Deno.args, swarmOptions);
  if ("status" in cli) return cli.status;
  const { seed, defects, minutes, seeds, replay: plan } = cli.args;
  if (plan) {
    const { result } = await runPlan(plan, defects);
    console.log(`${plan.case} seed ${plan.seed}: ${result.ok ? "pass" : "FAIL"}  trace ${result.trace}`);
    if (!result.ok) console.log(errorMessage(result.error));
    return result.ok ? 0 : 1;
  }
  const cases = casesFor(cli.args.cases);
  if (!cases.length) {
    console.error("swarm: no case the simulation can run matches");
    return 2;
  }
  if (cli.args.hunt) {
    const only = [...new Set(defects.map((d) => d.defect))];
    const ok = await hunt(cases, cli.args.trials, cli.args.budget, seed, only);
    return ok ? 0 : 1;
  }
  console.log(
    `migtest swarm: ${cases.length} cases, ${minutes ? `${minutes} min` : `${seeds} plans`}, seed ${seed}` +
      (defects.length ? `, defects ${defects.map((d) => `${d.side}:${d.defect}`).join(",")}` : ""),
  );
  const r = await swarm({ cases, seeds, minutes, seed, defects });
  if (!r.failure) {
    console.log(`swarm: ${r.runs} plan(s), all passed (seed ${seed})`);
    return 0;
  }
  console.log(`\nswarm: a failure after ${r.runs} run(s), shrunk in ${r.shrinks} step(s) to:`);
  console.log(`  ${planText(r.failure.plan)}`);
  console.log(errorMessage(r.failure.result.error));
  console.log(`\nreplay: ${replayLine(r.failure.plan, defects)}`);
  return 1;
}

if (import.meta.main) Deno.exit(await main());
