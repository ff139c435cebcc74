import assert from "node:assert/strict";
import type { ColoCase } from "./case.ts";
import { runCase } from "../../runner.ts";

const short: ColoCase = {
  name: "/migration/colo/report/stats",
  tier: "smoke",
  flow: "colo",
  why: "the COLO statistics of a short case",
  transport: "tcp",
  caps: ["x-colo"],
  colo: { survivor: "primary", checkpoints: 3, checkpointDelayMs: 50 },
};

Deno.test("COLO flow: checkpoints, their latencies and the failover time are in the case's stats", async () => {
  const seen: number[] = [];
  const r = await runCase(short, {
    seed: 1,
    artifactsDir: null,
    onProgress: (samples, elapsedMs) => seen.push(samples.length, elapsedMs),
  });
  assert.ok(r.ok, r.error?.message);
  // The matrix's progress line is fed while the case runs: growing samples, growing time.
  assert.ok(seen.length >= 4, `onProgress called ${seen.length / 2} times`);
  assert.ok(seen.at(-2)! > seen[0] && seen.at(-1)! > seen[1]);
  const colo = r.stats.colo;
  assert.ok(colo, "no COLO statistics");
  // The primary counts a checkpoint at its vmstate-loaded: the last checked one may not get there before
  // the failover, and unchecked ones may run before it.
  assert.ok(colo.checkpoints >= 2, `checkpoints ${colo.checkpoints}`);
  assert.equal(colo.latencyMs.length, colo.checkpoints);
  for (const ms of colo.latencyMs) assert.ok(ms > 0 && ms < r.timeMs, `checkpoint latency ${ms} ms`);
  assert.ok(colo.failoverMs !== undefined && colo.failoverMs > 0 && colo.failoverMs < 10_000);
  // The sampler saw the primary in COLO state and its checkpoint count grow.
  const counts = (r.samples ?? []).flatMap((s) => s.kind === "poll" && s.checkpoints ? [s.checkpoints] : []);
  assert.ok(counts.length > 0 && Math.max(...counts) <= colo.checkpoints, `sampled counts ${counts}`);
});
