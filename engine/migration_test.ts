/**
 * Source and destination engines in one process over in-memory links: the protocol code runs without
 * sockets, as the simulated-network tests will run it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Engine } from "./engine.ts";
import { InProcessPair } from "./testing/in_process_test_util.ts";
import { until } from "./wait.ts";

/** Every test's pair: a source and a destination with MIGRATION events on. */
const pair = () => new InProcessPair({ capabilities: ["events"] });

/** Both sides completed, and every RAM block is equal byte for byte. */
function assertMigrated(src: Engine, dst: Engine): void {
  assert.equal(src.migration.status, "completed", src.migration.errorDesc ?? "");
  assert.equal(dst.incoming.status, "completed", dst.incoming.errorDesc ?? "");
  src.machine.blocks.forEach((b, i) => {
    assert.ok(Buffer.from(b.mem).equals(Buffer.from(dst.machine.blocks[i].mem)), `block ${b.idstr} differs`);
  });
}

Deno.test("in-process live precopy over a memory link: RAM and devices equal", async () => {
  await using p = pair();
  const { src: s, dst: d } = p;
  s.engine.options.setCapabilities([{ capability: "return-path", state: true }]);
  d.engine.options.setCapabilities([{ capability: "return-path", state: true }]);
  await sleep(30); // let the guest dirty memory
  p.migrate();
  await until("source completed", () => ["completed", "failed"].includes(s.engine.migration.status));
  await d.engine.incoming.join();
  assertMigrated(s.engine, d.engine);
  assert.deepEqual(d.engine.machine.deviceState(), s.engine.machine.deviceState());
  const statuses = s.events.filter((e) => e.event === "MIGRATION").map((e) => e.data?.status);
  assert.deepEqual(statuses, ["setup", "active", "device", "completed"]);
  assert.equal(d.engine.machine.runstate, "paused");
});

Deno.test("in-process: a destination that refuses the stream fails the source, whose guest runs on", async () => {
  await using p = pair();
  const { src: s, dst: d } = p;
  s.engine.options.setCapabilities([{ capability: "return-path", state: true }]);
  d.engine.incoming.exitOnError = false;
  s.engine.faults.inject({ kind: "unknown-section" });
  p.migrate();
  await until("source failed", () => ["completed", "failed"].includes(s.engine.migration.status));
  await d.engine.incoming.join();
  assert.equal(d.engine.incoming.status, "failed");
  assert.match(d.engine.incoming.errorDesc!, /Unknown savevm section or instance 'x-bogus-device' 0/);
  assert.equal(s.engine.migration.status, "failed");
  assert.match(s.engine.migration.errorDesc!, /^Sibling indicated error 1$/);
  assert.ok(s.engine.machine.running, "source guest must keep running");
  assert.deepEqual(d.exits, []);
});

Deno.test("in-process: cancel during iteration ends cancelled and restarts the guest", async () => {
  await using p = pair();
  const { src: s, dst: d } = p;
  d.engine.incoming.exitOnError = false;
  s.engine.options.params["max-bandwidth"] = 1_000_000;
  p.migrate();
  await until("active", () => s.engine.migration.status === "active");
  s.engine.migration.cancel();
  await s.engine.migration.join();
  await d.engine.incoming.join();
  assert.equal(s.engine.migration.status, "cancelled");
  assert.equal(d.engine.incoming.status, "failed");
  assert.ok(s.engine.machine.running);
});

for (const compression of ["none", "zlib", "zstd"]) {
  Deno.test(`in-process multifd (4 channels, ${compression}): RAM and devices equal`, async () => {
    await using p = pair();
    const { src: s, dst: d } = p;
    for (const e of [s.engine, d.engine]) {
      e.options.setCapabilities([{ capability: "multifd", state: true }]);
      e.options.params["multifd-channels"] = 4;
      e.options.params["multifd-compression"] = compression as "none" | "zlib" | "zstd";
    }
    await sleep(20);
    // Channels connect before the main channel here: the destination must tell them apart by magic.
    p.migrate({ mainChannelDelayMs: 5 });
    await until("source done", () => ["completed", "failed"].includes(s.engine.migration.status));
    await d.engine.incoming.join();
    assertMigrated(s.engine, d.engine);
    const q = s.engine.migration.query().ram as Record<string, number>;
    assert.ok(q["multifd-bytes"] > 0, "pages went over the multifd channels");
  });
}

Deno.test("in-process live precopy with xbzrle: deltas after the first round, RAM equal", async () => {
  await using p = pair();
  const { src: s, dst: d } = p;
  s.engine.options.setCapabilities([{ capability: "xbzrle", state: true }]);
  // Slow enough for several rounds over the hot set before the remainder fits the downtime.
  s.engine.options.params["max-bandwidth"] = 20_000_000;
  s.engine.options.params["downtime-limit"] = 1;
  s.engine.options.params["xbzrle-cache-size"] = 1 << 20;
  p.migrate();
  await until(
    "a few rounds",
    () => ((s.engine.migration.query().ram as Record<string, number>)?.["dirty-sync-count"] ?? 0) >= 5,
  );
  s.engine.options.params["downtime-limit"] = 30_000;
  await until("source done", () => ["completed", "failed"].includes(s.engine.migration.status));
  await d.engine.incoming.join();
  assertMigrated(s.engine, d.engine);
  const x = s.engine.migration.query()["xbzrle-cache"] as Record<string, number>;
  assert.ok(x.pages > 0, `no page went as XBZRLE: ${JSON.stringify(x)}`);
  assert.equal(x["cache-size"], 1 << 20);
});

Deno.test("in-process: a suspended guest migrates suspended, and only system_wakeup runs it again", async () => {
  await using p = new InProcessPair({ machine: "pc", workload: { kind: "a-b", suspendMe: true } });
  const { src: s, dst: d } = p;
  // SUSPEND goes out once the vCPU has parked (qemu_system_suspend).
  await until("the source guest's SUSPEND", () => s.events.some((e) => e.event === "SUSPEND"));
  assert.equal(s.engine.machine.runstate, "suspended");
  d.engine.autostart = true; // `cont` during inmigrate
  p.migrate();
  await s.engine.migration.join();
  await d.engine.incoming.join();
  assertMigrated(s.engine, d.engine);
  // The destination resumed (RESUME) into "suspended": its guest does not run until woken.
  assert.equal(d.engine.machine.runstate, "suspended");
  assert.ok(d.events.some((e) => e.event === "RESUME"));
  assert.equal(d.engine.machine.vcpu.running, false);
  d.engine.machine.wakeup();
  assert.equal(d.engine.machine.runstate, "running");
  assert.ok(d.events.some((e) => e.event === "WAKEUP"));
  assert.throws(() => d.engine.machine.wakeup(), /Unable to wake up: guest is not in suspended state/);
  assert.equal(s.engine.machine.runstate, "postmigrate");
});

Deno.test("in-process: stop while suspended pauses, start goes back to suspended", async () => {
  await using p = new InProcessPair({ machine: "pc", workload: { kind: "a-b", suspendMe: true } });
  const m = p.src.engine.machine;
  await until("the guest's SUSPEND", () => p.src.events.some((e) => e.event === "SUSPEND"));
  await m.stop();
  assert.equal(m.runstate, "paused");
  assert.throws(() => m.wakeup(), /not in suspended state/);
  m.start();
  assert.equal(m.runstate, "suspended");
  assert.equal(m.vcpu.running, false);
});
