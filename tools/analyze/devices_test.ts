import assert from "node:assert/strict";
import { WORKLOAD_IDS } from "../../engine/guest/workload.ts";
import { withReader } from "../../engine/testing/streams_test_util.ts";
import type { VmdescDevice } from "../../engine/vmdesc.ts";
import { DeviceDecoder, type DeviceSection } from "./devices.ts";
import { analyzeStream } from "./stream.ts";
import { engineStream, FIXTURE, rejects, withTempDir } from "./analyze_test_util.ts";
import type { VmdescScan } from "./vmdesc.ts";

Deno.test("devices: our engine's devices decode to the devices' state", async () => {
  await withTempDir(async (dir) => {
    const src = await engineStream(`${dir}/engine.mig`);
    const res = await analyzeStream(src.bytes);
    // Device fields equal the devices' state (as pre_save left it).
    const st = (i: number) => src.devices[i].state;
    const cpu = st(0);
    assert.deepEqual(res.devices["cpu (0)"], {
      workload: WORKLOAD_IDS.random,
      phase: 2,
      index: 300,
      pass: 65,
      rng: [0x12345678, 0xffffffff, 7, 0x40000000],
    });
    assert.deepEqual(res.devices["cpu (0)"], { ...cpu });
    const { txCount, lastTx, ...regs } = st(1);
    assert.deepEqual(res.devices["serial (0)"], { ...regs, "serial/tx": { txCount, lastTx } });
    assert.equal(res.devices["serial (0)"].scr, 0x5a);
    assert.deepEqual(res.devices["migtest-timer (0)"], {
      count: 0x1_0000_0005,
      enabled: true,
      periodNs: 1_000_000,
    });
    assert.deepEqual(res.devices["migtest-timer (0)"], { ...st(2) });
    assert.deepEqual(res.devices["migtest-queue (0)"], { prod: 100, cons: 90, size: 64 });
    assert.deepEqual(res.devices["migtest-queue (0)"], { ...st(3) });
  });
});

Deno.test("devices: the QEMU stream without its vmdesc", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const full = await analyzeStream(bytes);
  const eof = full.sections.find((s) => s.type === "eof")!.offset;
  const timer = full.sections.find((s) => s.idstr === "timer")!.offset;
  // Cut right after EOF: RAM and configuration still parse, the first device section cannot be decoded.
  await rejects(
    analyzeStream(bytes.subarray(0, eof + 1)),
    /^Cannot decode device section 'timer' instance 0 \(section 0\): the file has no vmdesc/,
    timer,
  );
  // Cut inside the vmdesc: same, and the message says the vmdesc is truncated.
  await rejects(
    analyzeStream(bytes.subarray(0, eof + 1000)),
    new RegExp(`the vmdesc at offset ${eof + 1} is truncated \\(announces 98649 bytes, 994 present\\)`),
    timer,
  );
});

const U8 = (name: string) => ({ name, type: "uint8", size: 1 });
const dev = (name: string, version = 1): VmdescDevice => ({
  name,
  instance_id: 0,
  vmsd_name: name,
  version,
  fields: [U8("x")],
});
const scanOf = (devices: VmdescDevice[], configuration?: VmdescDevice): VmdescScan => ({
  found: { offset: 0, length: 0, json: { devices, configuration } },
  truncated: null,
});
const section = (idstr: string, versionId = 1): DeviceSection => ({
  idstr,
  instanceId: 0,
  sectionId: 3,
  versionId,
});

Deno.test("devices: entries are taken in stream order; repeats get #2; a version mismatch warns", async () => {
  const warnings: string[] = [];
  const d = new DeviceDecoder(scanOf([dev("a"), dev("a", 2)]), warnings);
  await withReader(new Uint8Array([7, 8]), async (r) => {
    await d.section(r, section("a"), 0);
    await d.section(r, section("a"), 1);
  });
  assert.deepEqual(d.devices, { "a (0)": { x: 7 }, "a (0) #2": { x: 8 } });
  assert.deepEqual(warnings, ["section 'a' (0) has version 1 but its vmdesc says 2"]);
  await rejects(
    withReader(new Uint8Array([1]), (r) => d.section(r, section("a"), 0)),
    /^Section 'a' instance 0 \(section 3\) is not described by the vmdesc$/,
    0,
  );
  const broken = new DeviceDecoder(scanOf([{ ...dev("b"), fields: [{ ...U8("y"), size: -1 }] }]), []);
  await rejects(
    withReader(new Uint8Array([1]), (r) => broken.section(r, section("b"), 0)),
    /^b\.y: bad size -1 in vmdesc$/,
  );
});

Deno.test("devices: configuration subsections through the vmdesc, or the engine's 'does not exist'", async () => {
  const cfg = { ...dev("configuration"), subsections: [{ ...dev("configuration/x"), version: 2 }] };
  const d = new DeviceDecoder(scanOf([], cfg), []);
  assert.deepEqual(
    await withReader(new Uint8Array([9]), (r) => d.configurationSubsection(r, "configuration/x", 2, 0)),
    { x: 9 },
  );
  await rejects(
    withReader(new Uint8Array([9]), (r) => d.configurationSubsection(r, "configuration/x", 1, 5)),
    /^configuration\/x: version_id 1 differs from the vmdesc's 2$/,
    5,
  );
  await rejects(
    withReader(new Uint8Array([9]), (r) => d.configurationSubsection(r, "configuration/y", 1, 5)),
    /^VM subsection 'configuration\/y' in 'configuration' does not exist$/,
    5,
  );
});
