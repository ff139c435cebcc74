import assert from "node:assert/strict";
import { compareDeviceState, withoutFields } from "./device_equal.ts";

Deno.test("device_equal: names every differing field with both values", () => {
  const a = { "serial/0": { lsr: 96, tx: { n: 3 } }, "timer/0": { count: 10 } };
  const b = { "serial/0": { lsr: 96, tx: { n: 4 } }, "timer/0": { count: 10, extra: true } };
  assert.deepEqual(compareDeviceState(a, b, ["source", "target"]), [
    "serial/0.tx.n: source 3, target 4",
    "timer/0.extra: source undefined, target true",
  ]);
  assert.deepEqual(compareDeviceState(a, structuredClone(a), ["source", "target"]), []);
});

Deno.test("withoutFields: named fields and bytes are left out and said; any other difference still shows", () => {
  const skip = [
    { device: /^rtc\//, field: /^cmos$/, bytes: [0], why: "host clock" },
    { device: /^rtc\//, field: /^timer$/, why: "armed at save" },
  ];
  const a = { "rtc/0": { cmos: "5501", timer: 1, sub: { x: 1 } } };
  const b = { "rtc/0": { cmos: "5601", timer: 2, sub: { x: 1 } } };
  const ma = withoutFields(a, skip);
  assert.deepEqual(compareDeviceState(ma.state, withoutFields(b, skip).state, ["s", "t"]), []);
  assert.deepEqual(ma.skipped, ["rtc/0 cmos bytes 0: host clock", "rtc/0 timer: armed at save"]);
  // Byte 1 of cmos is compared: a guest that differs there is caught, by name.
  const c = { "rtc/0": { cmos: "5502", timer: 2, sub: { x: 2 } } };
  assert.deepEqual(compareDeviceState(ma.state, withoutFields(c, skip).state, ["s", "t"]), [
    'rtc/0.cmos: s "--01", t "--02"',
    "rtc/0.sub.x: s 1, t 2",
  ]);
});
