/**
 * File migration beside real QEMU: the plain file: stream against mapped-ram (main thread, and multifd's
 * channels writing in parallel), each case run in the engine world and, where the binary has mapped-ram
 * (QEMU 9.0 on), in the QEMU world: the save's total time and the bytes it wrote.
 */
import { ALL_CASES } from "../../cases/all.ts";
import { caseNeeds } from "../../harness/families/mod.ts";
import { runCase } from "../../harness/runner.ts";
import type { World } from "../../harness/world/world.ts";

export const FILE_BENCH_CASES = [
  "/migration/precopy/file",
  "/migration/precopy/file/mapped-ram",
  "/migration/multifd/file/mapped-ram",
] as const;

export interface FileRun {
  totalMs: number;
  transferredBytes: number;
}

/** `runs` runs of the case in `world` (seeds from `seed`), or why the world cannot run it. */
export async function fileRuns(
  name: string,
  world: World,
  runs: number,
  seed: number,
): Promise<FileRun[] | { skipped: string }> {
  const c = ALL_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  await world.prepare?.();
  const why = world.cannotRun(c, caseNeeds(c));
  if (why) return { skipped: why };
  const out: FileRun[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await runCase(c, { seed: seed + i, world, artifactsDir: null });
    if (!r.ok || r.xfail) return { skipped: `${name} failed: ${r.error?.message ?? r.xfail?.id}` };
    out.push({ totalMs: r.stats.totalTimeMs ?? NaN, transferredBytes: r.stats.transferredBytes ?? NaN });
  }
  return out;
}
