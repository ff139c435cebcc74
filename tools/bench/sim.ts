/**
 * The simulated world's speed and determinism: seeds per minute for a 16 MiB guest (precopy, multifd with
 * 4 channels, COLO with 5 checkpoints), each beside the same case between engine processes (the baseline,
 * measured in the same run), and a replay check: every seed run twice must give the same trace hash.
 */
import type { WorkloadSpec } from "../../engine/guest/workload.ts";
import type { MigrationCase } from "../../harness/families/mod.ts";
import { runCase } from "../../harness/runner.ts";
import { simWorld } from "../../harness/world/sim.ts";

const WORKLOAD: WorkloadSpec = { kind: "random", seed: 0, hotPages: 256, hotPercent: 80 };

export const SIM_BENCH_CASES: MigrationCase[] = [
  {
    name: "/bench/sim/precopy",
    tier: "full",
    flow: "precopy",
    why: "bench",
    transport: "unix",
    live: true,
    machine: "small",
    workload: WORKLOAD,
  },
  {
    name: "/bench/sim/multifd-4",
    tier: "full",
    flow: "precopy",
    why: "bench",
    transport: "tcp",
    live: true,
    machine: "small",
    workload: WORKLOAD,
    caps: ["multifd"],
    srcParams: { "multifd-channels": 4 },
    dstParams: { "multifd-channels": 4 },
  },
  {
    name: "/bench/sim/colo-5",
    tier: "full",
    flow: "colo",
    why: "bench",
    transport: "tcp",
    machine: "small",
    workload: WORKLOAD,
    caps: ["x-colo"],
    colo: { survivor: "secondary", checkpoints: 5, checkpointDelayMs: 20 },
  },
];

export interface SimRate {
  name: string;
  seeds: number;
  failed: number;
  simPerMinute: number;
  enginePerMinute: number;
}

/** Runs `seeds` seeds of `c` in the simulation and 3 between engine processes; runs per minute of each. */
export async function simRate(c: MigrationCase, seeds: number): Promise<SimRate> {
  let failed = 0;
  let t0 = performance.now();
  for (let s = 0; s < seeds; s++) {
    const r = await runCase(c, { seed: s, world: simWorld, artifactsDir: null });
    if (!r.ok) failed++;
  }
  const simMs = (performance.now() - t0) / seeds;
  t0 = performance.now();
  const engineRuns = 3;
  for (let s = 0; s < engineRuns; s++) {
    const r = await runCase(c, { seed: s, artifactsDir: null });
    if (!r.ok) failed++;
  }
  const engineMs = (performance.now() - t0) / engineRuns;
  return { name: c.name, seeds, failed, simPerMinute: 60_000 / simMs, enginePerMinute: 60_000 / engineMs };
}

/** Each of `seeds` seeds run twice: how many gave the same trace hash both times. */
export async function replayAgreement(
  c: MigrationCase,
  seeds: number,
): Promise<{ same: number; of: number }> {
  let same = 0;
  for (let s = 0; s < seeds; s++) {
    const a = await runCase(c, { seed: s, world: simWorld, artifactsDir: null });
    const b = await runCase(c, { seed: s, world: simWorld, artifactsDir: null });
    if (a.trace !== undefined && a.trace === b.trace) same++;
  }
  return { same, of: seeds };
}
