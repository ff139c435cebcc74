/**
 * `deno task matrix`: runs the case matrix between real engine processes, one line per case while it
 * runs and a summary table at the end; writes JUnit XML and keeps an artifact folder per failed case.
 *
 *   deno task matrix [--tier smoke|full|slow] [--filter PATH|/regex/] [--seed N] [--repeat N]
 *                    [--junit FILE] [--artifacts DIR] [--list]
 */
import { parseArgs } from "node:util";
import { ALL_CASES } from "../cases/all.ts";
import { inTier, matchesFilter, type Tier, TIERS } from "./case.ts";
import { junitXml } from "./junit.ts";
import { runSeed } from "./register.ts";
import { type CaseResult, runCase } from "./runner.ts";
import { isWorldName, worldByName } from "./world/worlds.ts";
import { WORLD_NAMES } from "./world/world.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tier: { type: "string", default: "smoke" },
    filter: { type: "string" },
    seed: { type: "string" },
    repeat: { type: "string", default: "1" },
    junit: { type: "string", default: "junit-matrix.xml" },
    artifacts: { type: "string", default: "artifacts" },
    list: { type: "boolean", default: false },
    backend: { type: "string", default: "engine" },
  },
  strict: true,
});

function die(msg: string): never {
  console.error(`matrix: ${msg}`);
  Deno.exit(2);
}

const tier = values.tier as Tier;
if (!TIERS.includes(tier)) die(`--tier must be one of ${TIERS.join("|")}`);
if (values.seed !== undefined && !/^\d+$/.test(values.seed)) die("--seed must be a non-negative integer");
const repeat = Number(values.repeat);
if (!Number.isInteger(repeat) || repeat < 1) die("--repeat must be a positive integer");
const seed = values.seed !== undefined ? Number(values.seed) : runSeed();

if (!isWorldName(values.backend!)) die(`--backend must be one of ${WORLD_NAMES.join("|")}`);
const world = worldByName(values.backend!);
const backend = world.name;
const selected = ALL_CASES.filter((c) => inTier(c, tier) && matchesFilter(c.name, values.filter));
if (values.list) {
  for (const c of selected) console.log(`${c.tier.padEnd(5)} ${c.name.padEnd(64)} ${c.why}`);
  Deno.exit(0);
}
if (selected.length === 0) die(`no case matches tier '${tier}' and filter '${values.filter ?? ""}'`);

const mb = (b?: number) => (b === undefined ? "-" : `${(b / 1e6).toFixed(1)} MB`);
const ms = (t?: number) => (t === undefined ? "-" : `${Math.round(t)} ms`);

console.log(
  `migtest matrix: backend=${backend} tier=${tier} cases=${selected.length} repeat=${repeat} seed=${seed}`,
);
const results: CaseResult[] = [];
const t0 = performance.now();
for (let i = 0; i < repeat; i++) {
  for (const c of selected) {
    // Each repetition gets its own seed, derived from the run seed, so a repeat explores new schedules.
    const caseSeed = (seed + i * 0x9e3779b9) >>> 0;
    const skip = world.cannotRun(c);
    if (skip) {
      results.push({ name: c.name, ok: true, skipped: skip, seed: caseSeed, timeMs: 0, stats: {} });
      console.log(`SKIP  ${c.name.padEnd(58)} ${skip}`);
      continue;
    }
    const r = await runCase(c, { seed: caseSeed, world, artifactsDir: values.artifacts!, waitMs: 30_000 });
    results.push(r);
    const s = r.stats;
    console.log(
      `${r.ok ? "PASS" : "FAIL"}  ${c.name.padEnd(58)} ${(r.timeMs / 1000).toFixed(2).padStart(6)} s  ` +
        `downtime ${ms(s.downtimeMs).padStart(7)}  ${mb(s.transferredBytes).padStart(9)}  ` +
        `syncs ${s.dirtySyncCount ?? "-"}`,
    );
    if (!r.ok) console.log(`      ${r.error!.message.split("\n").join("\n      ")}`);
  }
}
const wall = (performance.now() - t0) / 1000;
await Deno.writeTextFile(values.junit!, junitXml(`migtest.${backend}.${tier}`, results));

const failed = results.filter((r) => !r.ok);
const skipped = results.filter((r) => r.skipped);
console.log(
  `\n${"case".padEnd(60)} ${"result".padEnd(6)} ${"time".padStart(8)} ${"downtime".padStart(9)} ${
    "transferred".padStart(11)
  } ${"syncs".padStart(5)}`,
);
for (const r of results) {
  const s = r.stats;
  console.log(
    `${r.name.padEnd(60)} ${(r.skipped ? "skip" : r.ok ? "pass" : "FAIL").padEnd(6)} ${
      (r.timeMs / 1000).toFixed(2).padStart(6)
    } s ${ms(s.downtimeMs).padStart(9)} ${mb(s.transferredBytes).padStart(11)} ${
      String(s.dirtySyncCount ?? "-").padStart(5)
    }`,
  );
}
console.log(
  `\n${
    results.length - failed.length - skipped.length
  } passed, ${failed.length} failed, ${skipped.length} skipped ` +
    `(${wall.toFixed(1)} s wall, backend=${backend}, seed=${seed})`,
);
console.log(`JUnit: ${values.junit}`);
for (const f of failed) if (f.artifacts) console.log(`artifacts: ${f.artifacts}`);
Deno.exit(failed.length ? 1 : 0);
