/**
 * Helpers shared by the analyzer's tests (not part of the tool): temporary files, streams written through
 * the engine's writer, and an assertion on StreamErrors.
 */
import assert from "node:assert/strict";
import type { Device } from "../../engine/guest/devices/device.ts";
import {
  CPU_INDEX,
  CPU_PASS,
  CPU_PHASE,
  CPU_RNG,
  DEV_RING_CONS,
  DEV_RING_PROD,
  DEV_TIMER_HI,
  DEV_TIMER_LO,
} from "../../engine/guest/regs.ts";
import { QEMUFileWriter, StreamError } from "../../engine/qemu_file.ts";
import {
  RAM_IDSTR,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_VERSION_ID,
  RamSaveState,
} from "../../engine/ram.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "../../engine/ram_block.ts";
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  RAM_SECTION_ID,
  saveCommand,
  saveDevices,
  saveEofAndVmdesc,
  saveFooter,
  saveHeader,
  saveSectionFull,
  saveSectionShort,
} from "../../engine/savevm.ts";
import { TestGuest } from "../../engine/testing/streams_test_util.ts";
import { fileOutgoing, type SeekableLink } from "../../engine/transport/file.ts";
import { MappedRamSave } from "../../engine/ram_mapped.ts";
import { parseUuid } from "../../engine/uuid.ts";

export const PAGE = TARGET_PAGE_SIZE;
export const FIXTURE = new URL("../../fixtures/streams/qemu-7.2-pc-32M.mig", import.meta.url).pathname;
export const UUID = "11111111-2222-3333-4444-555555555555";
/** The machine type engineStream writes. */
export const MACHINE = "pc-i440fx-migtest";

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-analyze-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` on a writer over a `file:` link to `path` and returns the file's bytes. */
export async function writeStream(
  path: string,
  fn: (f: QEMUFileWriter, link: SeekableLink) => void | Promise<void>,
): Promise<Uint8Array> {
  const link = await fileOutgoing(path, 0);
  try {
    const f = new QEMUFileWriter(link, 16384);
    await fn(f, link);
    await f.flush();
    link.truncateToEnd();
  } finally {
    link.close();
  }
  return await Deno.readFile(path);
}

export async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** `p` rejects with a StreamError whose detail matches and whose message names the offset. */
export async function rejects(p: Promise<unknown>, detail: RegExp, offset?: number): Promise<StreamError> {
  let err: unknown = null;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof StreamError, `expected a StreamError, got ${String(err)}`);
  assert.match(err.detail, detail);
  assert.match(err.message, /\(at (stream|file) offset \d+/);
  if (offset !== undefined) assert.equal(err.offset, offset, err.message);
  return err;
}

/** The test guest with its devices in a recognisable state. */
export function guest(): TestGuest {
  const g = new TestGuest();
  const { cpuRegs, devRegs, serial, blocks } = g;
  cpuRegs[CPU_PHASE] = 2;
  cpuRegs[CPU_INDEX] = 300;
  cpuRegs[CPU_PASS] = 65;
  [0x12345678, -1, 7, 0x40000000].forEach((v, i) => (cpuRegs[CPU_RNG + i] = v));
  devRegs[DEV_TIMER_LO] = 5;
  devRegs[DEV_TIMER_HI] = 1;
  devRegs[DEV_RING_PROD] = 100;
  devRegs[DEV_RING_CONS] = 90;
  serial.transmit("AB");
  serial.state.scr = 0x5a;
  blocks.forEach((b, bi) => {
    for (let p = 0; p < b.pages; p++) if ((p + bi) % 3 !== 0) b.page(p).fill(p * 16 + bi + 1);
  });
  return g;
}

export interface EngineStream {
  bytes: Uint8Array;
  blocks: RamBlock[];
  devices: Device[];
  ram: RamSaveState;
}

/**
 * A full precopy stream as the migration thread writes it, through the `file:` transport; with
 * `mappedRam`, its pages at their fixed offsets (the capability announced in the configuration).
 */
export async function engineStream(
  path: string,
  withDevices = true,
  mappedRam = false,
): Promise<EngineStream> {
  const { blocks, devices } = guest();
  let ram = new RamSaveState(blocks, () => "legacy", () => 0);
  const bytes = await writeStream(path, async (f, link) => {
    if (mappedRam) {
      ram = new RamSaveState(blocks, () => "legacy", () => 0, { mappedRam: new MappedRamSave(link) });
    }
    const capabilities = mappedRam ? ["mapped-ram"] : [];
    const cfg = saveHeader(f, { machineType: MACHINE, uuid: parseUuid(UUID), capabilities });
    saveCommand(f, MIG_CMD_OPEN_RETURN_PATH);
    saveCommand(f, MIG_CMD_PING, new Uint8Array([0, 0, 0, 1]));
    saveSectionFull(f, QEMU_VM_SECTION_START, RAM_SECTION_ID, RAM_IDSTR, 0, RAM_VERSION_ID);
    await ram.setup(f);
    saveFooter(f, RAM_SECTION_ID);
    for (let i = 0; i < 2; i++) {
      saveSectionShort(f, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
      let n = 0;
      await ram.iterate(f, () => n++ >= 6);
      saveFooter(f, RAM_SECTION_ID);
    }
    // Dirtied while iterating: sent again in the END section.
    blocks[0].page(1).fill(0xee);
    blocks[0].markDirty(1);
    saveCommand(f, MIG_CMD_SWITCHOVER_START);
    saveSectionShort(f, QEMU_VM_SECTION_END, RAM_SECTION_ID);
    await ram.complete(f);
    saveFooter(f, RAM_SECTION_ID);
    if (withDevices) saveEofAndVmdesc(f, cfg, saveDevices(f, devices));
    else f.put8(QEMU_VM_EOF);
  });
  return { bytes, blocks, devices, ram };
}

/**
 * Header, configuration, then RAM sections written record by record: a START listing `blocks`
 * (default: "a" and "b", two pages each), then `body`, then EOF.
 */
export function rawRam(
  f: QEMUFileWriter,
  body: (f: QEMUFileWriter) => void,
  opts: { machineType?: string; blocks?: [string, number][] } = {},
): void {
  const blocks = opts.blocks ?? [["a", 2 * PAGE], ["b", 2 * PAGE]];
  saveHeader(f, { machineType: opts.machineType ?? "m", uuid: null });
  saveSectionFull(f, QEMU_VM_SECTION_START, 0, RAM_IDSTR, 0, RAM_VERSION_ID);
  f.putBe64(blocks.reduce((n, [, len]) => n + len, 0) + RAM_SAVE_FLAG_MEM_SIZE);
  for (const [idstr, len] of blocks) {
    f.putCountedString(idstr);
    f.putBe64(len);
  }
  f.putBe64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
  f.putBe64(RAM_SAVE_FLAG_EOS);
  saveFooter(f, 0);
  body(f);
  f.put8(QEMU_VM_EOF);
}
