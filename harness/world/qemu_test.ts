/**
 * What the QEMU world derives from probes: which cases run, why the others are skipped (naming what is
 * missing and the probed binary), the machine type of a cross-version pair, and the known bugs by
 * version. Fake probes shaped like 7.2 and 10.0; qemu_probe_test.ts probes the real binaries.
 */
import assert from "node:assert/strict";
import { ALL_CASES } from "../../cases/all.ts";
import { type AnyCase } from "../case.ts";
import { cannotRunIn, caseNeeds, knownBugIn, type MigrationCase } from "../families/mod.ts";
import { fakeProbe100, fakeProbe72 } from "./qemu_test_util.ts";
import {
  accelsFor,
  chooseMachine,
  createQemuWorld,
  effectiveAccel,
  qemuCannotRun,
  type QemuSetup,
  staysUpAfterFailedLoad,
} from "./qemu.ts";
import { inRange, knownQemuBug, QEMU_BUGS } from "./qemu_bugs.ts";
import type { QemuProbe } from "./qemu_probe.ts";
import { QEMU_UNCOMPARED_FIELDS } from "./qemu_devices.ts";
import { compareDeviceState, withoutFields } from "../check/device_equal.ts";

function byName(name: string): MigrationCase {
  const c = ALL_CASES.find((c) => c.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

/** The QEMU world's verdict with the case's needs as its family declares them. */
function cannot(c: AnyCase, setup: QemuSetup | null): string | null {
  return qemuCannotRun(c, caseNeeds(c), setup);
}

function setupOf(src: QemuProbe, dst: QemuProbe = src, accel = ["tcg"]): QemuSetup {
  return { src, dst, accel, machine: chooseMachine(src, dst) };
}

const V72 = setupOf(fakeProbe72());
const V100 = setupOf(fakeProbe100());

Deno.test("qemu world: what 7.2 lacks is skipped, naming the feature and the probed version", () => {
  const reason = (name: string) => cannot(byName(name), V72);
  assert.equal(reason("/migration/precopy/unix/plain"), null);
  assert.equal(reason("/migration/multifd/tcp/uri/plain/none"), null);
  assert.match(
    reason("/migration/precopy/file")!,
    /^needs the file: migration transport \(upstream QEMU 8\.2 on\): QEMU 7\.2\.22 \(\/usr\/bin\/qemu-system-x86_64\) has no file: transport$/,
  );
  assert.match(reason("/migration/analyze-script")!, /file: migration transport.*QEMU 7\.2\.22/);
  assert.match(
    reason("/migration/multifd/tcp/channels/plain/none")!,
    /needs the 'channels' argument of migrate.*QEMU 7\.2\.22 .* has no 'channels' argument/,
  );
  assert.match(
    reason("/migration/multifd/unix/none/zero-page/legacy")!,
    /needs migration parameter 'zero-page-detection' \(upstream QEMU 9\.0 on\): QEMU 7\.2\.22/,
  );
  assert.match(
    reason("/migration/multifd/tcp/plain/zlib")!,
    /needs multifd-zlib-level 2 applied: QEMU 7\.2\.22 .* accepts multifd-zlib-level but does not apply it \(set to 7, it reads back 1\)/,
  );
});

Deno.test("qemu world: 10.0 runs what 7.2 cannot; model-only features stay skipped on both", () => {
  for (
    const name of [
      "/migration/precopy/file",
      "/migration/analyze-script",
      "/migration/multifd/tcp/channels/plain/none",
      "/migration/multifd/unix/none/zero-page/legacy",
      "/migration/multifd/tcp/plain/zlib",
      "/migration/multifd/tcp/plain/zstd",
      "/migration/multifd/bad/packet-magic",
      "/migration/multifd/tcp/sync-barrier/slow-channel",
      // The ack held on the wire (the return path's RP_SWITCHOVER_ACK), not at a breakpoint.
      "/migration/precopy/tcp/plain/switchover-ack/held",
      // A recovery's handshake held on its new channel before the step's message.
      "/migration/postcopy/recovery/fail-at/resume-ack",
    ]
  ) assert.equal(cannot(byName(name), V100), null, name);
  for (const setup of [V72, V100]) {
    // Upstream's COLO cases run, and the primary's death at a moment (held on the wire); what needs a
    // side held where the wire has no place is the model's.
    assert.equal(cannot(byName("/migration/colo/plain/primary_failover"), setup), null);
    assert.equal(cannot(byName("/migration/colo/multifd/zstd/secondary_failover"), setup), null);
    assert.equal(cannot(byName("/migration/colo/plain/kill-primary/apply-middle"), setup), null);
    assert.match(
      cannot(byName("/migration/colo/plain/secondary_failover_during_apply"), setup)!,
      /a failover during the apply needs the side held/,
    );
    // A fault every stream has a place for goes on the wire; one of the model's own records does not.
    for (const wire of ["/migration/bad_stream/magic", "/migration/bad_stream/corrupted/ram-flags"]) {
      assert.equal(cannot(byName(wire), setup), null, wire);
    }
    assert.match(
      cannot(byName("/migration/bad_stream/unknown_section"), setup)!,
      /^a section for a device the destination does not have: only the model's source writes it/,
    );
    assert.match(cannot(byName("/migration/multifd/bad/missing-channel"), setup)!, /one channel fewer/);
    // Guest programs and machine fixtures run; a program the fixture's RAM cannot hold says so.
    assert.equal(cannot(byName("/migration/precopy/unix/random/pc-odd"), setup), null);
    assert.match(
      cannot(byName("/migration/regressions/colo-multifd-zero-pages-recorded"), setup)!,
      /^the zero-churn guest program cannot run here: zero-churn over 2048 pages needs more than 1802/,
    );
    assert.match(
      cannot(byName("/migration/cross-version/older-source"), setup)!,
      /^older releases of the devices are the model's \(x-test-release\); against QEMU, QTEST_QEMU_BINARY_SRC/,
    );
  }
  // No reason on any QEMU may name a version the probe did not give.
  for (const c of ALL_CASES) {
    const r = cannot(c, V100);
    if (r) assert.doesNotMatch(r, /7\.2/, c.name);
  }
});

Deno.test("qemu world: a missing compression method or accelerator is named", () => {
  const noZstd = { ...fakeProbe100(), multifdCompressions: ["none", "zlib"] };
  assert.match(
    cannot(byName("/migration/multifd/tcp/plain/zstd"), setupOf(noZstd))!,
    /needs multifd-compression 'zstd' \(a build option\): QEMU 10\.0\.2 .* was built without zstd/,
  );
  const tcgOnly = { ...fakeProbe72(), accels: ["tcg"] };
  assert.match(
    cannot(byName("/migration/precopy/unix/plain"), setupOf(tcgOnly, tcgOnly, ["kvm"]))!,
    /none of the accelerators asked for \(MIGTEST_QEMU_ACCEL=kvm\) works with QEMU 7\.2\.22 .*: it starts with tcg/,
  );
});

Deno.test("qemu world: a cross-version pair names the side; the machine is the newest pc-i440fx both know", () => {
  const [v72, v100] = [fakeProbe72(), fakeProbe100()];
  assert.equal(chooseMachine(v72, v72), "pc");
  assert.equal(chooseMachine(v72, v100), "pc-i440fx-7.2");
  assert.equal(chooseMachine(v100, v72), "pc-i440fx-7.2");
  assert.equal(chooseMachine(v100, fakeProbe100("/other/qemu")), "pc-i440fx-10.0");
  assert.deepEqual(chooseMachine(v72, { ...v100, machines: [{ name: "pc-i440fx-9.2" }] }), {
    none: `QEMU 7.2.22 (/usr/bin/qemu-system-x86_64) and QEMU 10.0.2 (${v100.binary}) have no pc-i440fx ` +
      "machine type in common",
  });
  assert.equal(chooseMachine(v72, v100, "pc-i440fx-7.1"), "pc-i440fx-7.1");
  assert.match(
    JSON.stringify(chooseMachine(v72, v100, "pc-i440fx-10.0")),
    /QEMU 7\.2\.22 .* has no machine type/,
  );
  const newToOld = setupOf(v100, v72);
  assert.equal(cannot(byName("/migration/precopy/unix/plain"), newToOld), null);
  // The source (10.0) has file:, the destination (7.2) has not: the reason names the destination.
  assert.match(
    cannot(byName("/migration/precopy/file"), newToOld)!,
    /the destination's QEMU 7\.2\.22 \(\/usr\/bin\/qemu-system-x86_64\) has no file: transport/,
  );
  const noCommon = { ...newToOld, machine: chooseMachine(v72, { ...v100, machines: [] }) };
  assert.match(
    cannot(byName("/migration/precopy/unix/plain"), noCommon)!,
    /no pc-i440fx machine type/,
  );
});

Deno.test("qemu world: unprepared, only what needs no probe can run, and it says it was not probed", () => {
  assert.equal(cannot(byName("/migration/precopy/unix/plain"), null), null);
  assert.match(
    cannot(byName("/migration/precopy/file"), null)!,
    /needs the file: migration transport.*: the QEMU binaries were not probed/,
  );
});

Deno.test("qemu bugs: by case and by the probed version of the side that shows them", () => {
  const uuid = byName("/migration/multifd/bad/uuid");
  const flag = byName("/migration/multifd/bad/compression-flag");
  const [v72, v100] = [fakeProbe72(), fakeProbe100()];
  const bug = knownQemuBug(uuid, { src: v72, dst: v72 });
  assert.equal(bug?.id, "qemu-multifd-refused-channels-abort");
  assert.equal(bug?.intermittent, true);
  assert.match(bug!.versions, /^QEMU 7\.2; the source is 7\.2\.22 \(\/usr\/bin\/qemu-system-x86_64\)$/);
  assert.ok(bug!.symptom.test("source exited with status 134"));
  // A 10.0 source has only the abort at exit, which any case may show.
  const EXIT = "qemu-exit-abort-after-migration";
  assert.equal(knownQemuBug(uuid, { src: v100, dst: v100 })?.id, EXIT);
  assert.equal(knownQemuBug(uuid, { src: v100, dst: v72 })?.id, EXIT, "the uuid abort is a 7.2 source's");
  assert.equal(knownQemuBug(flag, { src: v100, dst: v72 })?.id, "qemu-multifd-compression-flag-silent");
  // 7.2 → 10.0: the 10.0 destination stays active (a cross-version bug); 10.0 → 10.0 has no bug.
  const cross = knownQemuBug(flag, { src: v72, dst: v100 });
  assert.equal(cross?.id, "qemu-multifd-channel-error-incoming-stays-active");
  assert.match(
    cross!.versions,
    /^QEMU 10\.0 with a 7\.2 peer; the destination is 10\.0\.2 \(.*\), the source 7\.2\.22$/,
  );
  assert.equal(knownQemuBug(flag, { src: v100, dst: v100 })?.id, EXIT);
  for (const b of QEMU_BUGS) {
    const cases = b.cases;
    if (cases instanceof RegExp) assert.ok(ALL_CASES.some((c) => cases.test(c.name)), `${b.id} matches none`);
    else for (const name of cases) byName(name);
  }
  // Any case on a 10.0 source: the abort at exit, intermittent; its symptom is the abort, nothing else.
  const exit = knownQemuBug(byName("/migration/multifd/tcp/channels/2"), { src: v100, dst: v100 });
  assert.equal(exit?.id, "qemu-exit-abort-after-migration");
  assert.equal(exit?.intermittent, true);
  assert.match(
    "source exited with status 134, SIGABRT: qemu-system-x86_64: util/qemu-thread-posix.c:92: " +
      "qemu_mutex_lock_impl: Assertion `mutex->initialized' failed.",
    exit!.symptom,
  );
  assert.doesNotMatch("guest RAM differs in 3 page(s)", exit!.symptom);
  // Its other face: the freed state read, SIGSEGV, nothing on stderr; a SIGSEGV that says more is another bug.
  assert.match("target exited with status 139, SIGSEGV", exit!.symptom);
  assert.doesNotMatch("target exited with status 139, SIGSEGV: vhost: bad descriptor", exit!.symptom);
  // A 10.0 destination of a 7.2 source aborts the same way at exit (.ci/run, 2026-12-06).
  const plain = byName("/migration/precopy/unix/plain");
  const dstExit = knownQemuBug(plain, { src: v72, dst: v100 });
  assert.equal(dstExit?.id, EXIT);
  assert.match(dstExit!.versions, /the destination is 10\.0\.2/);
  assert.match(
    "target exited with status 134, SIGABRT: qemu-system-x86_64: util/qemu-thread-posix.c:92: " +
      "qemu_mutex_lock_impl: Assertion `mutex->initialized' failed.",
    dstExit!.symptom,
  );
  assert.equal(knownQemuBug(plain, { src: v72, dst: v72 }), null);
});

Deno.test("qemu bugs: COLO's by version, accelerator and machine", () => {
  const plain = byName("/migration/colo/plain/secondary_failover");
  const multifd = byName("/migration/colo/multifd/primary_failover_checkpoint");
  const [v72, v100] = [fakeProbe72(), fakeProbe100()];
  const v101 = { ...v100, version: { major: 10, minor: 1, micro: 3 } };
  const v102 = { ...v100, version: { major: 10, minor: 2, micro: 0 } };
  const pc = { accel: "kvm", machine: "pc" };
  assert.equal(knownQemuBug(plain, { src: v72, dst: v72, ...pc }), null, "7.2 on pc under KVM works");
  assert.equal(knownQemuBug(multifd, { src: v72, dst: v72, ...pc })?.id, "qemu-colo-multifd-device-load");
  // 10.0 up to, not including, 10.2: the source is the one that completes instead of entering COLO.
  for (const v of [v100, v101]) {
    const bug = knownQemuBug(plain, { src: v, dst: v72, ...pc });
    assert.equal(bug?.id, "qemu-colo-precopy-completes");
    assert.ok(bug!.symptom.test("source reached status 'completed' while waiting for 'colo'"));
  }
  assert.equal(knownQemuBug(plain, { src: v102, dst: v102, ...pc }), null);
  // 7.2 -> 10.0 has no COLO bug; only the 10.0 destination's intermittent abort at exit.
  assert.equal(knownQemuBug(plain, { src: v72, dst: v100, ...pc })?.id, "qemu-exit-abort-after-migration");
  const tcg = knownQemuBug(plain, { src: v72, dst: v72, accel: "tcg", machine: "pc" });
  assert.equal(tcg?.id, "qemu-colo-tcg-bql-deadlock");
  assert.match(tcg!.versions, /^QEMU 7\.2 under tcg; the source is 7\.2\.22/);
  const resumeTimeout = "timed out after 8000 ms waiting for the primary's RESUME after checkpoint 1; " +
    "last seen: 12 events, the last: #11 STOP {}";
  assert.ok(tcg!.symptom.test(
    resumeTimeout + "\n" +
      "  source: (query-migrate failed: source: timed out after 2000ms waiting for reply to query-migrate)",
  ));
  assert.ok(!tcg!.symptom.test(resumeTimeout));
  // The deadlock between two of the flow's queries of the primary (.ci/run, multifd/zlib).
  assert.ok(tcg!.symptom.test("source: timed out after 5000ms waiting for reply to query-colo-status"));
  assert.ok(!tcg!.symptom.test("target: timed out after 5000ms waiting for reply to query-colo-status"));
  const q35 = knownQemuBug(plain, { src: v72, dst: v72, accel: "kvm", machine: "pc-q35-7.2" });
  assert.equal(q35?.id, "qemu-colo-q35-device-load-crash");
  assert.ok(q35!.symptom.test(
    "target exited (status 134: qemu-system-x86_64: ../softmmu/memory.c:2538: " +
      "memory_region_add_subregion_common: Assertion `!subregion->container' failed.) before checkpoint 1",
  ));
  const mf = knownQemuBug(multifd, { src: v72, dst: v72, ...pc })!;
  assert.ok(mf.symptom.test(
    "target left COLO with an error (qemu-system-x86_64: error while loading state for instance 0x0 of " +
      "device 'kvm-tpr-opt' | qemu-system-x86_64: Failed to load device state: -1) before checkpoint 1",
  ));
});

Deno.test("qemu world: COLO prefers KVM unless MIGTEST_QEMU_ACCEL says otherwise; other cases keep theirs", () => {
  const colo = byName("/migration/colo/plain/primary_failover");
  const plain = byName("/migration/precopy/unix/plain");
  const setup = { ...V72, coloAccel: ["kvm", "tcg"] };
  assert.deepEqual(accelsFor(caseNeeds(colo), setup), ["kvm", "tcg"]);
  assert.deepEqual(accelsFor(caseNeeds(plain), setup), ["tcg"]);
  assert.equal(effectiveAccel(accelsFor(caseNeeds(colo), setup), setup.src), "kvm");
  assert.equal(effectiveAccel(["kvm", "tcg"], { ...setup.src, accels: ["tcg"] }), "tcg");
  assert.deepEqual(accelsFor(caseNeeds(colo), V72), ["tcg"], "without a COLO list, the general one");
});

Deno.test("qemu bugs: version ranges are inclusive; a bare MAJOR.MINOR covers its micro releases", () => {
  const r = { from: "7.2", through: "7.2" };
  assert.ok(inRange({ major: 7, minor: 2, micro: 0 }, r));
  assert.ok(inRange({ major: 7, minor: 2, micro: 22 }, r));
  assert.ok(!inRange({ major: 7, minor: 1, micro: 9 }, r));
  assert.ok(!inRange({ major: 8, minor: 0, micro: 0 }, r));
  assert.ok(inRange({ major: 9, minor: 2, micro: 0 }, { from: "8.0", through: "9.2.0" }));
  assert.ok(!inRange({ major: 9, minor: 2, micro: 1 }, { from: "8.0", through: "9.2.0" }));
});

Deno.test("qemu world: prepare probes both binaries; without one it says which side has none", async () => {
  const probed: string[] = [];
  const world = createQemuWorld({
    binary: (side) => side === "src" ? "/a/qemu" : "/b/qemu",
    probe: (b) => {
      probed.push(b);
      return Promise.resolve(b === "/a/qemu" ? fakeProbe72(b) : fakeProbe100(b));
    },
  });
  assert.match(cannotRunIn(world, byName("/migration/precopy/file"))!, /not probed/);
  await world.prepare!();
  assert.deepEqual(probed.sort(), ["/a/qemu", "/b/qemu"]);
  assert.equal(world.setup?.machine, "pc-i440fx-7.2");
  assert.match(
    cannotRunIn(world, byName("/migration/precopy/file"))!,
    /the source's QEMU 7\.2\.22 \(\/a\/qemu\)/,
  );
  assert.equal(
    knownBugIn(world, byName("/migration/multifd/bad/uuid"))?.id,
    "qemu-multifd-refused-channels-abort",
  );
  const none = createQemuWorld({
    binary: (side) => side === "src" ? "/a/qemu" : undefined,
    probe: () => Promise.reject(),
  });
  await assert.rejects(() => none.prepare!(), /no QEMU binary for the destination/);
});

Deno.test("qemu world: a destination stays up after a failed load only where migrate-incoming has exit-on-error", () => {
  assert.equal(staysUpAfterFailedLoad(fakeProbe72()), false);
  assert.equal(staysUpAfterFailedLoad(fakeProbe100()), true);
});

Deno.test("qemu world: the RTC's host-clock fields are left out of the device comparison, the rest is compared", () => {
  // Shaped like two 10.0.2 saves a microsecond of host time apart (precopy/file/offset, seed 2542903414).
  const rtc = (alarm: string, regB: string) => ({
    "mc146818rtc/0": { next_alarm_time: alarm, update_timer: alarm, cmos_data: `${"00".repeat(11)}${regB}` },
  });
  const src = withoutFields(rtc("1796169600714823000", "02"), QEMU_UNCOMPARED_FIELDS);
  const dst = withoutFields(rtc("1796169600714822000", "02"), QEMU_UNCOMPARED_FIELDS);
  assert.deepEqual(compareDeviceState(src.state, dst.state, ["source", "target"]), []);
  assert.ok(src.skipped.some((s) => s.startsWith("mc146818rtc/0 next_alarm_time: ")));
  // Register B (0x0b) is the guest's setting, not the clock: a difference there still fails.
  const other = withoutFields(rtc("1796169600714822000", "06"), QEMU_UNCOMPARED_FIELDS);
  assert.deepEqual(compareDeviceState(src.state, other.state, ["source", "target"]), [
    'mc146818rtc/0.cmos_data: source "----------------------02", target "----------------------06"',
  ]);
});

Deno.test("qemu world: a status a version lacks and capabilities it refuses together are skipped by probe", () => {
  const reconnect = byName("/migration/postcopy/recovery/double-failures/reconnect");
  assert.match(cannot(reconnect, V72) ?? "", /migration status 'postcopy-recover-setup'.*7\.2\.22.*has no/);
  assert.equal(cannot(reconnect, V100), null);
  const multifdPostcopy = byName("/migration/multifd+postcopy/plain");
  assert.equal(cannot(multifdPostcopy, V72), null);
  assert.match(
    cannot(multifdPostcopy, V100) ?? "",
    /capabilities multifd with postcopy-ram.*refuses multifd with postcopy-ram: Postcopy is not yet compatible/,
  );
  // postcopy-ram on from the case's own caps (not the family's) counts as well.
  assert.match(cannot(byName("/migration/multifd+postcopy/tcp/plain/cancel"), V100) ?? "", /refuses multifd/);
  assert.equal(cannot(byName("/migration/postcopy/plain"), V100), null);
});

Deno.test("qemu world: the 7.2 multifd+preempt bug's symptom, a hang or the destination gone", () => {
  const c = byName("/migration/multifd+postcopy/preempt/plain");
  const bug = knownQemuBug(c, { src: fakeProbe72(), dst: fakeProbe72(), accel: "tcg", machine: "pc" });
  assert.equal(bug?.id, "qemu-multifd-postcopy-preempt-hang");
  assert.ok(bug!.symptom.test("timed out after 20000 ms waiting for the dirty-memory marker on the target"));
  // .ci/run 2026-12-06: the destination went after the switch; its stderr names the confusion.
  assert.ok(bug!.symptom.test(
    "connection closed by target while waiting for event RESUME on target (since #2) (end of stream)\n" +
      "  target stderr: qemu-system-x86_64: socket_accept_incoming_migration: Extra incoming migration " +
      "connection; ignoring",
  ));
  assert.ok(!bug!.symptom.test("connection closed by target while waiting for event RESUME on target"));
});
