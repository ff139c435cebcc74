/**
 * Bug: the loader waited for all 5 footer bytes before looking at the marker, so a section followed by
 * fewer than 5 bytes (its footer missing, the stream ending right after EOF) was reported as a
 * truncation ("Unexpected end of stream while reading section footer of 'ram'") rather than as
 * "Missing section footer for ram", which is what QEMU's check_section_footer says.
 */
import assert from "node:assert/strict";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { RamBlock } from "./ram_block.ts";
import { RamLoadState, RamSaveState, registerRam } from "./ram.ts";
import {
  loadVmState,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_START,
  RAM_SECTION_ID,
  saveHeader,
  saveSectionFull,
  SaveVMState,
} from "./savevm.ts";
import { memoryLinkPair } from "./transport/link.ts";

Deno.test("regression: a section without its footer is 'Missing section footer', not a truncation", async () => {
  const [a, b] = memoryLinkPair();
  const src = new RamBlock({ idstr: "pc.ram", size: 16 * 4096 });
  const dst = new RamBlock({ idstr: "pc.ram", size: 16 * 4096 });
  const w = new QEMUFileWriter(a);
  saveHeader(w, { machineType: "m", uuid: null });
  saveSectionFull(w, QEMU_VM_SECTION_START, RAM_SECTION_ID, "ram", 0, 4);
  new RamSaveState([src], () => "legacy").setup(w);
  w.put8(QEMU_VM_EOF); // where the footer should be; then the stream ends
  await w.flush();
  a.close();
  const r = new QEMUFileReader(b);
  const savevm = new SaveVMState([]);
  registerRam(savevm, new RamLoadState([dst]));
  await assert.rejects(
    loadVmState(r, {
      local: { machineType: "m", uuid: null },
      savevm,
      openReturnPath() {},
      ping() {},
    }),
    (e: unknown) => e instanceof StreamError && /^Missing section footer for ram/.test(e.message),
  );
  b.close();
});
