/**
 * Regression: the destination read the postcopy preempt channel from the moment it connected, and
 * joined only a preempt thread that existed when the main stream ended. A channel whose server side of
 * its TLS session became ready late (sim seed 1, since the simulated PSK handshake takes time) had its
 * first urgent page read before the main channel's LISTEN was loaded ("a page on the postcopy channel
 * before LISTEN"), and, ready after the main stream's end, its pages were never placed (check_guests_ram:
 * two stale pages). As in QEMU, the preempt thread now exists from LISTEN (and from each recovery), waits
 * for its channel, and the end of the migration joins it.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../all.ts";
import { runCase } from "../../harness/runner.ts";
import { simWorld } from "../../harness/world/sim.ts";

Deno.test({
  name: "regression: a postcopy preempt channel that comes late is read after LISTEN and joined (sim seed 1)",
  timeout: 120_000,
  fn: async () => {
    const c = ALL_CASES.find((x) => x.name === "/migration/postcopy/preempt/tls/psk");
    assert.ok(c);
    const r = await runCase(c, { seed: 1, world: simWorld, artifactsDir: null });
    assert.ok(r.ok, r.error?.message);
  },
});
