/**
 * The control-plane oracle: QEMU's answers by status, the race between a command and a status change,
 * which probes a case can take, and the replay form. That a disagreement fails a case (and a model that
 * answers wrongly is caught) is proven by the regression cases that guard the control-plane defects
 * (cases/regressions/defects_test.ts).
 */
import assert from "node:assert/strict";
import {
  answerAgrees,
  expectedAnswer,
  parseProbes,
  PROBE_KINDS,
  probeApplies,
  probesText,
  RUNNING_STATUSES,
} from "./control_plane.ts";
import { ALL_CASES } from "../cases/all.ts";

const byName = (name: string) => {
  const c = ALL_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
};

Deno.test("control plane: capabilities are refused exactly while a migration runs", () => {
  for (const s of ["setup", "active", "device", "colo", "postcopy-active", "cancelling"]) {
    assert.ok(RUNNING_STATUSES.has(s), s);
    assert.ok(answerAgrees("caps-same", [s], { error: "There's a migration process in progress" }), s);
    assert.ok(!answerAgrees("caps-same", [s], {}), `${s}: an answer must not pass`);
  }
  for (const s of ["none", "completed", "failed", "cancelled"]) {
    assert.ok(answerAgrees("caps-same", [s], {}), s);
    assert.ok(!answerAgrees("caps-same", [s], { error: "There's a migration process in progress" }), s);
  }
});

Deno.test("control plane: a command on its way while the status moves may get either status's answer", () => {
  // Sent in 'active', executed after 'completed': refused or taken are both right.
  assert.ok(answerAgrees("caps-same", ["active", "completed"], {}));
  assert.ok(
    answerAgrees("caps-same", ["active", "completed"], { error: "There's a migration process in progress" }),
  );
  // migrate-continue names the status it met.
  assert.ok(answerAgrees("continue", ["active"], { error: "Migration not in expected state: active" }));
  assert.ok(!answerAgrees("continue", ["active"], { error: "Migration not in expected state: device" }));
  assert.ok(
    answerAgrees("continue", ["active", "device"], { error: "Migration not in expected state: device" }),
  );
  assert.ok(!answerAgrees("continue", ["active"], {}), "continuing a migration that never paused");
});

Deno.test("control plane: every refusal is QEMU's words, and a query is always answered", () => {
  for (const kind of PROBE_KINDS) {
    const want = expectedAnswer(kind, "active");
    if (kind.startsWith("query-")) assert.ok("ok" in want, kind);
    else if (kind !== "caps-same") assert.ok("error" in want, kind);
  }
  assert.ok(
    answerAgrees("incoming-again", ["setup"], { error: "The incoming migration has already been started" }),
  );
  assert.ok(
    !answerAgrees("incoming-again", ["setup"], {
      error: "'-incoming' was not specified on the command line",
    }),
  );
  assert.ok(answerAgrees("lost-heartbeat", ["active"], { error: "VM is not in COLO mode" }));
  assert.ok(
    answerAgrees("bad-downtime", ["none"], {
      error: "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds",
    }),
  );
});

Deno.test("control plane: a probe that would act in the case is not taken", () => {
  const postcopy = byName("/migration/postcopy/plain");
  const colo = byName("/migration/colo/plain/secondary_failover");
  const plain = byName("/migration/precopy/unix/plain");
  assert.ok(!probeApplies({ atMs: 0, side: "src", kind: "start-postcopy" }, postcopy));
  assert.ok(!probeApplies({ atMs: 0, side: "dst", kind: "pause" }, postcopy));
  assert.ok(probeApplies({ atMs: 0, side: "dst", kind: "pause" }, plain));
  assert.ok(!probeApplies({ atMs: 0, side: "src", kind: "lost-heartbeat" }, colo));
  assert.ok(!probeApplies({ atMs: 0, side: "dst", kind: "caps-same" }, plain), "source only");
  assert.ok(!probeApplies({ atMs: 0, side: "src", kind: "incoming-again" }, plain), "destination only");
});

Deno.test("control plane: probes round-trip through their replay form; a bad one is named", () => {
  const probes = parseProbes("src:caps-same@50,dst:incoming-again@0,src:continue@12.5");
  assert.deepEqual(probes[2], { side: "src", kind: "continue", atMs: 12.5 });
  assert.deepEqual(parseProbes(probesText(probes)), probes);
  assert.deepEqual(parseProbes(""), []);
  assert.throws(() => parseProbes("src:reboot@5"), /a probe is SIDE:KIND@MS .* not 'src:reboot@5'/);
  assert.throws(() => parseProbes("both:pause@5"), /not 'both:pause@5'/);
});
