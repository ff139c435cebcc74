/**
 * Regression: a paused postcopy's destination took any new connection as the recovery's main channel,
 * including one the old listener had accepted before the pause: a preempt channel still finishing its
 * TLS handshake. It went to postcopy-recover on that dead channel, paused again at its EOF, and refused
 * the harness's migrate-recover ("Migrate recover can only be run when postcopy is paused"; engine world
 * under load, `deno task test`, 2026-12-06). Now only migrate-recover's listener brings the new main
 * channel. The simulation models the server's side of a PSK session as ready a while after the client's,
 * which opens that window at sim seed 3739181399.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../all.ts";
import { runCase } from "../../harness/runner.ts";
import { simWorld } from "../../harness/world/sim.ts";

Deno.test({
  name:
    "regression: a connection from before the pause is not a postcopy recovery's channel (sim seed 3739181399)",
  timeout: 120_000,
  fn: async () => {
    const c = ALL_CASES.find((x) => x.name === "/migration/postcopy/preempt/recovery/tls/psk");
    assert.ok(c);
    const r = await runCase(c, { seed: 3739181399, world: simWorld, artifactsDir: null });
    assert.ok(r.ok, r.error?.message);
  },
});
