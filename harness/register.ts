/**
 * Registers case tables with `deno test`: one Deno.test per case, named by its QEMU-style path so
 * `--filter` selects cases. MIGTEST_TIER (smoke|full|slow, default full) picks the tier, MIGTEST_SEED
 * fixes the seed (else one random seed per run, printed with every case).
 */
import { inTier, type MigrationCase, type Tier, TIERS } from "./case.ts";
import { runCase } from "./runner.ts";
import { validateCases } from "./validate.ts";
import { worldFromEnv } from "./world/worlds.ts";

function envTier(): Tier {
  const t = Deno.env.get("MIGTEST_TIER") ?? "full";
  if (!TIERS.includes(t as Tier)) {
    throw new Error(`MIGTEST_TIER must be one of ${TIERS.join("|")}, got '${t}'`);
  }
  return t as Tier;
}

export function runSeed(): number {
  const s = Deno.env.get("MIGTEST_SEED");
  if (s !== undefined) {
    if (!/^\d+$/.test(s)) throw new Error(`MIGTEST_SEED must be a non-negative integer, got '${s}'`);
    return Number(s);
  }
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

const SEED = runSeed();

export function registerCases(cases: readonly MigrationCase[]): void {
  validateCases(cases);
  const tier = envTier();
  const world = worldFromEnv();
  for (const c of cases) {
    const skip = world.cannotRun(c);
    // Reported, never silently passed: the reason is printed and the test shows as ignored.
    if (skip && inTier(c, tier)) console.log(`SKIP ${c.name} on ${world.name}: ${skip}`);
    Deno.test({
      name: c.name,
      ignore: !inTier(c, tier) || skip !== null,
      timeout: c.timeoutMs ?? 120_000,
      fn: async () => {
        const r = await runCase(c, {
          seed: SEED,
          world,
          artifactsDir: Deno.env.get("MIGTEST_ARTIFACTS") ?? "artifacts",
          log: (m) => console.log(m),
        });
        if (r.error) throw r.error;
      },
    });
  }
}
