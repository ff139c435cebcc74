/**
 * Regression: the source wrote the preempt channel's EOS after the main stream's EOF. The destination
 * completes at that EOF and closed its channels without waiting for the preempt thread: pages still in
 * flight there were lost (sim seed 17: check_guests_ram found two pages older than their neighbours), and
 * between engine processes the late EOS met a closed socket (EPIPE) and paused a migration the
 * destination had finished (.ci/run, 2026-12-06). Now the EOS goes first and the destination joins the
 * preempt thread before it completes. The simulation replays seed 17's interleaving exactly.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../all.ts";
import { runCase } from "../../harness/runner.ts";
import { simWorld } from "../../harness/world/sim.ts";

Deno.test({
  name: "regression: postcopy preempt recovery loses no page to an EOS after the main EOF (sim seed 17)",
  timeout: 120_000,
  fn: async () => {
    const c = ALL_CASES.find((x) => x.name === "/migration/postcopy/preempt/recovery/plain");
    assert.ok(c);
    const r = await runCase(c, { seed: 17, world: simWorld, artifactsDir: null });
    assert.ok(r.ok, r.error?.message);
  },
});
