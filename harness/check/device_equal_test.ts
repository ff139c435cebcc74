import assert from "node:assert/strict";
import { changedFields, compareDeviceState, exactField, withoutFields } from "./device_equal.ts";

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

Deno.test("exactField: leaves out that field of that device only, by its exact name", () => {
  const skip = [exactField("serial/0", "fcr", "not in the source's release")];
  const a = { "serial/0": { fcr: 1, fcrx: 1 }, "serial/1": { fcr: 1 }, "xserial/0": { fcr: 1 } };
  const b = { "serial/0": { fcr: 2, fcrx: 2 }, "serial/1": { fcr: 2 }, "xserial/0": { fcr: 2 } };
  const ma = withoutFields(a, skip);
  assert.deepEqual(compareDeviceState(ma.state, withoutFields(b, skip).state, ["s", "t"]), [
    "serial/0.fcrx: s 1, t 2",
    "serial/1.fcr: s 1, t 2",
    "xserial/0.fcr: s 1, t 2",
  ]);
  assert.deepEqual(ma.skipped, ["serial/0 fcr: not in the source's release"]);
  // A name with regular-expression characters is matched literally.
  assert.ok(exactField("a.b/0", "x", "").device.test("a.b/0"));
  assert.ok(!exactField("a.b/0", "x", "").device.test("axb/0"));
});

Deno.test("changedFields: names each field whose value moved, with where it came from", () => {
  const fields = [
    { device: "serial/0", field: "txCount", since: "subsection serial/tx" },
    { device: "migtest-timer/0", field: "periodNs", since: "migtest-timer version 2" },
  ];
  const before = { "serial/0": { txCount: 0 }, "migtest-timer/0": { periodNs: 1000 } };
  assert.deepEqual(changedFields(fields, before, structuredClone(before)), []);
  const after = { "serial/0": { txCount: 7 }, "migtest-timer/0": { periodNs: 1000 } };
  assert.deepEqual(changedFields(fields, before, after), [
    "serial/0 txCount (subsection serial/tx): 0 before, 7 after",
  ]);
});
