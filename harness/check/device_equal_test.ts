import assert from "node:assert/strict";
import { compareDeviceState } from "./device_equal.ts";

Deno.test("device_equal: names every differing field with both values", () => {
  const a = { "serial/0": { lsr: 96, tx: { n: 3 } }, "timer/0": { count: 10 } };
  const b = { "serial/0": { lsr: 96, tx: { n: 4 } }, "timer/0": { count: 10, extra: true } };
  assert.deepEqual(compareDeviceState(a, b, ["source", "target"]), [
    "serial/0.tx.n: source 3, target 4",
    "timer/0.extra: source undefined, target true",
  ]);
  assert.deepEqual(compareDeviceState(a, structuredClone(a), ["source", "target"]), []);
});
