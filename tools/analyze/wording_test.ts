/**
 * The analyzer and the engine's loader, side by side on the same malformed streams: for every condition
 * both reject, the analyzer must say what the loader says (the same detail) about the same byte. The
 * loader runs here only as the reference; the analyzer itself never calls it (it must stay able to catch
 * the loader's bugs).
 */
import assert from "node:assert/strict";
import { type QEMUFileWriter, StreamError } from "../../engine/qemu_file.ts";
import {
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_FULL,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
  RamLoadState,
  registerRam,
} from "../../engine/ram.ts";
import {
  loadVmState,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SUBSECTION,
  saveHeader,
  saveSectionShort,
  SaveVMState,
} from "../../engine/savevm.ts";
import { encode, TestGuest, withReader } from "../../engine/testing/streams_test_util.ts";
import { analyzeStream } from "./stream.ts";
import { engineStream, MACHINE, PAGE, rawRam, withTempDir } from "./analyze_test_util.ts";

/** The engine loader's StreamError for `bytes`, on a destination shaped like the test guest. */
async function engineError(bytes: Uint8Array): Promise<StreamError> {
  const dst = new TestGuest();
  const savevm = new SaveVMState(dst.devices);
  registerRam(savevm, new RamLoadState(dst.blocks));
  let error: unknown = null;
  await withReader(bytes, async (r) => {
    try {
      await loadVmState(r, {
        local: { machineType: MACHINE, uuid: null },
        savevm,
        openReturnPath: () => {},
        ping: () => {},
      });
    } catch (e) {
      error = e;
    }
  });
  assert.ok(error instanceof StreamError, `the engine loaded it: ${String(error)}`);
  return error;
}

async function analyzerError(bytes: Uint8Array): Promise<StreamError> {
  const e = await analyzeStream(bytes).then(() => null, (e: unknown) => e);
  assert.ok(e instanceof StreamError, `the analyzer accepted it: ${String(e)}`);
  return e;
}

interface Case {
  name: string;
  bytes: () => Promise<Uint8Array>;
  detail: string;
  /** The engine reports another byte of the same record (the analyzer's is the more precise one). */
  engineOffsetDiffers?: boolean;
}

const GUEST_RAM = {
  machineType: MACHINE,
  blocks: [["pc.ram", 13 * PAGE], ["vga.vram", 3 * PAGE]] satisfies [string, number][],
};

/** rawRam with the test guest's blocks (so the engine accepts the block list), then a PART of `records`. */
const ramPart = (records: (f: QEMUFileWriter) => void) => () =>
  encode((f) =>
    rawRam(f, (f) => {
      saveSectionShort(f, QEMU_VM_SECTION_PART, 0);
      records(f);
    }, GUEST_RAM)
  );

Deno.test("wording: the analyzer says what the engine's loader says, at the same offset", async (t) => {
  await withTempDir(async (dir) => {
    const { bytes } = await engineStream(`${dir}/good.mig`);
    const noDevices = (await engineStream(`${dir}/plain.mig`, false)).bytes;
    const good = await analyzeStream(bytes);
    const cpu = good.sections.find((s) => s.idstr === "cpu")!;
    const part = good.sections.find((s) => s.type === "part")!;
    const ping = good.sections.find((s) => s.command === "PING")!;
    const footer = cpu.offset + cpu.size! - 5;
    // The START of "ram" in a ramPart stream: where its version_id sits.
    const ramStart = (await analyzeStream(
      await encode((f) => rawRam(f, () => {}, GUEST_RAM)),
    )).sections[0].offset;
    const edit = (at: number, v: number) => () => {
      const b = bytes.slice();
      b[at] = v;
      return Promise.resolve(b);
    };
    const cut = (n: number) => () => Promise.resolve(bytes.slice(0, n));
    const append = (...tail: number[]) => () => Promise.resolve(new Uint8Array([...noDevices, ...tail]));
    const ramVersion = (v: number) => async () => {
      const b = await ramPart(() => {})();
      new DataView(b.buffer).setUint32(ramStart + 13, v);
      return b;
    };

    const cases: Case[] = [
      {
        name: "bad magic",
        bytes: edit(3, 0),
        detail: "Not a migration stream (magic 0x51455600, expected 0x5145564d)",
      },
      { name: "v2 stream", bytes: edit(7, 2), detail: "SaveVM v2 format is obsolete and don't work anymore" },
      { name: "unknown version", bytes: edit(7, 4), detail: "Unsupported migration stream version 4" },
      {
        name: "unknown configuration subsection",
        bytes: () =>
          encode((f) => {
            saveHeader(f, { machineType: MACHINE, uuid: null });
            f.put8(QEMU_VM_SUBSECTION);
            f.putCountedString("configuration/foo");
            f.putBe32(1);
            f.put8(QEMU_VM_EOF);
          }),
        detail: "VM subsection 'configuration/foo' in 'configuration' does not exist",
      },
      { name: "truncated in the RAM pages", bytes: cut(part.offset + 100), detail: "" },
      { name: "truncated section header", bytes: cut(cpu.offset + 3), detail: "" },
      { name: "truncated footer", bytes: cut(part.offset + part.size! - 3), detail: "" },
      {
        name: "unknown section type",
        bytes: edit(cpu.offset, 0x09),
        detail: "Unknown savevm section type 9",
      },
      {
        name: "PART of an unknown section",
        bytes: edit(part.offset + 4, 0x40),
        detail: "Unknown savevm section 64",
      },
      { name: "bad footer marker", bytes: edit(footer, 0x7f), detail: "Missing section footer for cpu" },
      {
        name: "footer with the wrong section id",
        bytes: edit(footer + 4, 0x11),
        detail: "Mismatched section id in footer for cpu - read 0x11 expected 0x3",
      },
      { name: "invalid command", bytes: edit(ping.offset + 2, 0), detail: "Invalid command 0" },
      {
        name: "command with a bad length",
        bytes: edit(ping.offset + 4, 3),
        detail: "PING received bad length 3/4",
      },
      {
        name: "not a vmdesc after EOF",
        bytes: append(9),
        detail: "Expected vmdescription section, but got 9",
      },
      {
        name: "oversized vmdesc",
        bytes: append(6, 0x7f, 0xff, 0xff, 0xff),
        detail: "vmdesc of 2147483647 bytes exceeds the 10485760-byte limit",
      },
      {
        name: "ram version too new",
        bytes: ramVersion(5),
        detail: "savevm: unsupported version 5 for 'ram' v4",
      },
      {
        name: "ram version too old",
        bytes: ramVersion(3),
        detail: "ram: unsupported version_id 3 (expected 4)",
        // The loader only sees the version once the section's body starts; the analyzer names the header.
        engineOffsetDiffers: true,
      },
      {
        name: "unknown RAM flag",
        bytes: ramPart((f) => f.putBe64(0x400)),
        detail: "Unknown combination of migration flags: 0x400",
      },
      {
        name: "RAM_SAVE_FLAG_FULL",
        bytes: ramPart((f) => f.putBe64(RAM_SAVE_FLAG_FULL)),
        detail: "Unknown combination of migration flags: 0x1",
      },
      {
        name: "RAM_SAVE_FLAG_HOOK",
        bytes: ramPart((f) => f.putBe64(RAM_SAVE_FLAG_HOOK)),
        detail: "RAM_SAVE_FLAG_HOOK is only valid with RDMA",
      },
      {
        name: "CONTINUE before any block",
        bytes: ramPart((f) => f.putBe64(RAM_SAVE_FLAG_PAGE + RAM_SAVE_FLAG_CONTINUE)),
        detail: "Ack, bad migration stream! (CONTINUE with no previous RAM block)",
      },
      {
        name: "unknown block",
        bytes: ramPart((f) => {
          f.putBe64(RAM_SAVE_FLAG_ZERO);
          f.putCountedString("zz");
        }),
        detail: "Can't find block zz",
      },
      {
        name: "offset beyond the block",
        bytes: ramPart((f) => {
          f.putBe64(3 * PAGE + RAM_SAVE_FLAG_ZERO);
          f.putCountedString("vga.vram");
        }),
        detail: "Illegal RAM offset 0x3000 in block vga.vram",
      },
      {
        name: "zero page with a fill byte",
        bytes: ramPart((f) => {
          f.putBe64(RAM_SAVE_FLAG_ZERO);
          f.putCountedString("pc.ram");
          f.put8(1);
        }),
        detail: "Found a zero page with value 1",
      },
      {
        name: "XBZRLE encoding byte",
        bytes: ramPart((f) => {
          f.putBe64(RAM_SAVE_FLAG_XBZRLE);
          f.putCountedString("pc.ram");
          f.put8(2);
          f.putBe16(0);
        }),
        detail: "Failed to load XBZRLE page - wrong compression!",
      },
      {
        name: "XBZRLE longer than a page",
        bytes: ramPart((f) => {
          f.putBe64(RAM_SAVE_FLAG_XBZRLE);
          f.putCountedString("pc.ram");
          f.put8(1);
          f.putBe16(PAGE + 1);
        }),
        detail: "Failed to load XBZRLE page - len overflow!",
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        const b = await c.bytes();
        const [engine, analyzer] = [await engineError(b), await analyzerError(b)];
        assert.equal(analyzer.detail, engine.detail);
        if (c.detail) assert.equal(analyzer.detail, c.detail);
        else assert.match(analyzer.detail, /^Unexpected end of stream while reading /);
        // The message names the offset, and it is the loader's.
        assert.ok(analyzer.message.endsWith(`(at stream offset ${analyzer.offset})`), analyzer.message);
        if (!c.engineOffsetDiffers) assert.equal(analyzer.offset, engine.offset, c.name);
      });
    }
  });
});
