/**
 * Postcopy beside real QEMU: a postcopy case run in the engine world and, when a QEMU binary is there, in
 * the QEMU world (the same case record: the a-b guest, the same parameters), with what each reports —
 * total time, downtime, page requests, the destination's blocktime and, where it reports one (the model;
 * QEMU from 10.1), the fault latency (request → page installed).
 */
import type { World } from "../../harness/world/world.ts";
import { caseRuns } from "./case_runs.ts";

export interface PostcopyRun {
  totalMs: number;
  downtimeMs: number;
  requests: number;
  blocktimeMs: number;
  /** Mean fault latency, where the destination reports it. */
  latencyUs?: number;
  /** The upper bound of the bucket that holds the 99th percentile (buckets of 2^k µs). */
  latencyP99Us?: number;
}

/** The 99th percentile's bucket bound of a 2^k µs histogram, or undefined when it is empty. */
export function p99Bucket(dist: readonly number[]): number | undefined {
  const total = dist.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  let seen = 0;
  for (let k = 0; k < dist.length; k++) {
    seen += dist[k];
    if (seen >= total * 0.99) return 2 ** (k + 1);
  }
  return 2 ** dist.length;
}

/**
 * `runs` runs of the case in `world` (seeds from `seed`); why the world cannot run it instead, or the
 * first failure's message.
 */
export function postcopyRuns(
  name: string,
  world: World,
  runs: number,
  seed: number,
): Promise<PostcopyRun[] | { skipped: string }> {
  return caseRuns(name, world, runs, seed, (r) => {
    const pc = r.stats.postcopy;
    if (!pc) throw new Error(`${name} recorded no postcopy statistics`);
    return {
      totalMs: r.stats.totalTimeMs ?? NaN,
      downtimeMs: r.stats.downtimeMs ?? NaN,
      requests: pc.requests,
      blocktimeMs: pc.blocktimeMs,
      ...(pc.latencyNs !== undefined ? { latencyUs: pc.latencyNs / 1000 } : {}),
      ...(pc.latencyDist ? { latencyP99Us: p99Bucket(pc.latencyDist) } : {}),
    };
  });
}
