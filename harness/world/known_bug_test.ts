/** The rule of known bugs: xfail on the symptom, plain failure otherwise, xpass or a note on a pass. */
import assert from "node:assert/strict";
import { knownBugVerdict } from "./known_bug.ts";
import type { KnownBug } from "./world.ts";

const bug: KnownBug = { id: "b", summary: "it aborts", versions: "7.2", symptom: /status 134/ };

Deno.test("known bug: the symptom is xfail, another failure stays a failure", () => {
  assert.equal(knownBugVerdict(bug, new Error("source exited with status 134")).kind, "xfail");
  assert.equal(knownBugVerdict(bug, new Error("RAM differs at page 3")).kind, "plain");
  assert.equal(knownBugVerdict({ ...bug, intermittent: true }, new Error("status 134")).kind, "xfail");
  assert.equal(knownBugVerdict(null, new Error("status 134")).kind, "plain");
});

Deno.test("known bug: a pass is XPASS for a bug that always strikes, a pass with a note when intermittent", () => {
  const always = knownBugVerdict(bug, undefined);
  assert.equal(always.kind, "xpass");
  assert.match(always.kind === "xpass" ? always.message : "", /XPASS: known bug b \(7\.2\) did not happen/);
  const sometimes = knownBugVerdict({ ...bug, intermittent: true }, undefined);
  assert.equal(sometimes.kind, "pass-with-note");
  assert.match(
    sometimes.kind === "pass-with-note" ? sometimes.note : "",
    /intermittent bug b .* did not strike/,
  );
  assert.equal(knownBugVerdict(null, undefined).kind, "plain");
});
