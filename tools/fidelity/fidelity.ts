/**
 * `deno task fidelity [--qemu PATH]... [--filter TEXT]... [--tier smoke|full|slow]`: how closely the model
 * follows real QEMU. Every case that both the model and a QEMU binary can run is run in both worlds, one
 * at a time (the timing of a case is part of what it shows); each run's observable trace (trace.ts) is
 * compared, and a row per case says agree, known (a difference in known.ts, with its reason) or
 * DISAGREE with the difference. Exits 1 on any disagreement, 2 on bad usage.
 */
import type { ParseArgsOptionsConfig } from "node:util";
import { ALL_CASES } from "../../cases/all.ts";
import { cannotRunIn, type MigrationCase } from "../../harness/families/mod.ts";
import { type Tier, TIERS } from "../../harness/case.ts";
import type { QmpTranscriptEntry } from "../../engine/qmp/client.ts";
import { resultWord } from "../../harness/matrix.ts";
import { type CaseResult, runCase } from "../../harness/runner.ts";
import { selectCases } from "../../harness/select.ts";
import { engineWorld } from "../../harness/world/engine.ts";
import { createQemuWorld } from "../../harness/world/qemu.ts";
import { describeProbe, probeQemu } from "../../harness/world/qemu_probe.ts";
import type { World } from "../../harness/world/world.ts";
import { KNOWN_DIFFERENCES } from "./known.ts";
import {
  type Agreement,
  agreementLine,
  classify,
  compareTraces,
  countersVerdict,
  sideTrace,
  type Trace,
} from "./trace.ts";
import { type Cli, parseChoice, parseSeed, readCli } from "../../engine/cli.ts";

const USAGE = "usage: deno task fidelity [--qemu PATH]... [--filter TEXT]... [--tier smoke|full|slow] " +
  "[--seed N]";
const SYSTEM_QEMU = "/usr/bin/qemu-system-x86_64";

/**
 * A world whose pairs' QMP transcripts are kept (the spawn spec carries the pair's transcript). Everything
 * else is the world's own: without its wireFaults, QEMU's cases whose faults and holds go on the wire ran
 * without the proxy and failed (found 2026-12-07: every COLO kill-at-phase case "failed" on QEMU here).
 */
export function recording(world: World): { world: World; last(): readonly QmpTranscriptEntry[] } {
  let transcript: readonly QmpTranscriptEntry[] = [];
  return {
    world: {
      name: world.name,
      wireFaults: world.wireFaults,
      qemuSides: world.qemuSides,
      prepare: world.prepare?.bind(world),
      cannotRun: (c, needs) => world.cannotRun(c, needs),
      knownBug: world.knownBug?.bind(world),
      spawn: (spec) => {
        transcript = spec.transcript;
        return world.spawn(spec);
      },
    },
    last: () => transcript,
  };
}

/** The trace of a finished case from its result and the transcript of its pair. */
export function traceOf(r: CaseResult, transcript: readonly QmpTranscriptEntry[]): Trace {
  const error = r.xfail ? undefined : r.error?.message.split("\n")[0];
  return {
    verdict: resultWord(r),
    ...(r.ok ? {} : { error }),
    source: sideTrace(transcript, "source"),
    target: sideTrace(transcript, "target"),
    counters: countersVerdict(r.stats),
    ...(r.xfail ? { knownBug: r.xfail.id } : {}),
  };
}

async function runTraced(c: MigrationCase, world: World, seed: number): Promise<Trace> {
  const rec = recording(world);
  const r = await runCase(c, { seed, world: rec.world, artifactsDir: null });
  return traceOf(r, r.skipped !== undefined ? [] : rec.last());
}

export interface FidelityRow {
  name: string;
  agreement: Agreement;
  model: Trace;
  qemu: Trace;
}

export interface FidelityReport {
  qemu: string;
  version: string;
  rows: FidelityRow[];
  /** Cases the binary cannot run, by reason. */
  skipped: number;
  wallMs: number;
}

export interface FidelityOptions {
  qemu: string[];
  filters: string[];
  tier: Tier;
  seed: number;
  out(line: string): void;
}

/** Runs the comparison for every binary; the model's traces are taken once per case and reused. */
export async function runFidelity(opts: FidelityOptions): Promise<FidelityReport[]> {
  const cases = selectCases(ALL_CASES, { tier: opts.tier, filters: opts.filters });
  const modelTraces = new Map<string, Trace>();
  const reports: FidelityReport[] = [];
  for (const binary of opts.qemu) {
    const t0 = performance.now();
    const probe = await probeQemu(binary);
    const version = `${probe.version.major}.${probe.version.minor}.${probe.version.micro}`;
    const world = createQemuWorld({ binary: () => binary, probe: probeQemu });
    await world.prepare!();
    opts.out(`${describeProbe(probe)}:`);
    const report: FidelityReport = { qemu: binary, version, rows: [], skipped: 0, wallMs: 0 };
    for (const c of cases) {
      if (cannotRunIn(world, c) !== null) {
        report.skipped++;
        continue;
      }
      let model = modelTraces.get(c.name);
      if (!model) modelTraces.set(c.name, model = await runTraced(c, engineWorld, opts.seed));
      const qemu = await runTraced(c, world, opts.seed);
      const agreement = classify(
        c.name,
        version,
        compareTraces(model, qemu),
        KNOWN_DIFFERENCES,
        qemu.knownBug,
      );
      report.rows.push({ name: c.name, agreement, model, qemu });
      opts.out(`  ${c.name.padEnd(60)} ${agreementLine(agreement)}`);
    }
    report.wallMs = performance.now() - t0;
    opts.out(summaryLine(report));
    reports.push(report);
  }
  return reports;
}

export function summaryLine(r: FidelityReport): string {
  const n = (k: Agreement["kind"]) => r.rows.filter((x) => x.agreement.kind === k).length;
  return `QEMU ${r.version}: ${r.rows.length} cases run in both worlds: ${n("agree")} agree, ${n("known")} ` +
    `known, ${n("disagree")} disagree; ${r.skipped} not run on this binary; ${
      (r.wallMs / 1000).toFixed(0)
    } s`;
}

const CLI = {
  tool: "fidelity",
  usage: USAGE,
  options: {
    qemu: { type: "string", multiple: true },
    filter: { type: "string", multiple: true },
    tier: { type: "string", default: "full" },
    seed: { type: "string", default: "1" },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

export async function main(
  args: readonly string[],
  out: (line: string) => void = console.log,
): Promise<number> {
  const cli = readCli(CLI, args, ({ values: v }) => ({
    qemu: v.qemu?.length ? v.qemu : [SYSTEM_QEMU],
    filters: v.filter ?? [],
    tier: parseChoice(v.tier, TIERS, "--tier"),
    seed: parseSeed(v.seed, "--seed"),
  }), { out, err: (t) => console.error(t) });
  if ("status" in cli) return cli.status;
  const reports = await runFidelity({ ...cli.args, out });
  out("");
  for (const r of reports) out(summaryLine(r));
  return reports.some((r) => r.rows.some((x) => x.agreement.kind === "disagree")) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
