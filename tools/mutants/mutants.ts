/**
 * `deno task mutants`: the standing mutation battery. Each mutant (tools/mutants/battery.ts) is applied
 * to a copy of the tree under a temporary directory, and the full tier runs there in the simulated world
 * (`deno task matrix --tier full --fail-fast --backend sim`), once per seed, in stages (runStages): the
 * cases that caught it before, its families, the rest. A mutant is caught when some case fails on some
 * run, deterministically when a case fails on every run. The real tree is never
 * modified; the copies are removed at the end, on an error and on Ctrl-C.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { ParseArgsOptionsConfig } from "node:util";
import {
  type Cli,
  type CliArgs,
  parseChoice,
  parseCli,
  parseCount,
  parseSeed,
  readCli,
  UsageError,
} from "../../engine/cli.ts";
import { applyPatch, checkBattery, type Mutant, mutatedCopy, unifiedDiff } from "./apply.ts";
import { BATTERY, SUBSETS } from "./battery.ts";

export const USAGE = `usage: deno task mutants [options]

Applies each mutant of the battery (tools/mutants/battery.ts) to a copy of the tree and runs the full tier
in the simulated world there, --fail-fast, in stages: the cases that caught it on an earlier run, then the
families of the file it changes, then the rest of the tier. Prints caught or missed, the case that caught
it, and whether every run caught it. Ends with: mutants: C caught of T (D deterministically). Exits 1 when
a mutant is missed.

  --runs N        runs per mutant, seeds S, S+1, ... (default 3)
  --seed S        the first run's seed (default 1)
  --jobs N        mutants at a time (default 2)
  --only NAME     that mutant only (repeatable)
  --subset NAME   a fixed subset of the battery: ${Object.keys(SUBSETS).join(", ")}
  --regex PATTERN only the cases matching it (the matrix's --regex), e.g. to prove a new case catches a
                  mutant; the score then says nothing about the full tier
  --backend WORLD the matrix's world: sim (default), engine (real processes, timing from the OS) or
                  engine-to-qemu (the model's source against QEMU's loader: source-side mutants)
  --timeout SEC   wall-clock bound of one run (all its stages); past it the run counts as caught (hung) (default 900)
  --json FILE     every mutant's runs as JSON
  --list          the battery: name, file, why (equivalent ones with their reason) and exit
  --diff NAME     the patch of one mutant as a unified diff and exit
  --help          this text
`;

export interface MutantsOptions {
  runs: number;
  seed: number;
  jobs: number;
  only: string[];
  subset?: string;
  timeoutSec: number;
  regex?: string;
  backend: "sim" | "engine" | "engine-to-qemu";
  json?: string;
  list: boolean;
  diff?: string;
}

const CLI = {
  tool: "mutants",
  usage: USAGE,
  options: {
    runs: { type: "string", default: "3" },
    seed: { type: "string", default: "1" },
    jobs: { type: "string", default: "2" },
    only: { type: "string", multiple: true },
    subset: { type: "string" },
    timeout: { type: "string", default: "900" },
    regex: { type: "string" },
    backend: { type: "string", default: "sim" },
    json: { type: "string" },
    list: { type: "boolean", default: false },
    diff: { type: "string" },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

function mutantsOptions({ values: v }: CliArgs<typeof CLI.options>): MutantsOptions {
  if (v.subset !== undefined && !Object.hasOwn(SUBSETS, v.subset)) {
    throw new UsageError(`unknown subset '${v.subset}' (known: ${Object.keys(SUBSETS).join(", ")})`);
  }
  const names = new Set(BATTERY.map((m) => m.name));
  for (const n of [...(v.only ?? []), ...(v.diff ? [v.diff] : [])]) {
    if (!names.has(n)) throw new UsageError(`no mutant named '${n}' (see --list)`);
  }
  return {
    runs: parseCount(v.runs, "--runs"),
    seed: parseSeed(v.seed, "--seed"),
    jobs: parseCount(v.jobs, "--jobs"),
    only: v.only ?? [],
    subset: v.subset,
    timeoutSec: parseCount(v.timeout, "--timeout"),
    regex: v.regex,
    backend: parseChoice(v.backend, ["sim", "engine", "engine-to-qemu"], "--backend"),
    json: v.json,
    list: v.list,
    diff: v.diff,
  };
}

/** The options of a run, or "help"; a bad option or value is a UsageError (exit 2). */
export function parseMutantsArgs(args: readonly string[]): MutantsOptions | "help" {
  return parseCli(CLI, args, mutantsOptions);
}

/** The mutants a run covers, in battery order (equivalent ones are listed, never run). */
export function selectMutants(opts: Pick<MutantsOptions, "only" | "subset">): Mutant[] {
  return BATTERY.filter((m) =>
    (opts.only.length === 0 || opts.only.includes(m.name)) &&
    (opts.subset === undefined || SUBSETS[opts.subset](m))
  );
}

/** One full-tier run of one mutant. */
export interface RunOutcome {
  seed: number;
  /** caught: some case failed; missed: every case passed; hung: past --timeout; broken: no result. */
  verdict: "caught" | "missed" | "hung" | "broken";
  /** The failing case(s) and the first line of their error. */
  failed: { name: string; error: string }[];
  wallMs: number;
  /** The last lines of the matrix's output (for a broken run). */
  tail?: string;
}

export interface MutantOutcome {
  mutant: Mutant;
  runs: RunOutcome[];
}

export function isCaught(r: RunOutcome): boolean {
  return r.verdict === "caught" || r.verdict === "hung";
}

/** Reads the matrix's JSON report: the cases that failed, or null when there is none. */
export function failedCases(json: string): { name: string; error: string }[] | null {
  let report: unknown;
  try {
    report = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof report !== "object" || report === null || !("results" in report)) return null;
  const results = report.results;
  if (!Array.isArray(results)) return null;
  const out: { name: string; error: string }[] = [];
  for (const r of results) {
    if (typeof r !== "object" || r === null) continue;
    if ("result" in r && r.result === "fail") {
      const name = "name" in r && typeof r.name === "string" ? r.name : "?";
      const error = "error" in r && typeof r.error === "string" ? r.error.split("\n")[0] : "";
      out.push({ name, error });
    }
  }
  return out;
}

/** The children running now, so Ctrl-C can stop exactly those. */
const running = new Set<Deno.ChildProcess>();

/**
 * The families (`/migration/FAMILY/...`) whose cases exercise a file most directly: a run tries them
 * first, so a caught mutant costs a family rather than the cases of the tier that come before it.
 */
const FIRST_FAMILIES: readonly [prefix: string, families: readonly string[]][] = [
  // The page route serves the multifd receiver before COLO state as much as COLO.
  ["engine/colo/ram_route.ts", ["multifd", "colo", "regressions"]],
  ["engine/colo/", ["colo", "regressions"]],
  ["engine/multifd/", ["multifd", "regressions"]],
  ["engine/xbzrle.ts", ["precopy", "bad_stream"]],
  ["engine/ram_xbzrle.ts", ["precopy", "bad_stream"]],
  ["engine/page_cache.ts", ["precopy"]],
  ["engine/postcopy_ram.ts", ["postcopy", "multifd\\+postcopy"]],
  ["engine/migration_postcopy.ts", ["postcopy", "multifd\\+postcopy"]],
  ["engine/ram_mapped.ts", ["precopy/file", "multifd/file"]],
  ["engine/crypto/", ["precopy/tcp/tls", "precopy/unix/tls", "multifd/tcp/tls"]],
  ["engine/transport/tls", ["precopy/tcp/tls", "precopy/unix/tls", "multifd/tcp/tls"]],
  ["engine/cpu_throttle.ts", ["auto_converge"]],
  ["engine/monitor/", ["precopy/fd", "precopy/file/offset/fdset", "multifd/file/mapped-ram/fdset"]],
  ["engine/ram", ["precopy", "bad_stream", "multifd"]],
  // The walker and its integer codec (vmstate_types.ts) alike.
  ["engine/vmstate", ["cross-version", "bad_stream", "precopy"]],
  ["engine/savevm.ts", ["bad_stream", "cross-version", "precopy"]],
  ["engine/incoming.ts", ["bad_stream", "cancel", "bad_dest"]],
  ["engine/migration.ts", ["cancel", "bad_stream", "bad_dest", "precopy"]],
];

/**
 * The matrix selections one run goes through, in order, until one catches the mutant: the cases that
 * caught it on an earlier run (by exact name), then the full tier's cases of the mutant's families, then
 * the rest of the full tier. Together they cover the full tier, so a miss still means every case passed.
 * With --regex the run is that one selection.
 */
export function runStages(m: Mutant, regex: string | undefined, caughtBefore: readonly string[]): string[][] {
  if (regex !== undefined) return [["--regex", regex]];
  const stages: string[][] = [];
  if (caughtBefore.length) stages.push(caughtBefore.flatMap((name) => ["--filter", name]));
  const families = FIRST_FAMILIES.find(([prefix]) => m.file.startsWith(prefix))?.[1];
  if (!families) return [...stages, ["--tier", "full"]];
  const group = `/migration/(?:${families.join("|")})(?:/|$)`;
  return [...stages, ["--tier", "full", "--regex", `^${group}`], [
    "--tier",
    "full",
    "--regex",
    `^(?!${group})`,
  ]];
}

/** One run of one mutant at one seed: its stages in order, stopping at the first that catches it. */
async function runOnce(
  dir: string,
  seed: number,
  stages: readonly string[][],
  opts: MutantsOptions,
  signal: AbortSignal,
): Promise<RunOutcome> {
  let wallMs = 0;
  for (const [k, selection] of stages.entries()) {
    if (signal.aborted) break;
    const left = opts.timeoutSec * 1000 - wallMs;
    const r = await runStage(dir, seed, k, selection, Math.max(left, 1000), opts, signal);
    wallMs += r.wallMs;
    if (r.verdict !== "missed") return { ...r, wallMs };
  }
  return { seed, verdict: "missed", failed: [], wallMs };
}

async function runStage(
  dir: string,
  seed: number,
  stage: number,
  selection: readonly string[],
  timeoutMs: number,
  opts: MutantsOptions,
  signal: AbortSignal,
): Promise<RunOutcome> {
  const t0 = performance.now();
  const json = join(dir, `matrix-${seed}-${stage}.json`);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-P=harness",
      "harness/matrix.ts",
      ...selection,
      "--fail-fast",
      "--backend",
      opts.backend,
      "--seed",
      String(seed),
      "--json",
      json,
      "--junit",
      join(dir, `junit-${seed}-${stage}.xml`),
      "--artifacts",
      join(dir, `artifacts-${seed}-${stage}`),
    ],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.add(child);
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGTERM");
  }, timeoutMs);
  // The matrix stops its cases on SIGINT; one that does not stop within 10 s is killed.
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => {
    child.kill("SIGINT");
    killTimer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  };
  signal.addEventListener("abort", onAbort);
  try {
    const out = await child.output();
    const wallMs = performance.now() - t0;
    if (hung) return { seed, verdict: "hung", failed: [], wallMs };
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const tail = text.trimEnd().split("\n").slice(-15).join("\n");
    let report = "";
    try {
      report = await Deno.readTextFile(json);
    } catch {
      // No report: the matrix did not get as far as writing one.
    }
    const failed = failedCases(report);
    if (failed === null) return { seed, verdict: "broken", failed: [], wallMs, tail };
    if (failed.length > 0) return { seed, verdict: "caught", failed, wallMs };
    return out.code === 0
      ? { seed, verdict: "missed", failed: [], wallMs }
      : { seed, verdict: "broken", failed: [], wallMs, tail };
  } finally {
    clearTimeout(timer);
    clearTimeout(killTimer);
    signal.removeEventListener("abort", onAbort);
    running.delete(child);
  }
}

async function runMutant(
  root: string,
  m: Mutant,
  opts: MutantsOptions,
  signal: AbortSignal,
  dirs: Set<string>,
): Promise<MutantOutcome> {
  const dir = await mutatedCopy(root, m);
  dirs.add(dir);
  try {
    const runs: RunOutcome[] = [];
    for (let i = 0; i < opts.runs && !signal.aborted; i++) {
      const caughtBefore = [...new Set(runs.flatMap((r) => r.failed.map((f) => f.name)))];
      const stages = runStages(m, opts.regex, caughtBefore);
      runs.push(await runOnce(dir, (opts.seed + i) >>> 0, stages, opts, signal));
    }
    return { mutant: m, runs };
  } finally {
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
  }
}

/** One line per mutant: verdict, runs caught, time, and what caught it. */
export function mutantLine(o: MutantOutcome): string {
  const caught = o.runs.filter(isCaught);
  const broken = o.runs.filter((r) => r.verdict === "broken");
  const word = broken.length ? "BROKEN" : caught.length === 0 ? "MISSED" : "caught";
  // The seeds a nondeterministic catch missed, so the miss can be replayed (--seed S --runs 1).
  const missedSeeds = o.runs.filter((r) => !isCaught(r)).map((r) => r.seed);
  const every = caught.length === o.runs.length
    ? "every run"
    : `not every run: seed ${missedSeeds.join(", ")} missed`;
  const by = [
    ...new Set(caught.flatMap((r) => r.verdict === "hung" ? ["(hung)"] : r.failed.map((f) => f.name))),
  ];
  const secs = o.runs.reduce((n, r) => n + r.wallMs, 0) / 1000;
  return `${word.padEnd(6)} ${o.mutant.name.padEnd(44)} ${caught.length}/${o.runs.length} runs` +
    `${caught.length ? ` (${every})` : ""} ${secs.toFixed(0).padStart(5)} s` +
    (by.length ? `  by ${by.join(", ")}` : "");
}

export function scoreLine(outcomes: readonly MutantOutcome[]): string {
  const counted = outcomes.filter((o) => !o.mutant.equivalent);
  const caught = counted.filter((o) => o.runs.some(isCaught));
  const always = caught.filter((o) => o.runs.every(isCaught));
  return `mutants: ${caught.length} caught of ${counted.length} (${always.length} deterministically)`;
}

async function main(): Promise<number> {
  const cli = readCli(CLI, Deno.args, mutantsOptions);
  if ("status" in cli) return cli.status;
  const opts = cli.args;
  const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  const problems = await checkBattery(root, BATTERY);
  if (problems.length) {
    console.error(`mutants: the battery does not apply to this tree:\n  ${problems.join("\n  ")}`);
    return 1;
  }
  if (opts.diff) {
    const m = BATTERY.find((x) => x.name === opts.diff)!;
    const before = await Deno.readTextFile(join(root, m.file));
    console.log(`# ${m.name}: ${m.why}${m.equivalent ? `\n# equivalent: ${m.equivalent}` : ""}`);
    console.log(unifiedDiff(m.file, before, applyPatch(before, m)).trimEnd());
    return 0;
  }
  const selected = selectMutants(opts);
  if (opts.list) {
    for (const m of selected) {
      console.log(`${m.name.padEnd(44)} ${m.file}${m.ci ? "  [ci]" : ""}`);
      console.log(`    ${m.why}`);
      if (m.equivalent) console.log(`    equivalent (not counted): ${m.equivalent}`);
    }
    const counted = selected.filter((m) => !m.equivalent).length;
    console.log(`\n${selected.length} mutants, ${counted} counted, ${selected.length - counted} equivalent`);
    return 0;
  }
  const toRun = selected.filter((m) => !m.equivalent);
  for (const m of selected.filter((x) => x.equivalent)) {
    console.log(`equiv. ${m.name.padEnd(44)} not run: ${m.equivalent}`);
  }
  console.log(
    `mutants: ${toRun.length} mutant(s), ${opts.runs} run(s) each (seeds ${opts.seed}..${
      opts.seed + opts.runs - 1
    }), ${opts.jobs} at a time; ${
      opts.regex === undefined ? "full tier" : `cases matching ${opts.regex}`
    }, --backend ${opts.backend}, --fail-fast`,
  );
  const interrupt = new AbortController();
  const dirs = new Set<string>();
  const onSigint = () => {
    if (!interrupt.signal.aborted) console.log("\nmutants: interrupted: stopping the running runs");
    interrupt.abort();
  };
  // SIGTERM too: the copies and the running matrices must not outlive the battery.
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSigint);
  const t0 = performance.now();
  const outcomes: MutantOutcome[] = new Array(toRun.length);
  let next = 0;
  try {
    const worker = async () => {
      while (!interrupt.signal.aborted && next < toRun.length) {
        const i = next++;
        const o = await runMutant(root, toRun[i], opts, interrupt.signal, dirs);
        if (interrupt.signal.aborted) break;
        outcomes[i] = o;
        console.log(mutantLine(o));
        for (const r of o.runs.filter((x) => x.verdict === "broken")) {
          console.log(`       seed ${r.seed}: no result from the matrix; its last lines:\n${r.tail ?? ""}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.jobs, toRun.length) }, worker));
  } finally {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSigint);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
  const done = outcomes.filter((o): o is MutantOutcome => o !== undefined);
  const missed = done.filter((o) => !o.runs.some(isCaught));
  const broken = done.filter((o) => o.runs.some((r) => r.verdict === "broken"));
  console.log("");
  if (missed.length) console.log(`missed: ${missed.map((o) => o.mutant.name).join(", ")}`);
  console.log(scoreLine(done));
  console.log(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (opts.json) {
    await Deno.writeTextFile(
      opts.json,
      JSON.stringify(
        done.map((o) => ({ name: o.mutant.name, file: o.mutant.file, runs: o.runs })),
        null,
        2,
      ) + "\n",
    );
  }
  if (interrupt.signal.aborted) return 130;
  return missed.length || broken.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
