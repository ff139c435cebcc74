/**
 * `deno task matrix`: runs the case matrix in one world (engine processes by default), one line per case
 * and a summary at the end; writes JUnit XML (and JSON on request) and keeps an artifact folder per failed
 * case. Ctrl-C stops the running cases, removes their directories and still writes what ran.
 */
import { parseProbes, type Probe } from "./control_plane.ts";
import type { ParseArgsOptionsConfig } from "node:util";
import { ALL_CASES } from "../cases/all.ts";
import { cannotRunIn, type MigrationCase } from "./families/mod.ts";
import { type Tier, TIERS } from "./case.ts";
import { junitXml } from "./junit.ts";
import { writeHtmlReport } from "./report/html.ts";
import { ProgressLine } from "./report/progress.ts";
import { mean, quantile } from "./report/stats.ts";
import { type CaseResult, type DefectSwitch, parseDefects, runCase } from "./runner.ts";
import { familyOf, selectCases } from "./select.ts";
import {
  asUsage,
  type Cli,
  type CliArgs,
  parseChoice,
  parseCli,
  parseCount,
  parseSeed,
  readCli,
  UsageError,
} from "../engine/cli.ts";
import { errorMessage } from "../engine/error.ts";
import { worldByName } from "./world/worlds.ts";
import { type World, WORLD_NAMES } from "./world/world.ts";

/** The signals that stop a run cleanly (engines stopped, summary and JUnit written, run directory gone). */
const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"];

export const USAGE = `usage: deno task matrix [options]

Runs migration cases between two sides of one world and checks every page, device and status.

Selection (cases named by --filter/--regex run whatever their tier; --tier narrows only when given):
  --filter TEXT       a case's exact name selects that case; other text selects every name containing it
                      (repeatable)
  --regex PATTERN     a JavaScript regular expression over case names (repeatable)
  --tier TIER         smoke|full|slow: that tier and below (default without a filter: smoke)
  --list              print the selected cases (tier, family, worlds that can run them, why) and exit

Run:
  --backend WORLD     ${WORLD_NAMES.join("|")} (default engine; qemu: QTEST_QEMU_BINARY[_SRC|_DST] or PATH;
                      sim: the deterministic simulated world, a run is a function of its seed;
                      engine-to-qemu: the model as the source, QEMU (QTEST_QEMU_BINARY) as the
                      destination; qemu-to-engine: the other way round); --world too
  --seed N            the run seed, 0..4294967295 (default: random, printed)
  --repeat N          run each case N times, each repetition with its own seed (flaky tally at the end)
  --jobs N            run N cases at a time (each case is its own pair of processes; default 1)
  --fail-fast         stop after the first failure
  --defect SIDE:NAME  switch a known defect on for every case (src|dst; engine/testing/defects.ts)
  --probes LIST       control-plane commands beside every case's flow, each judged by the state machine's
                      oracle (harness/control_plane.ts): SIDE:KIND@MS,... e.g. src:caps-same@50,dst:pause@200
                      (MS after the pair is up, virtual in the simulated world; what the swarm's plans draw)

Output:
  --junit FILE        JUnit XML (default junit-matrix.xml), one suite per family, <skipped> with reasons
  --json FILE         every case's result, seed, timings and statistics
  --html FILE         one self-contained HTML report: the results table (filterable) and, per case, plots of
                      bytes sent, dirty pages and bandwidth over time; COLO checkpoint latencies
  --artifacts DIR     a folder per failed case (default artifacts)
  --keep              keep the folder of passing cases too
  --capture           save each socket migration's main stream in the case's folder (deno task analyze reads
                      it; with --keep for passing cases)
  --help              this text

Example:
  deno task matrix --tier full --filter /migration/multifd --seed 1234 --jobs 2
  deno task matrix --filter '/migration/precopy/unix/plain' --seed 219349031   # replays one case exactly
`;

export interface MatrixOptions {
  tier?: Tier;
  filters: string[];
  regexes: RegExp[];
  list: boolean;
  world: World;
  seed: number;
  repeat: number;
  jobs: number;
  failFast: boolean;
  defects: DefectSwitch[];
  probes: Probe[];
  junit: string;
  json?: string;
  html?: string;
  artifacts: string;
  keep: boolean;
  capture: boolean;
}

const CLI = {
  tool: "matrix",
  usage: USAGE,
  options: {
    tier: { type: "string" },
    filter: { type: "string", multiple: true },
    regex: { type: "string", multiple: true },
    seed: { type: "string" },
    repeat: { type: "string", default: "1" },
    jobs: { type: "string", default: "1" },
    "fail-fast": { type: "boolean", default: false },
    defect: { type: "string", multiple: true },
    probes: { type: "string" },
    junit: { type: "string", default: "junit-matrix.xml" },
    json: { type: "string" },
    html: { type: "string" },
    artifacts: { type: "string", default: "artifacts" },
    keep: { type: "boolean", default: false },
    capture: { type: "boolean", default: false },
    list: { type: "boolean", default: false },
    backend: { type: "string" },
    world: { type: "string" },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

/** The options of a matrix run from its parsed command line; a bad value is a UsageError. */
function matrixOptions({ values: v }: CliArgs<typeof CLI.options>): MatrixOptions {
  if (v.backend !== undefined && v.world !== undefined && v.backend !== v.world) {
    throw new UsageError(`--world ${v.world} and --backend ${v.backend} disagree (they name the same thing)`);
  }
  const regexes = (v.regex ?? []).map((p) => {
    try {
      return new RegExp(p);
    } catch (e) {
      throw new UsageError(`--regex '${p}' is not a regular expression: ${errorMessage(e)}`);
    }
  });
  return {
    tier: v.tier === undefined ? undefined : parseChoice(v.tier, TIERS, "--tier"),
    filters: v.filter ?? [],
    regexes,
    list: v.list,
    world: worldByName(parseChoice(v.world ?? v.backend ?? "engine", WORLD_NAMES, "--backend")),
    seed: v.seed !== undefined ? parseSeed(v.seed, "--seed") : crypto.getRandomValues(new Uint32Array(1))[0],
    repeat: parseCount(v.repeat, "--repeat"),
    jobs: parseCount(v.jobs, "--jobs"),
    failFast: v["fail-fast"],
    defects: asUsage(() => (v.defect ?? []).flatMap((d) => parseDefects(d, "--defect"))),
    probes: asUsage(() => parseProbes(v.probes ?? "")),
    junit: v.junit,
    json: v.json,
    html: v.html,
    artifacts: v.artifacts,
    keep: v.keep,
    capture: v.capture,
  };
}

/** The options of a matrix run, or "help"; a bad option or value is a UsageError (exit 2). */
export function parseMatrixArgs(args: readonly string[]): MatrixOptions | "help" {
  return parseCli(CLI, args, matrixOptions);
}

const WORLDS = WORLD_NAMES.map((n) => worldByName(n));

/** `--list`: one line per case with its tier, family, the worlds that can run it and why it exists. */
export function listLines(cases: readonly MigrationCase[]): string[] {
  return cases.map((c) => {
    const worlds = WORLDS.filter((w) => cannotRunIn(w, c) === null).map((w) => w.name).join(",") || "-";
    // Why the model cannot run it, where it cannot (hardware it has none of): never a silent gap.
    const engineWhy = cannotRunIn(worldByName("engine"), c);
    const notModel = engineWhy && cannotRunIn(worldByName("sim"), c) ? engineWhy : null;
    return `${c.tier.padEnd(5)} ${familyOf(c.name).padEnd(11)} ${
      worlds.padEnd(11)
    } ${c.name}\n      ${c.why}${notModel ? `\n      not on the model: ${notModel}` : ""}`;
  });
}

const mb = (b?: number) => (b === undefined ? "-" : `${(b / 1e6).toFixed(1)} MB`);
const ms = (t?: number) => (t === undefined ? "-" : `${Math.round(t)} ms`);

/** PASS, FAIL, SKIP, XFAIL (a known bug happened) or XPASS (a known bug did not: look at it). */
export function resultWord(r: CaseResult): string {
  return r.skipped !== undefined ? "SKIP" : r.xfail ? "XFAIL" : r.xpass ? "XPASS" : r.ok ? "PASS" : "FAIL";
}

/** mean and p99 of checkpoint latencies, in ms. */
function latency(xs: readonly number[]): string {
  const [m, p99] = [mean(xs), quantile(xs, 0.99)];
  return m === undefined || p99 === undefined ? "-" : `${Math.round(m)}/${Math.round(p99)} ms`;
}

/** The statistics columns: migration counters, or for COLO the checkpoints, their latency and the failover. */
function statsColumns(r: CaseResult): string {
  const s = r.stats;
  if (s.colo) {
    return `checkpoints ${String(s.colo.checkpoints).padStart(3)}  latency mean/p99 ${
      latency(s.colo.latencyMs)
    }` +
      `  failover ${ms(s.colo.failoverMs)}`;
  }
  return `downtime ${ms(s.downtimeMs).padStart(7)}  ${mb(s.transferredBytes).padStart(9)}  syncs ${
    s.dirtySyncCount ?? "-"
  }`;
}

function caseLine(r: CaseResult, repeat: number): string {
  const result = resultWord(r).padEnd(5);
  if (r.skipped !== undefined) return `${result} ${r.name.padEnd(58)} ${r.skipped}`;
  if (r.xfail) return `${result} ${r.name.padEnd(58)} known bug ${r.xfail.id} (${r.xfail.versions})`;
  return `${result} ${r.name.padEnd(58)} ${(r.timeMs / 1000).toFixed(2).padStart(6)} s  ${statsColumns(r)}` +
    (repeat > 1 ? `  seed ${r.seed}` : "") + (r.trace ? `  trace ${r.trace.slice(0, 12)}` : "") +
    (r.note ? `\n      note: ${r.note}` : "");
}

/** Per case run: which repetition, and the seed it got. */
interface Run {
  c: MigrationCase;
  repetition: number;
  seed: number;
}

export interface MatrixOutcome {
  results: CaseResult[];
  interrupted: boolean;
  wallMs: number;
}

/** Runs the selected cases; `signal` (Ctrl-C) stops the running ones and starts no more. */
export async function runMatrix(
  opts: MatrixOptions,
  cases: readonly MigrationCase[],
  signal: AbortSignal,
  print: (line: string) => void,
): Promise<MatrixOutcome> {
  const runs: Run[] = [];
  for (let i = 0; i < opts.repeat; i++) {
    // Each repetition gets its own seed, derived from the run seed, so a repeat explores new data.
    const seed = (opts.seed + i * 0x9e3779b9) >>> 0;
    for (const c of cases) runs.push({ c, repetition: i, seed });
  }
  const results: (CaseResult | undefined)[] = new Array(runs.length);
  // A live line for a long case on a terminal (one case at a time; with --jobs the lines would interleave).
  const progress = new ProgressLine(
    (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
    opts.jobs === 1 && Deno.stdout.isTerminal(),
    { columns: () => Deno.consoleSize().columns },
  );
  const t0 = performance.now();
  let next = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && !signal.aborted && next < runs.length) {
      const i = next++;
      const { c, repetition, seed } = runs[i];
      const skip = cannotRunIn(opts.world, c);
      const r: CaseResult = skip !== null
        ? { name: c.name, ok: true, skipped: skip, seed, timeMs: 0, stats: {} }
        : await runCase(c, {
          seed,
          world: opts.world,
          artifactsDir: opts.artifacts,
          artifactsSuffix: opts.repeat > 1 ? `-rep${repetition + 1}` : undefined,
          waitMs: 30_000,
          signal,
          defects: opts.defects,
          probes: opts.probes,
          keep: opts.keep,
          capture: opts.capture,
          onProgress: (samples, elapsed) => progress.update(c.name, samples, elapsed),
        });
      progress.done();
      results[i] = r;
      print(caseLine(r, opts.repeat));
      if (!r.ok) {
        print(`      ${r.error!.message.split("\n").join("\n      ")}`);
        if (opts.failFast) stop = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.jobs, runs.length) }, worker));
  return {
    results: results.filter((r): r is CaseResult => r !== undefined),
    interrupted: signal.aborted,
    wallMs: performance.now() - t0,
  };
}

/** The summary: a table, the flaky tally of repeated cases, then every failure with its replay line. */
export function summaryLines(opts: MatrixOptions, out: MatrixOutcome, selected: number): string[] {
  const { results } = out;
  const lines = ["", `${"case".padEnd(60)} ${"result".padEnd(6)} ${"time".padStart(8)}  statistics`];
  for (const r of results) {
    lines.push(
      `${r.name.padEnd(60)} ${resultWord(r).toLowerCase().replace("fail", "FAIL").padEnd(6)} ${
        (r.timeMs / 1000).toFixed(2).padStart(6)
      } s  ${r.skipped !== undefined ? r.skipped : statsColumns(r)}`,
    );
  }
  const failed = results.filter((r) => !r.ok);
  const skipped = results.filter((r) => r.skipped !== undefined);
  const xfailed = results.filter((r) => r.xfail);
  if (opts.repeat > 1) {
    const byName = new Map<string, CaseResult[]>();
    for (const r of results) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
    const flaky = [...byName].filter(([, rs]) => rs.some((r) => !r.ok));
    if (flaky.length) {
      lines.push("", "repeated cases that failed:");
      for (const [name, rs] of flaky) {
        const bad = rs.filter((r) => !r.ok);
        lines.push(
          `  ${name}: ${bad.length}/${rs.length} failed (seeds ${bad.map((r) => r.seed).join(", ")})`,
        );
      }
    }
  }
  const notRun = opts.repeat * selected - results.length;
  lines.push(
    "",
    `${results.length - failed.length - skipped.length - xfailed.length} passed, ${failed.length} failed, ` +
      `${skipped.length} skipped${xfailed.length ? `, ${xfailed.length} xfailed (known bugs)` : ""}` +
      (notRun > 0 ? `, ${notRun} not run${out.interrupted ? " (interrupted)" : " (--fail-fast)"}` : "") +
      ` (${(out.wallMs / 1000).toFixed(1)} s wall, backend=${opts.world.name}, seed=${opts.seed})`,
  );
  if (failed.length) {
    lines.push("", "failed:");
    for (const f of failed) {
      const first = f.error?.message.split("\n")[0] ?? "failed";
      lines.push(`  ${first}`);
      if (f.artifacts) lines.push(`    artifacts: ${f.artifacts}`);
      if (f.replay) lines.push(`    replay: ${f.replay[0]}`);
    }
  }
  return lines;
}

/** The JSON report: the run and every case's result. */
export function jsonReport(opts: MatrixOptions, out: MatrixOutcome): string {
  return JSON.stringify(
    {
      run: {
        world: opts.world.name,
        tier: opts.tier ?? null,
        seed: opts.seed,
        repeat: opts.repeat,
        interrupted: out.interrupted,
        wallMs: Math.round(out.wallMs),
      },
      results: out.results.map((r) => ({
        name: r.name,
        family: familyOf(r.name),
        result: resultWord(r).toLowerCase(),
        knownBug: r.xfail?.id ?? r.xpass?.id,
        note: r.note,
        skipped: r.skipped,
        seed: r.seed,
        timeMs: Math.round(r.timeMs),
        stats: r.stats,
        error: r.error?.message,
        artifacts: r.artifacts,
        replay: r.replay,
      })),
    },
    null,
    2,
  );
}

async function main(): Promise<number> {
  const cli = readCli(CLI, Deno.args, matrixOptions);
  if ("status" in cli) return cli.status;
  const opts = cli.args;
  await opts.world.prepare?.();
  const selected = selectCases(ALL_CASES, opts);
  const what = `tier '${opts.tier ?? (opts.filters.length || opts.regexes.length ? "any" : "smoke")}'` +
    `${opts.filters.map((f) => `, filter '${f}'`).join("")}${
      opts.regexes.map((r) => `, regex ${r}`).join("")
    }`;
  if (selected.length === 0) {
    console.error(`matrix: no case matches ${what} (deno task matrix --list --tier slow lists them all)`);
    return 2;
  }
  if (opts.list) {
    // Which worlds can run each case depends on what their binaries have: probe them all (a world that
    // cannot be prepared here, e.g. no QEMU installed, then lists nothing it cannot vouch for).
    await Promise.all(WORLDS.map((w) => w.prepare?.().catch(() => {})));
    for (const line of listLines(selected)) console.log(line);
    return 0;
  }
  console.log(
    `migtest matrix: backend=${opts.world.name} ${what} cases=${selected.length} repeat=${opts.repeat} ` +
      `jobs=${opts.jobs} seed=${opts.seed}`,
  );
  const startedAt = new Date();
  const interrupt = new AbortController();
  const onSigint = () => {
    if (!interrupt.signal.aborted) console.log("\nmatrix: interrupted: stopping the running cases");
    interrupt.abort();
  };
  // SIGTERM (a CI timeout, the mutation battery's time limit) stops the cases as Ctrl-C does.
  for (const sig of STOP_SIGNALS) Deno.addSignalListener(sig, onSigint);
  let out: MatrixOutcome;
  try {
    out = await runMatrix(opts, selected, interrupt.signal, (l) => console.log(l));
  } finally {
    for (const sig of STOP_SIGNALS) Deno.removeSignalListener(sig, onSigint);
  }
  for (const line of summaryLines(opts, out, selected.length)) console.log(line);
  await Deno.writeTextFile(
    opts.junit,
    junitXml(`migtest.${opts.world.name}.${opts.tier ?? "selected"}`, out.results),
  );
  console.log(`JUnit: ${opts.junit}`);
  if (opts.json) {
    await Deno.writeTextFile(opts.json, jsonReport(opts, out) + "\n");
    console.log(`JSON: ${opts.json}`);
  }
  if (opts.html) {
    await writeHtmlReport(opts.html, out.results, {
      world: opts.world.name,
      tier: opts.tier ?? null,
      seed: opts.seed,
      startedAt,
      wallMs: out.wallMs,
    });
    console.log(`HTML report: ${opts.html}`);
  }
  if (out.interrupted) return 130;
  return out.results.some((r) => !r.ok) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
