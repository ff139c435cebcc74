/** Swarm plans: the variant only touches what a case has and expects to succeed; --replay checks knobs. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ALL_CASES } from "../../cases/all.ts";
import type { MigrationCase } from "../../harness/families/mod.ts";
import { caseProblems } from "../../harness/families/mod.ts";
import { applyVariant, parsePlan, planArb, planText, withFault } from "./plan.ts";

function named(name: string): MigrationCase {
  const c = ALL_CASES.find((x) => x.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

Deno.test("swarm plan: multifd features go to multifd cases only, both sides alike", () => {
  const v = { channels: 8, compression: "zstd", zeroPageDetection: "none", xbzrle: true } as const;
  const m = applyVariant(named("/migration/multifd/tcp/uri/plain/none"), v);
  assert.deepEqual(m.applied, { channels: 8, compression: "zstd", zeroPageDetection: "none" });
  assert.equal(m.case.srcParams?.["multifd-channels"], 8);
  assert.equal(m.case.dstParams?.["multifd-compression"], "zstd");
  const p = applyVariant(named("/migration/precopy/unix/plain"), v);
  assert.deepEqual(p.applied, { zeroPageDetection: "none", xbzrle: true });
  assert.ok(p.case.caps?.includes("xbzrle"));
});

Deno.test("swarm plan: a case that expects an error is run as written", () => {
  const bad = named("/migration/multifd/bad/uuid");
  const r = applyVariant(bad, { channels: 2, zeroPageDetection: "legacy" });
  assert.equal(r.case, bad);
  assert.deepEqual(r.applied, {});
});

Deno.test("swarm plan: every generated variant of every case is a valid case", () => {
  fc.assert(
    fc.property(planArb(ALL_CASES.map((c) => c.name)), (plan) => {
      const { case: c } = applyVariant(named(plan.case), plan.variant);
      assert.deepEqual(caseProblems(c), []);
    }),
    { seed: 1, numRuns: 300 },
  );
});

Deno.test("swarm plan: a plan replays from its text; a knob the scheduler lacks is refused by name", () => {
  const [plan] = fc.sample(planArb(["/migration/precopy/unix/plain"]), { seed: 3, numRuns: 1 });
  assert.equal(planText(parsePlan(planText(plan))), planText(plan));
  const bad = JSON.parse(planText(plan));
  bad.knobs.maxChunk = 7;
  assert.throws(() => parsePlan(JSON.stringify(bad)), /knob maxChunk is 7, one of/);
  assert.throws(() => parsePlan("{"), /--replay: not JSON/);
});

Deno.test("swarm plan: a fault goes only where the case table takes a failure (found: suspend/source-cont)", () => {
  const fault = { connection: 0, afterBytes: 16 };
  // Its `cont` after the migration is for a completed one: the table refuses it with any other outcome.
  assert.equal(withFault(named("/migration/precopy/unix/suspend/source-cont"), fault).fault, undefined);
  const plain = withFault(named("/migration/precopy/unix/plain"), fault);
  assert.deepEqual(plain.fault, fault);
  assert.equal("expect" in plain.case ? plain.case.expect : undefined, "complete-or-fail");
});
