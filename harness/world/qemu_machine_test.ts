/**
 * What the qemu-to-engine pair reads of QEMU: `info ramblock`'s rows, and QEMU's device sections loaded
 * by the model through QEMU's own vmdesc (every device of QEMU 7.2's saved pc stream, byte for byte).
 */
import assert from "node:assert/strict";
import { parseRamblocks } from "./qemu_machine.ts";
import { DescribedDevice } from "../../engine/guest/devices/described.ts";
import { loadState } from "../../engine/vmstate.ts";
import { withReader } from "../../engine/testing/streams_test_util.ts";
import { analyzeStream } from "../../tools/analyze/stream.ts";
import { findVmdesc } from "../../tools/analyze/vmdesc.ts";
import { qemuSourceFixture } from "../../fixtures/machines.ts";

const FIXTURE = new URL("../../fixtures/streams/qemu-7.2-pc-32M.mig", import.meta.url).pathname;

// QEMU 10.0.2's answer for `-machine pc -m 150M -nodefaults`.
const INFO_RAMBLOCK =
  `              Block Name    PSize              Offset               Used              Total                HVA  RO
    /rom@etc/acpi/tables    4 KiB  0x0000000009680000 0x0000000000020000 0x0000000000200000 0x00007f3abaa00000  ro
                  pc.ram    4 KiB  0x0000000000000000 0x0000000009600000 0x0000000009600000 0x00007f3a6a800000  rw
                 pc.bios    4 KiB  0x0000000009600000 0x0000000000040000 0x0000000000040000 0x00007f3abb000000  ro
      /rom@etc/acpi/rsdp    4 KiB  0x00000000098c0000 0x0000000000001000 0x0000000000001000 0x00007f3aba600000  ro
`;

Deno.test("qemu machine: info ramblock's used lengths, the main RAM first", () => {
  assert.deepEqual(parseRamblocks(INFO_RAMBLOCK), [
    { idstr: "pc.ram", size: 0x9600000 },
    { idstr: "/rom@etc/acpi/tables", size: 0x20000 },
    { idstr: "pc.bios", size: 0x40000 },
    { idstr: "/rom@etc/acpi/rsdp", size: 0x1000 },
  ]);
  assert.throws(() => parseRamblocks(INFO_RAMBLOCK, "mem0"), /info ramblock lists no mem0/);
});

Deno.test("qemu machine: a QEMU machine file is checked (blocks in whole pages, vmdesc devices)", () => {
  assert.throws(
    () => qemuSourceFixture({ type: "pc", blocks: [], devices: [] }),
    /RAM blocks, its main RAM first/,
  );
  assert.throws(
    () => qemuSourceFixture({ type: "pc", blocks: [{ idstr: "pc.ram", size: 100 }], devices: [] }),
    /whole pages/,
  );
  assert.throws(
    () =>
      qemuSourceFixture({ type: "pc", blocks: [{ idstr: "pc.ram", size: 4096 }], devices: [{ name: "x" }] }),
    /vmdesc entries/,
  );
});

Deno.test("qemu machine: every device section of QEMU 7.2's pc stream loads through its vmdesc, exactly", async () => {
  const vmdesc = await findVmdesc(FIXTURE);
  assert.ok(vmdesc);
  const bytes = await Deno.readFile(FIXTURE);
  const sections = (await analyzeStream(FIXTURE)).sections.filter((s) => s.type === "full");
  assert.ok(sections.length > 20, `${sections.length} device sections`);
  const used = new Set<number>();
  for (const s of sections) {
    const i = vmdesc.json.devices.findIndex((d, k) =>
      !used.has(k) && d.name === s.idstr && d.instance_id === s.instance_id
    );
    assert.ok(i >= 0, `${s.idstr} is described`);
    used.add(i);
    const device = new DescribedDevice(vmdesc.json.devices[i]);
    // The body after type, section id, idstr, instance and version, then the footer (what follows a
    // device's subsections on the wire): the description must stop exactly at the footer's marker.
    const start = s.offset + 1 + 4 + 1 + s.idstr!.length + 4 + 4;
    const body = bytes.subarray(start, s.offset + s.size!);
    const left = await withReader(body, async (r) => {
      await loadState(r, device.vmsd, device.state, s.version_id!);
      await r.need(5, "footer");
      return [...r.getBytes(5)];
    });
    assert.deepEqual(
      left,
      [0x7e, 0, 0, 0, s.section_id],
      `${s.idstr}: the description reads the whole section`,
    );
  }
});

Deno.test("qemu machine: a byte too many or too few is not loaded as if it fit", async () => {
  const vmdesc = await findVmdesc(FIXTURE);
  assert.ok(vmdesc);
  const timer = vmdesc.json.devices.find((d) => d.name === "timer");
  assert.ok(timer);
  const device = new DescribedDevice(timer);
  await assert.rejects(
    withReader(new Uint8Array(3), (r) => loadState(r, device.vmsd, device.state, timer.version)),
    /Unexpected end of stream/,
  );
});
