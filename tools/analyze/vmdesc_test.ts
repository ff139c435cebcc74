import assert from "node:assert/strict";
import { QEMU_VM_EOF, QEMU_VM_VMDESCRIPTION } from "../../engine/savevm.ts";
import { fileIncoming } from "../../engine/transport/file.ts";
import { bytesSource } from "./source.ts";
import { FIXTURE } from "./analyze_test_util.ts";
import { findVmdesc, scanVmdesc } from "./vmdesc.ts";

/** Where the QEMU fixture's vmdesc starts, and how long its JSON is. */
const FIXTURE_VMDESC = { offset: 288767, length: 98649 };

function record(json: string, announced?: number): Uint8Array {
  const text = new TextEncoder().encode(json);
  const out = new Uint8Array(6 + text.length);
  out[0] = QEMU_VM_EOF;
  out[1] = QEMU_VM_VMDESCRIPTION;
  new DataView(out.buffer).setUint32(2, announced ?? text.length);
  out.set(text, 6);
  return out;
}

Deno.test("vmdesc: found at the end of the QEMU stream (file, bytes, Link)", async () => {
  const found = await findVmdesc(FIXTURE);
  assert.ok(found);
  assert.deepEqual({ offset: found.offset, length: found.length }, FIXTURE_VMDESC);
  assert.equal(found.json.page_size, 4096);
  assert.equal(found.json.devices.length, 30);
  assert.equal(found.json.devices[0].name, "timer");
  const bytes = await Deno.readFile(FIXTURE);
  assert.deepEqual(await findVmdesc(bytes), found);
  const link = await fileIncoming(FIXTURE, 0);
  try {
    assert.deepEqual(await findVmdesc(link), found);
  } finally {
    link.close();
  }
});

Deno.test("vmdesc: a cut-short vmdesc is reported as truncated, not found", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const cut = bytes.subarray(0, FIXTURE_VMDESC.offset + 1000);
  assert.equal(await findVmdesc(cut), null);
  const scan = await scanVmdesc(bytesSource(cut), 0);
  assert.deepEqual(scan, {
    found: null,
    truncated: { offset: FIXTURE_VMDESC.offset, announced: FIXTURE_VMDESC.length, present: 995 },
  });
  // Cut right after EOF: nothing at all.
  assert.deepEqual(await scanVmdesc(bytesSource(bytes.subarray(0, FIXTURE_VMDESC.offset)), 0), {
    found: null,
    truncated: null,
  });
});

Deno.test("vmdesc: only a length-matching JSON object with a devices array counts", async () => {
  const ok = record('{"devices":[]}');
  assert.deepEqual((await findVmdesc(ok))?.offset, 1);
  assert.equal(await findVmdesc(record('{"devices":{}}')), null);
  assert.equal(await findVmdesc(record('{"devices":[}')), null);
  assert.equal(await findVmdesc(record('{"devices":[]}', 13)), null);
  // The scan does not look before the stream's start.
  assert.equal((await scanVmdesc(bytesSource(ok), 2)).found, null);
});
