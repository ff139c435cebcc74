/**
 * The meta-test: every regression case that guards against a known defect fails with the defect
 * switched on and passes with it off. A regression case that cannot fail guards nothing.
 */
import assert from "node:assert/strict";
import { runSeed } from "../../harness/register.ts";
import { runCase } from "../../harness/runner.ts";
import { REGRESSION_CASES } from "./all.ts";

for (const c of REGRESSION_CASES.filter((c) => c.guards)) {
  const { side, defect } = c.guards!;
  Deno.test({
    name: `defects: ${c.name} fails with '${defect}' on the ${side === "src" ? "source" : "target"}`,
    timeout: 120_000,
    fn: async () => {
      const seed = runSeed();
      const r = await runCase(c, { seed, artifactsDir: null, defects: [{ side, defect }] });
      assert.ok(!r.ok, `the case passed with defect '${defect}' switched on (seed=${seed})`);
      console.log(`  with ${defect}: ${r.error!.message.split("\n").slice(0, 3).join(" | ")}`);
    },
  });
}
