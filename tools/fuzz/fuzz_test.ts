import assert from "node:assert/strict";
import fc from "fast-check";
import { anchorsOf, type FuzzInput, inputArb, parseInput } from "./plan.ts";
import { FUZZ_TARGETS, targetNamed } from "./targets.ts";
import { runInput } from "./run.ts";
import { caseProblems } from "../../harness/families/mod.ts";
import { impreciseError } from "../../harness/expect.ts";
import { engineWorld } from "../../harness/world/engine.ts";

Deno.test("every fuzz target's case is one the case table accepts", () => {
  for (const t of FUZZ_TARGETS) assert.deepEqual(caseProblems(t.case), [], t.name);
});

Deno.test("an error is precise unless it is empty or the model's own exception", () => {
  assert.equal(impreciseError("Can't find block pc.rom (at stream offset 88)"), null);
  assert.equal(
    impreciseError("multifd channel 1: received packet magic 1 and expected magic 11223344"),
    null,
  );
  assert.match(impreciseError("") ?? "", /empty/);
  assert.match(
    impreciseError("load of migration failed: Cannot read properties of undefined") ?? "",
    /internal/,
  );
  assert.match(impreciseError("RangeError: Offset is outside the bounds of the DataView") ?? "", /internal/);
  assert.match(impreciseError("length NaN") ?? "", /internal/);
});

Deno.test("anchors: multifd packets by their magic, return-path messages by their lengths", async () => {
  const mf = new Uint8Array(64);
  new DataView(mf.buffer).setUint32(10, 0x11223344);
  new DataView(mf.buffer).setUint32(40, 0x11223344);
  assert.deepEqual(await anchorsOf("multifd", mf), [0, 10, 40]);
  // SHUT (type 1, 4 bytes), PONG (type 3, 4 bytes), then two bytes of a message cut short.
  const rp = Uint8Array.from([0, 1, 0, 4, 0, 0, 0, 0, 0, 3, 0, 4, 1, 2, 3, 4, 0, 7]);
  assert.deepEqual(await anchorsOf("return-path", rp), [0, 8]);
});

Deno.test("inputs are a function of the seed and replay from their JSON", () => {
  const t = targetNamed("main/precopy")!;
  const arb = inputArb(t, { anchors: [0, 8, 61], length: 4096 });
  const a = fc.sample(arb, { seed: 5, numRuns: 20 });
  assert.equal(JSON.stringify(fc.sample(arb, { seed: 5, numRuns: 20 })), JSON.stringify(a));
  for (const input of a) {
    assert.equal(JSON.stringify(parseInput(JSON.stringify(input))), JSON.stringify(input));
  }
  assert.throws(() => parseInput('{"target":"nope","seed":1}'), /target is one of/);
  assert.throws(
    () =>
      parseInput('{"target":"main/precopy","seed":1,"mutation":{"connection":0,"direction":"x","edits":[]}}'),
    /direction/,
  );
  const colo = fc.sample(inputArb(targetNamed("colo")!, { anchors: [0], length: 1 }), {
    seed: 1,
    numRuns: 5,
  });
  assert.ok(colo.every((i) => i.mutation.from?.checkpoint === 2), "COLO inputs count from checkpoint 2");
});

Deno.test("a corrupted magic is refused precisely: the input survives, and says how", async () => {
  const input: FuzzInput = {
    target: "main/precopy",
    seed: 1,
    mutation: { connection: 0, direction: "forward", edits: [{ op: "xor", at: 1, mask: 0x20 }] },
  };
  const o = await runInput(input);
  assert.equal(o.ok, true, o.what);
  assert.match(o.what, /^source failed, target failed \(.*Not a migration stream/);
  assert.deepEqual(o.mutator.applied, [1]);
});

Deno.test("live: the same edit through the wire proxy between two engine processes", async () => {
  const input: FuzzInput = {
    target: "main/precopy",
    seed: 1,
    mutation: { connection: 0, direction: "forward", edits: [{ op: "xor", at: 1, mask: 0x20 }] },
  };
  const o = await runInput(input, { world: engineWorld });
  assert.equal(o.ok, true, o.what);
  assert.match(o.what, /^source failed, target failed \(.*Not a migration stream/);
  assert.deepEqual(o.mutator.applied, [1]);
});
