import assert from "node:assert/strict";
import { analyzerStateToDevices, runAnalyzer } from "./analyzer.ts";
import { compareDeviceState } from "./check/device_equal.ts";

const FIXTURES = new URL("../fixtures/streams/", import.meta.url).pathname;

Deno.test("analyzer as a process: QEMU 7.2's saved stream comes back keyed idstr/instance, comparable", async () => {
  const devices = analyzerStateToDevices(
    await runAnalyzer(`${FIXTURES}qemu-7.2-pc-32M.mig`, FIXTURES, ["--dump", "state"]),
  );
  assert.ok("0000:00:01.1/ide/0" in devices, Object.keys(devices).join(", "));
  assert.deepEqual(compareDeviceState(devices, structuredClone(devices), ["a", "b"]), []);
  // Another guest's state (one RTC register changed) is caught by name.
  const other = structuredClone(devices);
  other["mc146818rtc/0"] = { ...other["mc146818rtc/0"], cmos_index: 99 };
  assert.match(
    compareDeviceState(devices, other, ["a", "b"]).join("\n"),
    /^mc146818rtc\/0\.cmos_index: a \d+, b 99$/,
  );
});

Deno.test("analyzerStateToDevices: a key it does not make is an error", () => {
  assert.throws(() => analyzerStateToDevices({ "no instance": {} }), /does not make/);
  assert.deepEqual(analyzerStateToDevices({ "a/b (0) #2": { x: 1 } }), { "a/b/0#2": { x: 1 } });
});
