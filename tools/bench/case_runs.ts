/**
 * A case run several times in one world for a bench: the case record as the matrix has it, one seed per
 * run, each run's result turned into the figures the bench wants.
 */
import { ALL_CASES } from "../../cases/all.ts";
import { caseNeeds } from "../../harness/families/mod.ts";
import { type CaseResult, runCase } from "../../harness/runner.ts";
import type { World } from "../../harness/world/world.ts";

/**
 * `runs` runs of case `name` in `world` (seeds from `seed`), each passed to `figures`; why the world
 * cannot run it instead, or the first failure's message.
 */
export async function caseRuns<T>(
  name: string,
  world: World,
  runs: number,
  seed: number,
  figures: (r: CaseResult) => T,
): Promise<T[] | { skipped: string }> {
  const c = ALL_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  await world.prepare?.();
  const why = world.cannotRun(c, caseNeeds(c));
  if (why) return { skipped: why };
  const out: T[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await runCase(c, { seed: seed + i, world, artifactsDir: null });
    if (!r.ok || r.xfail) return { skipped: `${name} failed: ${r.error?.message ?? r.xfail?.id}` };
    out.push(figures(r));
  }
  return out;
}
