/** Older releases of the devices: what they save, what they refuse, and the fields they lack. */
import assert from "node:assert/strict";
import { QEMU_VM_EOF } from "../savevm.ts";
import { loadState, saveState } from "../vmstate.ts";
import type { Device } from "../guest/devices/device.ts";
import { applyRelease, OLDER_RELEASES, RELEASE_NAMES } from "./releases.ts";
import { encode, TestGuest, withReader } from "./streams_test_util.ts";

function serialOf(g: TestGuest): Device {
  const d = g.devices.find((x) => x.idstr === "serial");
  assert.ok(d);
  return d;
}

/** One device's vmstate from `from` loaded into the same device of `to` (as its section would be). */
async function migrateDevice(from: Device, to: Device): Promise<void> {
  const bytes = await encode((w) => {
    saveState(w, from.vmsd, from.state);
    w.put8(QEMU_VM_EOF); // something always follows a section's fields (its footer)
  });
  await withReader(bytes, (r) => loadState(r, to.vmsd, to.state, from.vmsd.versionId));
}

Deno.test("releases: each one names devices the machine has, at a version and subsections they had", () => {
  const g = new TestGuest();
  for (const name of RELEASE_NAMES) {
    for (const [idstr, older] of Object.entries(OLDER_RELEASES[name].devices)) {
      const d = g.devices.find((x) => x.idstr === idstr);
      assert.ok(d, `${name}: no device '${idstr}'`);
      if ("version" in older) assert.ok(older.version <= d.vmsd.versionId, `${name}: ${idstr} is not older`);
      const subs = (d.vmsd.subsections ?? []).map((s) => s.name);
      for (const s of "subsections" in older ? older.subsections : []) {
        assert.ok(subs.includes(s), `${name}: ${s}`);
      }
    }
  }
});

Deno.test("releases: the fields a release lacks are named, with where each came in; applied once", () => {
  const g = new TestGuest();
  const lacks = applyRelease(g, "serial-v2-timer-v1");
  assert.deepEqual(lacks, [
    { device: "serial/0", field: "fcr", since: "serial version 3" },
    { device: "serial/0", field: "txCount", since: "subsection serial/tx" },
    { device: "serial/0", field: "lastTx", since: "subsection serial/tx" },
    { device: "migtest-timer/0", field: "periodNs", since: "migtest-timer version 2" },
  ]);
  // The devices keep their state objects (the guest is unchanged); only the descriptions are older.
  assert.equal(serialOf(g).state, g.serial.state);
  assert.equal(serialOf(g).vmsd.versionId, 2);
  assert.deepEqual(serialOf(g).vmsd.subsections, []);
  assert.throws(() => applyRelease(g, "before-serial-tx"), /a release is applied once/);
  assert.deepEqual(applyRelease(new TestGuest(), "before-serial-tx"), [
    { device: "serial/0", field: "txCount", since: "subsection serial/tx" },
    { device: "serial/0", field: "lastTx", since: "subsection serial/tx" },
  ]);
});

Deno.test("releases: an older serial loads here; the fields of later versions keep the target's values", async () => {
  const src = new TestGuest();
  applyRelease(src, "serial-v2-timer-v1");
  src.serial.transmit("A");
  Object.assign(src.serial.state, { fcr: 0xc1, scr: 0x5a, divider: 3 });
  const dst = new TestGuest();
  Object.assign(dst.serial.state, { fcr: 0x07 });
  await migrateDevice(serialOf(src), serialOf(dst));
  assert.deepEqual(
    { ...dst.serial.state },
    { ...src.serial.state, fcr: 0x07, txCount: 0, lastTx: 0 },
    "fcr (version 3) and serial/tx's fields were not sent: the target keeps its own",
  );
});

Deno.test("releases: a newer serial reaches a release without serial/tx only while it is not needed", async () => {
  const dst = new TestGuest();
  applyRelease(dst, "before-serial-tx");
  const src = new TestGuest();
  await migrateDevice(serialOf(src), serialOf(dst));
  src.serial.transmit("B");
  await assert.rejects(
    migrateDevice(serialOf(src), serialOf(dst)),
    /VM subsection 'serial\/tx' in 'serial' does not exist/,
  );
});

Deno.test("releases: serial version 1 is below the serial's minimum_version_id and is refused", async () => {
  const src = new TestGuest();
  applyRelease(src, "serial-v1");
  assert.equal(serialOf(src).vmsd.versionId, 1);
  await assert.rejects(
    migrateDevice(serialOf(src), serialOf(new TestGuest())),
    /serial: incoming version_id 1 is too old for local minimum version_id 2/,
  );
});
