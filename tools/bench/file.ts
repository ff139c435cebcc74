/**
 * File migration beside real QEMU: the plain file: stream against mapped-ram (main thread, and multifd's
 * channels writing in parallel), each case run in the engine world and, where the binary has mapped-ram
 * (QEMU 9.0 on), in the QEMU world: the save's total time and the bytes it wrote.
 */
import type { World } from "../../harness/world/world.ts";
import { caseRuns } from "./case_runs.ts";

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
export function fileRuns(
  name: string,
  world: World,
  runs: number,
  seed: number,
): Promise<FileRun[] | { skipped: string }> {
  return caseRuns(name, world, runs, seed, (r) => ({
    totalMs: r.stats.totalTimeMs ?? NaN,
    transferredBytes: r.stats.transferredBytes ?? NaN,
  }));
}
