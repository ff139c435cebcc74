/**
 * The meta-test: every regression case that guards against a known defect fails with the defect
 * switched on (and passes with it off, as every case run shows). A regression case that cannot fail
 * guards nothing.
 *
 * In the simulated world, at fixed seeds: a defect that is a race (a multifd receive barrier left out)
 * shows only in some interleavings, and between real processes whether one comes depends on how busy
 * the machine is, so an engine-world run here failed on a loaded machine. The simulation replays its
 * interleavings exactly: the same seeds give the same verdict on any machine.
 */
import assert from "node:assert/strict";
import { caseNeeds } from "../../harness/families/mod.ts";
import { runCase } from "../../harness/runner.ts";
import { simWorld } from "../../harness/world/sim.ts";
import { REGRESSION_CASES } from "./all.ts";

/** The seeds tried, in order, until one fails (a race needs the right interleaving; most fail at once). */
const SEEDS = [1, 2, 3, 4, 5];

for (const c of REGRESSION_CASES.filter((c) => c.guards)) {
  const { side, defect } = c.guards!;
  Deno.test({
    name: `defects: ${c.name} fails with '${defect}' on the ${side === "src" ? "source" : "target"}`,
    timeout: 120_000,
    fn: async () => {
      assert.equal(simWorld.cannotRun(c, caseNeeds(c)), null, "a guarding case must run in the simulation");
      const passed: number[] = [];
      for (const seed of SEEDS) {
        const r = await runCase(c, {
          seed,
          world: simWorld,
          artifactsDir: null,
          defects: [{ side, defect }],
        });
        if (!r.ok) {
          console.log(
            `  with ${defect}, sim seed ${seed}: ${r.error!.message.split("\n").slice(0, 3).join(" | ")}`,
          );
          return;
        }
        passed.push(seed);
      }
      assert.fail(
        `the case passed with defect '${defect}' switched on at every sim seed (${passed.join(", ")})`,
      );
    },
  });
}
