/**
 * The engine-to-qemu pair: what it runs and why it skips the rest, the machine the model migrates as,
 * and the QEMU bugs it expects (the destination's only). Fake probes; the pair itself runs in the matrix.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../../cases/all.ts";
import { machineFixture, qemuPeerMachine } from "../../fixtures/machines.ts";
import { Machine } from "../../engine/guest/machine.ts";
import { caseNeeds, type MigrationCase } from "../families/mod.ts";
import { chooseMachine, createQemuWorld, type QemuSetup } from "./qemu.ts";
import { fakeProbe100, fakeProbe72 } from "./qemu_test_util.ts";
import {
  createEngineToQemuWorld,
  createQemuToEngineWorld,
  engineToQemuCannotRun,
  qemuToEngineCannotRun,
} from "./mixed.ts";
import { engineWorld } from "./engine.ts";

function byName(name: string): MigrationCase {
  const c = ALL_CASES.find((c) => c.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

const V100: QemuSetup = {
  src: fakeProbe100(),
  dst: fakeProbe100(),
  accel: ["tcg"],
  machine: chooseMachine(fakeProbe100(), fakeProbe100()),
};

function cannot(name: string, setup: QemuSetup = V100): string | null {
  const c = byName(name);
  return engineToQemuCannotRun(c, caseNeeds(c), setup);
}

Deno.test("engine-to-qemu: the model's stream into QEMU's loader, faults the model's source makes included", () => {
  for (
    const name of [
      "/migration/precopy/unix/plain",
      "/migration/multifd/tcp/channels/plain/none",
      "/migration/multifd/tcp/plain/zstd",
      "/migration/precopy/unix/xbzrle",
      // Faults only the model's source writes reach QEMU's loader here (on QEMU alone they cannot exist).
      "/migration/bad_stream/unknown_section",
      "/migration/multifd/bad/compression-flag",
      // The model's TLS client against QEMU's server, a refusal on either end included.
      "/migration/multifd/tcp/tls/psk/match",
      "/migration/precopy/tcp/tls/x509/hostile-client",
    ]
  ) assert.equal(cannot(name), null, name);
});

Deno.test("engine-to-qemu: what needs the guest to run on QEMU, or a destination hook, says why", () => {
  assert.match(cannot("/migration/colo/plain/primary_failover")!, /^COLO between the model and QEMU/);
  assert.match(cannot("/migration/postcopy/plain")!, /^postcopy runs the guest on the destination/);
  assert.match(cannot("/migration/multifd/bad/missing-channel")!, /waits for every multifd channel/);
  assert.match(cannot("/migration/cross-version/older-source")!, /^older releases of the model's devices/);
  // What the destination's binary lacks is named as the QEMU world names it.
  const v72: QemuSetup = {
    ...V100,
    dst: fakeProbe72(),
    machine: chooseMachine(fakeProbe72(), fakeProbe72()),
  };
  assert.match(cannot("/migration/precopy/file", v72)!, /needs the file: migration transport/);
  // The model's source plays a QEMU of the destination's version: a source parameter 7.2 lacks (multifd
  // zero pages, which 7.2's loader drops) is not asked of it (found: 484 pages differed).
  assert.equal(cannot("/migration/multifd/tcp/zero-churn/multifd"), null);
  assert.match(cannot("/migration/multifd/tcp/zero-churn/multifd", v72)!, /zero-page-detection/);
  // What a newer source sends the old way for an old machine type (legacy zero pages) and QMP-only
  // arguments stay.
  assert.equal(cannot("/migration/multifd/unix/zlib/zero-page/legacy", v72), null);
  assert.equal(cannot("/migration/multifd/tcp/channels/plain/none", v72), null);
  // Every skip gives a reason; none is empty.
  for (const c of ALL_CASES) {
    const r = engineToQemuCannotRun(c, caseNeeds(c), V100);
    if (r !== null) assert.ok(r.length > 20, c.name);
  }
});

Deno.test("engine-to-qemu: QEMU's destination bugs are expected, its source's are not", async () => {
  const qemu = createQemuWorld({ binary: () => "/fake", probe: () => Promise.resolve(fakeProbe100()) });
  await qemu.prepare!();
  const world = createEngineToQemuWorld(engineWorld, qemu);
  const bug = (name: string) => world.knownBug!(byName(name), caseNeeds(byName(name)))?.id ?? null;
  assert.equal(bug("/migration/multifd/bad/channel-id"), "qemu-multifd-channel-id-off-by-one");
  assert.equal(bug("/migration/multifd/file/mapped-ram/ignore-shared"), "qemu-mapped-ram-ignore-shared-read");
  // The source's write bug of the same case is QEMU's source's: the model's source does not have it.
  assert.notEqual(
    bug("/migration/multifd/file/mapped-ram/ignore-shared/shmem"),
    "qemu-mapped-ram-ignore-shared-write",
  );
  // A plain case meets only the intermittent abort at exit, which either side of 10.0 shows.
  assert.equal(bug("/migration/precopy/unix/plain"), "qemu-exit-abort-after-migration");
  // A 7.2 destination's suspended-runstate bug shows only when its guest runs, which this pair never does.
  const qemu72 = createQemuWorld({ binary: () => "/fake", probe: () => Promise.resolve(fakeProbe72()) });
  await qemu72.prepare!();
  const world72 = createEngineToQemuWorld(engineWorld, qemu72);
  const c = byName("/migration/precopy/unix/suspend/live");
  assert.equal(world72.knownBug!(c, caseNeeds(c)), null);
  // A 7.2 source's: where it shows on the source itself, expected; where only on a running target, not.
  const q2e = createQemuToEngineWorld(engineWorld, qemu72);
  const bug72 = (name: string) => q2e.knownBug!(byName(name), caseNeeds(byName(name)))?.id ?? null;
  assert.equal(bug72("/migration/precopy/unix/suspend/source-cont"), "qemu-suspended-runstate-lost");
  assert.equal(bug72("/migration/precopy/unix/suspend/live"), null);
});

Deno.test("engine-to-qemu: the model migrates as QEMU's machine: its type, one pc.ram, QEMU's devices only", () => {
  const f = machineFixture(qemuPeerMachine("pc-i440fx-10.0", 150 << 20));
  assert.equal(f.type, "pc-i440fx-10.0");
  assert.deepEqual(f.blocks, [{ idstr: "pc.ram", size: 150 << 20 }]);
  assert.throws(() => machineFixture("qemu:pc:12345"), /whole pages/);
  const m = new Machine({
    fixture: f,
    workload: { kind: "a-b" },
    initialState: "prelaunch",
    emit: () => {},
    onGuestError: () => {},
    createVcpu: () => ({
      running: false,
      cont() {},
      stop: () => Promise.resolve(),
      setThrottle() {},
      terminate() {},
    }),
  });
  assert.deepEqual(m.devices.map((d) => d.idstr), ["serial", "globalstate"]);
  // QEMU's serial has no transmit subsection: the model's stays home.
  m.serial.transmit("A");
  const tx = m.serial.vmsd.subsections![0];
  assert.equal(tx.needed!(m.serial.state), false);
});

Deno.test("qemu-to-engine: QEMU's stream into the model's loader; what needs QEMU's source hooks says why", async () => {
  const can = (name: string) => qemuToEngineCannotRun(byName(name), caseNeeds(byName(name)), V100);
  for (
    const name of [
      "/migration/precopy/unix/plain",
      "/migration/multifd/tcp/plain/zstd",
      "/migration/precopy/tcp/tls/x509/hostile-client",
      // The fault goes on QEMU's stream through the wire proxy; the model's destination must refuse it.
      "/migration/bad_stream/magic",
      // A fault the model's destination makes itself.
      "/migration/multifd/tcp/sync-barrier/slow-channel",
    ]
  ) assert.equal(can(name), null, name);
  assert.match(can("/migration/bad_stream/unknown_section")!, /only the model's source writes it/);
  assert.match(can("/migration/postcopy/plain")!, /^postcopy runs the guest on the destination/);
  assert.match(can("/migration/colo/plain/primary_failover")!, /^COLO between QEMU and the model/);
  // QEMU's source bugs are expected; its destination's are not (the destination is the model).
  const qemu = createQemuWorld({ binary: () => "/fake", probe: () => Promise.resolve(fakeProbe100()) });
  await qemu.prepare!();
  const world = createQemuToEngineWorld(engineWorld, qemu);
  const bug = (name: string) => world.knownBug!(byName(name), caseNeeds(byName(name)))?.id ?? null;
  assert.notEqual(bug("/migration/multifd/bad/channel-id"), "qemu-multifd-channel-id-off-by-one");
  assert.equal(bug("/migration/precopy/unix/xbzrle/zero-churn/pc-odd"), "qemu-xbzrle-tcg-pages-lost-10.0");
});
