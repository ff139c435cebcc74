/**
 * Postcopy between two engines in one process: the destination runs with pages missing, faults them in
 * over the return path, and ends with every page the source had; the versions guest checks each read.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Capability } from "./options.ts";
import { InProcessPair } from "./testing/in_process_test_util.ts";
import { until } from "./wait.ts";

function postcopyPair(extra: Capability[] = []): InProcessPair {
  return new InProcessPair({
    capabilities: ["events", "postcopy-ram", "postcopy-blocktime", ...extra],
    workload: { kind: "versions", seed: 7, pages: 1024 },
  });
}

Deno.test("in-process postcopy: the destination runs with pages missing, faults them in, ends equal", async () => {
  await using p = postcopyPair();
  const { src: s, dst: d } = p;
  s.engine.options.params["max-bandwidth"] = 2_000_000;
  s.engine.options.params["downtime-limit"] = 1;
  // Background pages slow enough that the running destination faults.
  s.engine.options.params["max-postcopy-bandwidth"] = 4_000_000;
  d.engine.autostart = true;
  await new Promise((r) => setTimeout(r, 30));
  p.migrate();
  await until("source active", () => s.engine.migration.status === "active");
  s.engine.migration.startPostcopy();
  await until("source completed", () => ["completed", "failed"].includes(s.engine.migration.status));
  assert.equal(s.engine.migration.status, "completed", s.engine.migration.errorDesc ?? "");
  await until("destination completed", () => ["completed", "failed"].includes(d.engine.incoming.status));
  assert.equal(d.engine.incoming.status, "completed", d.engine.incoming.errorDesc ?? "");
  const statuses = s.events.filter((e) => e.event === "MIGRATION").map((e) => e.data?.status);
  // QEMU 10.0's postcopy_start: device from the stop until the package is out (the fidelity table).
  assert.deepEqual(statuses, ["setup", "active", "device", "postcopy-active", "completed"]);
  assert.deepEqual(d.events.filter((e) => e.event === "GUEST_PANICKED"), []);
  const stats = d.engine.incoming.postcopy!.stats();
  assert.ok(stats.faults > 0, `the destination guest never faulted: ${JSON.stringify(stats)}`);
  assert.equal(stats.resolved, stats.faults);
  const q = d.engine.incoming.query();
  assert.equal(typeof q["postcopy-blocktime"], "number");
  assert.ok(((s.engine.migration.query().ram as Record<string, number>)["postcopy-requests"]) > 0);
  // Every page the destination's guest has not written since it started equals the source's.
  await d.engine.machine.stop();
  let differ = 0;
  s.engine.machine.blocks.forEach((b, i) => {
    const db = d.engine.machine.blocks[i];
    for (let pg = 0; pg < b.pages; pg++) {
      if (Atomics.load(db.dirtyLog, pg >>> 5) & (1 << (pg & 31))) continue;
      if (!Buffer.from(b.page(pg)).equals(Buffer.from(db.page(pg)))) differ++;
    }
  });
  assert.equal(differ, 0);
});

Deno.test("in-process postcopy: pause-before-switchover holds the switch in pre-switchover until migrate-continue", async () => {
  await using p = postcopyPair(["pause-before-switchover"]);
  const { src: s, dst: d } = p;
  s.engine.options.params["max-bandwidth"] = 2_000_000;
  s.engine.options.params["downtime-limit"] = 1;
  d.engine.autostart = true;
  p.migrate();
  await until("source active", () => s.engine.migration.status === "active");
  s.engine.migration.startPostcopy();
  await until("source pre-switchover", () => s.engine.migration.status === "pre-switchover");
  assert.equal(s.engine.machine.running, false, "the guest stops before pre-switchover");
  s.engine.migration.continueFrom("pre-switchover");
  await until("source completed", () => ["completed", "failed"].includes(s.engine.migration.status));
  assert.equal(s.engine.migration.status, "completed", s.engine.migration.errorDesc ?? "");
  const statuses = s.events.filter((e) => e.event === "MIGRATION").map((e) => e.data?.status);
  assert.deepEqual(statuses, ["setup", "active", "pre-switchover", "device", "postcopy-active", "completed"]);
});

Deno.test("in-process postcopy: a user's pause stays in error-desc (migrate_set_error), whatever the status", async () => {
  await using p = postcopyPair();
  const { src: s, dst: d } = p;
  s.engine.options.params["max-bandwidth"] = 2_000_000;
  s.engine.options.params["downtime-limit"] = 1;
  s.engine.options.params["max-postcopy-bandwidth"] = 1_000_000;
  d.engine.autostart = true;
  p.migrate();
  await until("source active", () => s.engine.migration.status === "active");
  s.engine.migration.startPostcopy();
  await until("source postcopy-active", () => s.engine.migration.status === "postcopy-active");
  assert.equal(s.engine.migration.query()["error-desc"], undefined);
  s.engine.migration.pause();
  await until("source postcopy-paused", () => s.engine.migration.status === "postcopy-paused");
  assert.equal(s.engine.migration.query()["error-desc"], "Postcopy migration is paused by the user");
});
