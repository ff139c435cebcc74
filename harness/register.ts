/**
 * Case tables as `deno test` tests: one test per case, named by its QEMU-style path so `--filter` selects
 * cases. Each family's `*_test.ts` calls `Deno.test` for its own cases (so JUnit groups them by family).
 * The environment is read when the tests are made, never at import:
 *   MIGTEST_TIER=smoke|full|slow (default full: smoke and full), MIGTEST_SEED=0…2^32−1 (default: one random
 *   seed per run, printed with every case), MIGTEST_BACKEND (or MIGTEST_WORLD)=engine|qemu|sim|engine-to-qemu|qemu-to-engine, MIGTEST_DEFECTS=side:name,…,
 *   MIGTEST_ARTIFACTS=DIR, MIGTEST_KEEP=1 (keep passing cases' folders), MIGTEST_CAPTURE=1 (save main streams).
 */
import { inTier, type Tier, TIERS } from "./case.ts";
import { cannotRunIn, type MigrationCase, validateCases } from "./families/mod.ts";
import { DEFAULT_CASE_TIMEOUT_MS, type DefectSwitch, parseDefects, runCase } from "./runner.ts";
import { parseSeed } from "../engine/cli.ts";
import { worldFromEnv } from "./world/worlds.ts";
import type { World } from "./world/world.ts";

/** What running the cases needs: engines are processes with sockets, files and their environment. */
const NEEDED: Deno.PermissionDescriptor[] = [
  { name: "run" },
  { name: "read" },
  { name: "write" },
  { name: "net" },
  { name: "env" },
];

/** The permissions missing for running cases, as flags (empty when all are granted). */
function missingPermissions(): string[] {
  return NEEDED.filter((p) => Deno.permissions.querySync(p).state !== "granted").map((p) =>
    `--allow-${p.name}`
  );
}

export interface CaseEnvironment {
  tier: Tier;
  seed: number;
  world: World;
  defects: DefectSwitch[];
  artifactsDir: string;
  keep: boolean;
  capture: boolean;
}

let cachedSeed: number | undefined;

/** A 0/1 switch from the environment (unset: off). */
function flag(name: string): boolean {
  const v = Deno.env.get(name) ?? "0";
  if (v !== "0" && v !== "1") throw new RangeError(`${name} must be 0 or 1, got '${v}'`);
  return v === "1";
}

/** The run's settings from the environment (one seed for the whole `deno test` run). */
export function caseEnvironment(): CaseEnvironment {
  const tier = Deno.env.get("MIGTEST_TIER") ?? "full";
  if (!TIERS.some((t) => t === tier)) {
    throw new RangeError(`MIGTEST_TIER must be one of ${TIERS.join("|")}, got '${tier}'`);
  }
  const s = Deno.env.get("MIGTEST_SEED");
  cachedSeed ??= s !== undefined
    ? parseSeed(s, "MIGTEST_SEED")
    : crypto.getRandomValues(new Uint32Array(1))[0];
  return {
    tier: TIERS.find((t) => t === tier)!,
    seed: cachedSeed,
    world: worldFromEnv(),
    defects: parseDefects(Deno.env.get("MIGTEST_DEFECTS") ?? "", "MIGTEST_DEFECTS"),
    artifactsDir: Deno.env.get("MIGTEST_ARTIFACTS") ?? "artifacts",
    keep: flag("MIGTEST_KEEP"),
    capture: flag("MIGTEST_CAPTURE"),
  };
}

/** The run seed of this `deno test` run (MIGTEST_SEED, else random). */
export function runSeed(): number {
  return caseEnvironment().seed;
}

/**
 * The tests of a case table (validated first; the world prepared, e.g. its QEMU binaries probed). Without the permissions cases need, each test is
 * ignored and one line says which flags are missing (bare `deno test` loads every module).
 */
export async function caseTests(cases: readonly MigrationCase[]): Promise<Deno.TestDefinition[]> {
  validateCases(cases);
  const missing = missingPermissions();
  if (missing.length) {
    console.log(`cases ignored: they need ${missing.join(" ")} (run them with 'deno task test')`);
    return cases.map((c) => ({ name: c.name, ignore: true, fn: () => {} }));
  }
  const env = caseEnvironment();
  await env.world.prepare?.();
  return cases.map((c) => {
    const skip = cannotRunIn(env.world, c);
    // Reported, never silently passed: the reason is printed and the test shows as ignored.
    if (skip && inTier(c, env.tier)) console.log(`SKIP ${c.name} on ${env.world.name}: ${skip}`);
    return {
      name: c.name,
      ignore: !inTier(c, env.tier) || skip !== null,
      fn: async () => {
        const r = await runCase(c, {
          seed: env.seed,
          world: env.world,
          defects: env.defects,
          artifactsDir: env.artifactsDir,
          keep: env.keep,
          capture: env.capture,
          timeoutMs: c.timeoutMs ?? DEFAULT_CASE_TIMEOUT_MS,
          log: (m) => console.log(m),
        });
        // An XFAIL is ok and keeps its error for the report (the log line above names the bug): only a
        // case that is not ok fails the test.
        if (!r.ok) throw r.error ?? new Error(`${c.name} failed`);
      },
    };
  });
}
