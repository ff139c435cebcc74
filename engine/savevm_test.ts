import { parseUuid, uuidToString } from "./uuid.ts";
import assert from "node:assert/strict";
import {
  CPU_INDEX,
  CPU_PASS,
  CPU_PHASE,
  CPU_RNG,
  DEV_RING_CONS,
  DEV_RING_PROD,
  DEV_TIMER_HI,
  DEV_TIMER_LO,
} from "./guest/regs.ts";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { encode, TestGuest, withReader } from "./testing/streams_test_util.ts";
import {
  RAM_IDSTR,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_PAGE,
} from "./ram.ts";
import { RAM_SAVE_FLAG_ZERO, RAM_VERSION_ID, RamLoadState, RamSaveState, registerRam } from "./ram.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import {
  type ConfigurationInfo,
  loadVmState,
  MIG_CMD_ENABLE_COLO,
  MIG_CMD_INVALID,
  MIG_CMD_MAX,
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_SUBSECTION,
  QEMU_VM_VMDESCRIPTION,
  RAM_SECTION_ID,
  saveCommand,
  saveDevices,
  saveEofAndVmdesc,
  saveFooter,
  saveHeader,
  saveSectionFull,
  saveSectionShort,
  SaveVMState,
} from "./savevm.ts";
import { parseWithVmdesc, type VmdescDevice, type VmJsonObject } from "./vmdesc.ts";

const PAGE = TARGET_PAGE_SIZE;
const MACHINE = "pc-q35-10.2";
const UUID_A = "11111111-2222-3333-4444-555555555555";
const UUID_B = "11111111-2222-3333-4444-555555555556";

/** A source guest in a recognisable state. */
function sourceGuest(): TestGuest {
  const g = new TestGuest();
  g.cpuRegs[CPU_PHASE] = 2;
  g.cpuRegs[CPU_INDEX] = 300;
  g.cpuRegs[CPU_PASS] = 65;
  [0x12345678, -1, 7, 0x40000000].forEach((v, i) => (g.cpuRegs[CPU_RNG + i] = v));
  g.devRegs[DEV_TIMER_LO] = 5;
  g.devRegs[DEV_TIMER_HI] = 1;
  g.devRegs[DEV_RING_PROD] = 100;
  g.devRegs[DEV_RING_CONS] = 90;
  g.serial.transmit("AB");
  g.serial.state.scr = 0x5a;
  g.blocks.forEach((b, bi) => {
    for (let p = 0; p < b.pages; p++) if ((p + bi) % 3 !== 0) b.page(p).fill(p * 16 + bi + 1);
  });
  return g;
}

interface Built {
  bytes: Uint8Array;
  /** Stream offset of the EOF byte. */
  eofAt: number;
}

/** A full precopy stream as the migration thread writes it. */
async function buildStream(
  src: TestGuest,
  cfg: ConfigurationInfo = { machineType: MACHINE, uuid: null },
): Promise<Built> {
  let eofAt = -1;
  const bytes = await encode(async (f) => {
    const ram = new RamSaveState(src.blocks, () => "legacy", () => 0);
    const cfgDesc = saveHeader(f, cfg);
    saveCommand(f, MIG_CMD_OPEN_RETURN_PATH);
    saveCommand(f, MIG_CMD_PING, new Uint8Array([0, 0, 0, 1]));
    saveSectionFull(f, QEMU_VM_SECTION_START, RAM_SECTION_ID, RAM_IDSTR, 0, RAM_VERSION_ID);
    ram.setup(f);
    saveFooter(f, RAM_SECTION_ID);
    for (let i = 0; i < 2; i++) {
      saveSectionShort(f, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
      let n = 0;
      await ram.iterate(f, () => n++ >= 6);
      saveFooter(f, RAM_SECTION_ID);
    }
    // Dirtied while iterating: travels in the END section.
    src.blocks[0].page(1).fill(0xee);
    src.blocks[0].markDirty(1);
    saveCommand(f, MIG_CMD_SWITCHOVER_START);
    saveSectionShort(f, QEMU_VM_SECTION_END, RAM_SECTION_ID);
    await ram.complete(f);
    saveFooter(f, RAM_SECTION_ID);
    const devices = saveDevices(f, src.devices);
    eofAt = f.position;
    saveEofAndVmdesc(f, cfgDesc, devices);
  });
  return { bytes, eofAt };
}

interface Loaded {
  error: unknown;
  events: string[];
  dst: TestGuest;
}

async function load(
  bytes: Uint8Array,
  local: ConfigurationInfo = { machineType: MACHINE, uuid: null },
  dst = new TestGuest(),
): Promise<Loaded> {
  const events: string[] = [];
  let error: unknown = null;
  const savevm = new SaveVMState(dst.devices);
  registerRam(savevm, new RamLoadState(dst.blocks));
  await withReader(bytes, async (r) => {
    try {
      await loadVmState(r, {
        local,
        savevm,
        openReturnPath: () => events.push("open-return-path"),
        ping: (v) => events.push(`ping ${v}`),
      });
      if (!await r.atEnd()) events.push("trailing bytes");
    } catch (e) {
      error = e;
    }
  });
  return { error, events, dst };
}

async function loadError(bytes: Uint8Array, detail: RegExp, offset?: number, local?: ConfigurationInfo) {
  const { error } = await load(bytes, local);
  assert.ok(error instanceof StreamError, `expected a StreamError, got ${String(error)}`);
  assert.match(error.detail, detail);
  if (offset !== undefined) assert.equal(error.offset, offset, error.message);
  return error;
}

function assertSameGuest(src: TestGuest, dst: TestGuest): void {
  src.blocks.forEach((b, i) => assert.deepEqual(dst.blocks[i].mem, b.mem, b.idstr));
  for (const r of [CPU_PHASE, CPU_INDEX, CPU_PASS, CPU_RNG, CPU_RNG + 1, CPU_RNG + 2, CPU_RNG + 3]) {
    assert.equal(dst.cpuRegs[r], src.cpuRegs[r], `cpu register ${r}`);
  }
  assert.deepEqual(dst.devRegs, src.devRegs);
  src.devices.forEach((d, i) => assert.deepEqual(dst.devices[i].state, d.state, d.idstr));
}

Deno.test("savevm: a full stream loads and RAM and device state round-trip", async () => {
  const src = sourceGuest();
  const { bytes } = await buildStream(src);
  const { error, events, dst } = await load(bytes);
  assert.equal(error, null);
  assert.deepEqual(events, ["open-return-path", "ping 1"]);
  assertSameGuest(src, dst);
  assert.ok(dst.blocks[0].page(1).every((v) => v === 0xee));
  assert.equal(dst.serial.state.txCount, 2);
  assert.equal(dst.serial.state.lastTx, 0x42);
  assert.equal(dst.devices[2].state.count, 0x1_0000_0005);
  // Loading restores state, it does not replay output.
  assert.deepEqual(dst.serialOut, []);
});

// Guards the section registry: the stream the registered handlers write (what the migration thread
// does) must be byte for byte the hand-built one above, i.e. the same section ids, types and order.
Deno.test("savevm: the registered sections write exactly the hand-built stream", async () => {
  const bytes = await encode(async (f) => {
    const src = sourceGuest();
    const ram = new RamSaveState(src.blocks, () => "legacy", () => 0);
    const savevm = new SaveVMState(src.devices);
    registerRam(savevm, ram);
    const cfgDesc = saveHeader(f, { machineType: MACHINE, uuid: null });
    saveCommand(f, MIG_CMD_OPEN_RETURN_PATH);
    saveCommand(f, MIG_CMD_PING, new Uint8Array([0, 0, 0, 1]));
    await savevm.saveSetup(f);
    for (let i = 0; i < 2; i++) {
      let n = 0;
      await savevm.saveIterate(f, () => n++ >= 6);
    }
    src.blocks[0].page(1).fill(0xee);
    src.blocks[0].markDirty(1);
    saveCommand(f, MIG_CMD_SWITCHOVER_START);
    await savevm.saveCompletePrecopy(f);
    saveEofAndVmdesc(f, cfgDesc, savevm.saveDevices(f));
  });
  assert.deepEqual(bytes, (await buildStream(sourceGuest())).bytes);
});

// Guards global_section_id: ids follow registration order from ram's 2 (QEMU's), live sections first, then the devices.
Deno.test("savevm: section ids follow registration order; ram must register first", async () => {
  const g = new TestGuest();
  const savevm = new SaveVMState(g.devices);
  registerRam(savevm, new RamSaveState(g.blocks, () => "legacy"));
  savevm.registerSavevmLive("x-live", 0, 1, {});
  assert.deepEqual(savevm.entries().map((e) => [e.idstr, e.sectionId]), [
    ["ram", 2],
    ["x-live", 3],
    ["cpu", 4],
    ["serial", 5],
    ["migtest-timer", 6],
    ["migtest-queue", 7],
  ]);
  const bytes = await encode((f) => void savevm.saveDevices(f));
  assert.deepEqual([...bytes.subarray(0, 5)], [QEMU_VM_SECTION_FULL, 0, 0, 0, 4], "first device section id");
  const late = new SaveVMState([]);
  late.registerSavevmLive("x-live", 0, 1, {});
  assert.throws(
    () => registerRam(late, new RamLoadState(g.blocks)),
    /ram must register first \(got section 3\)/,
  );
});

Deno.test("savevm: UUID validation", async (t) => {
  const uuidA = parseUuid(UUID_A);
  const uuidB = parseUuid(UUID_B);
  assert.equal(uuidToString(uuidA), UUID_A);
  assert.throws(() => parseUuid("1111-2222"), /Fail to parse UUID string '1111-2222'/);
  await t.step("mismatch", async () => {
    const { bytes } = await buildStream(sourceGuest(), { machineType: MACHINE, uuid: uuidA });
    await loadError(
      bytes,
      new RegExp(`^UUID received is ${UUID_A} and local is ${UUID_B}$`),
      8,
      { machineType: MACHINE, uuid: uuidB },
    );
  });
  await t.step("match, local null, or not sent: no error", async () => {
    const { bytes } = await buildStream(sourceGuest(), { machineType: MACHINE, uuid: uuidA });
    assert.equal((await load(bytes, { machineType: MACHINE, uuid: parseUuid(UUID_A) })).error, null);
    assert.equal((await load(bytes, { machineType: MACHINE, uuid: null })).error, null);
    const plain = await buildStream(sourceGuest());
    assert.equal((await load(plain.bytes, { machineType: MACHINE, uuid: uuidB })).error, null);
  });
});

Deno.test("savevm: configuration/capabilities (mapped-ram) as QEMU 10.0 writes and checks it", async (t) => {
  const mapped = { machineType: MACHINE, uuid: null, capabilities: ["mapped-ram"] };
  await t.step("the subsection's bytes", async () => {
    const bytes = await encode((w) => void saveHeader(w, mapped));
    // From QEMU 10.0.2's own file: SUBSECTION, "configuration/capabilities", version 1, count 1, the name.
    const sub = new TextEncoder().encode("configuration/capabilities");
    const want = [
      5,
      sub.length,
      ...sub,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      1,
      10,
      ...new TextEncoder().encode("mapped-ram"),
    ];
    assert.deepEqual([...bytes.subarray(bytes.length - want.length)], want);
  });
  await t.step("both on, or both off: no error", async () => {
    const { bytes } = await buildStream(sourceGuest(), mapped);
    assert.equal((await load(bytes, mapped)).error, null);
    const plain = await buildStream(sourceGuest());
    assert.equal(
      (await load(plain.bytes, { machineType: MACHINE, uuid: null, capabilities: [] })).error,
      null,
    );
  });
  await t.step("one side only: QEMU's error, either way", async () => {
    const { bytes } = await buildStream(sourceGuest(), mapped);
    await loadError(bytes, /^Capability mapped-ram is off, but received capability is on$/, 8);
    const plain = await buildStream(sourceGuest());
    await loadError(plain.bytes, /^Capability mapped-ram is on, but received capability is off$/, 8, mapped);
  });
  await t.step("an unknown capability name", async () => {
    const bytes = await encode((w) => void saveHeader(w, { ...mapped, capabilities: ["warp-drive"] }));
    await loadError(bytes, /^get_capability: Received unknown capability warp-drive$/);
  });
});

/** Magic, version and a configuration section for MACHINE, then whatever `rest` writes. */
function afterHeader(rest: (w: QEMUFileWriter) => void): Promise<Uint8Array> {
  return encode((w) => {
    saveHeader(w, { machineType: MACHINE, uuid: null });
    rest(w);
  });
}
const HEADER_LEN = 4 + 4 + 1 + 4 + MACHINE.length;

Deno.test("savevm: header and configuration errors", async (t) => {
  await t.step("bad magic", async () => {
    const bytes = await encode((w) => {
      w.putBe32(0x51455600);
      w.putBe32(QEMU_VM_FILE_VERSION);
    });
    await loadError(bytes, /^Not a migration stream \(magic 0x51455600, expected 0x5145564d\)$/, 0);
  });
  await t.step("version 2 and others", async () => {
    for (
      const [v, re] of [[2, /^SaveVM v2 format is obsolete/], [
        4,
        /^Unsupported migration stream version 4$/,
      ]] as const
    ) {
      const bytes = await encode((w) => {
        w.putBe32(QEMU_VM_FILE_MAGIC);
        w.putBe32(v);
      });
      await loadError(bytes, re, 4);
    }
  });
  await t.step("missing configuration", async () => {
    const bytes = await encode((w) => {
      w.putBe32(QEMU_VM_FILE_MAGIC);
      w.putBe32(QEMU_VM_FILE_VERSION);
      w.put8(QEMU_VM_SECTION_FULL);
    });
    await loadError(bytes, /^Configuration section missing \(found type 4\)$/, 8);
  });
  await t.step("truncated header", async () => {
    await loadError(
      new Uint8Array([0x51, 0x45, 0x56]),
      /^Unexpected end of stream while reading file header$/,
      3,
    );
  });
  await t.step("machine type mismatch", async () => {
    const bytes = await encode((w) => {
      saveHeader(w, { machineType: "pc-i440fx-9.2", uuid: null });
      w.put8(QEMU_VM_EOF);
    });
    await loadError(
      bytes,
      new RegExp(`^Machine type received is 'pc-i440fx-9.2' and local is '${MACHINE}'$`),
      8,
    );
  });
  await t.step("machine type name too long", async () => {
    const bytes = await encode((w) => {
      w.putBe32(QEMU_VM_FILE_MAGIC);
      w.putBe32(QEMU_VM_FILE_VERSION);
      w.put8(QEMU_VM_CONFIGURATION);
      w.putBe32(0x10000);
    });
    await loadError(bytes, /^configuration: machine type name of 65536 bytes is too long$/, 9);
  });
  await t.step("unknown configuration subsection", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_SUBSECTION);
      w.putCountedString("configuration/bogus");
      w.putBe32(1);
    });
    await loadError(
      bytes,
      /^VM subsection 'configuration\/bogus' in 'configuration' does not exist$/,
      HEADER_LEN,
    );
  });
  await t.step("target-page-bits", async () => {
    for (const bits of [12, 13]) {
      const bytes = await afterHeader((w) => {
        w.put8(QEMU_VM_SUBSECTION);
        w.putCountedString("configuration/target-page-bits");
        w.putBe32(1);
        w.putBe32(bits);
        w.put8(QEMU_VM_EOF);
      });
      const { error } = await load(bytes);
      if (bits === 12) assert.equal(error, null);
      else {
        assert.ok(error instanceof StreamError);
        assert.equal(error.detail, "Received TARGET_PAGE_BITS is 13 but local is 12");
      }
    }
  });
});

Deno.test("savevm: section errors", async (t) => {
  await t.step("unknown section idstr or instance", async () => {
    const bytes = await afterHeader((w) => {
      saveSectionFull(w, QEMU_VM_SECTION_FULL, 5, "x-bogus-device", 0, 1);
    });
    await loadError(bytes, /^Unknown savevm section or instance 'x-bogus-device' 0\. Make sure/, HEADER_LEN);
    const other = await afterHeader((w) => saveSectionFull(w, QEMU_VM_SECTION_FULL, 5, "serial", 1, 3));
    await loadError(other, /^Unknown savevm section or instance 'serial' 1\./, HEADER_LEN);
  });
  await t.step("section version too new", async () => {
    const bytes = await afterHeader((w) => saveSectionFull(w, QEMU_VM_SECTION_FULL, 1, "cpu", 0, 2));
    await loadError(bytes, /^savevm: unsupported version 2 for 'cpu' v1$/, HEADER_LEN);
    const ram = await afterHeader((w) => saveSectionFull(w, QEMU_VM_SECTION_START, 0, "ram", 0, 5));
    await loadError(ram, /^savevm: unsupported version 5 for 'ram' v4$/, HEADER_LEN);
  });
  await t.step("older section version goes to the loader", async () => {
    const bytes = await afterHeader((w) => saveSectionFull(w, QEMU_VM_SECTION_START, 0, "ram", 0, 3));
    await loadError(bytes, /^ram: unsupported version_id 3 \(expected 4\)$/);
    const serial = await afterHeader((w) => saveSectionFull(w, QEMU_VM_SECTION_FULL, 2, "serial", 0, 1));
    await loadError(serial, /^serial: incoming version_id 1 is too old for local minimum version_id 2$/);
  });
  await t.step("unknown section type", async () => {
    // After a record (right after the configuration a 0x05 would be a configuration subsection).
    for (
      const type of [
        QEMU_VM_SUBSECTION,
        QEMU_VM_VMDESCRIPTION,
        QEMU_VM_CONFIGURATION,
        9,
        QEMU_VM_SECTION_FOOTER,
      ]
    ) {
      const bytes = await afterHeader((w) => {
        saveCommand(w, MIG_CMD_SWITCHOVER_START);
        w.put8(type);
        w.putBytes(new Uint8Array(8));
      });
      await loadError(bytes, new RegExp(`^Unknown savevm section type ${type}$`), HEADER_LEN + 5);
    }
  });
  await t.step("PART or END for an unknown section id", async () => {
    for (const type of [QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END] as const) {
      const bytes = await afterHeader((w) => saveSectionShort(w, type, 7));
      await loadError(bytes, /^Unknown savevm section 7$/, HEADER_LEN);
    }
  });
  /** A START "ram" section with an empty-ish setup body, then `footer`. */
  const ramStart = (footer: (w: QEMUFileWriter) => void) =>
    afterHeader((w) => {
      saveSectionFull(w, QEMU_VM_SECTION_START, 0, "ram", 0, 4);
      new RamSaveState(new TestGuest().blocks, () => "legacy").setup(w);
      footer(w);
    });
  const footerAt = HEADER_LEN + 1 + 4 + 4 + 4 + 4 + (8 + 7 + 8 + 9 + 8 + 8);
  await t.step("missing footer", async () => {
    const more = await ramStart((w) => {
      w.put8(QEMU_VM_SECTION_FULL);
      w.putBytes(new Uint8Array(16));
    });
    await loadError(more, /^Missing section footer for ram$/, footerAt);
    // Regression: with fewer than 5 bytes left this was reported as truncation.
    await loadError(await ramStart((w) => w.put8(QEMU_VM_EOF)), /^Missing section footer for ram$/, footerAt);
  });
  await t.step("truncated footer", async () => {
    await loadError(
      await ramStart((w) => w.putBytes(new Uint8Array([QEMU_VM_SECTION_FOOTER, 0, 0]))),
      /^Unexpected end of stream while reading section footer of 'ram'$/,
      footerAt + 3,
    );
  });
  await t.step("mismatched footer", async () => {
    await loadError(
      await ramStart((w) => saveFooter(w, 3)),
      /^Mismatched section id in footer for ram - read 0x3 expected 0x0$/,
      footerAt,
    );
  });
  await t.step("mismatched footer after PART", async () => {
    const bytes = await ramStart((w) => {
      saveFooter(w, 0);
      saveSectionShort(w, QEMU_VM_SECTION_PART, 0);
      w.putBe64(RAM_SAVE_FLAG_EOS);
      saveFooter(w, 0x40);
    });
    await loadError(
      bytes,
      /^Mismatched section id in footer for ram - read 0x40 expected 0x0$/,
      footerAt + 5 + 5 + 8,
    );
  });
  await t.step("section ids come from the stream, not from the local registration", async () => {
    // The source may number its sections differently; PART is matched by the id its START used.
    const bytes = await afterHeader((w) => {
      saveSectionFull(w, QEMU_VM_SECTION_START, 0x99, "ram", 0, 4);
      new RamSaveState(new TestGuest().blocks, () => "legacy").setup(w);
      saveFooter(w, 0x99);
      saveSectionShort(w, QEMU_VM_SECTION_END, 0x99);
      w.putBe64(RAM_SAVE_FLAG_EOS);
      saveFooter(w, 0x99);
      w.put8(QEMU_VM_EOF);
    });
    assert.equal((await load(bytes)).error, null);
  });
});

Deno.test("savevm: command errors", async (t) => {
  const cmd = (c: number, len: number) =>
    afterHeader((w) => {
      w.put8(QEMU_VM_COMMAND);
      w.putBe16(c);
      w.putBe16(len);
      w.putBytes(new Uint8Array(len));
      w.put8(QEMU_VM_EOF);
    });
  await t.step("invalid", async () => {
    await loadError(await cmd(MIG_CMD_INVALID, 0), /^Invalid command 0$/, HEADER_LEN);
    await loadError(await cmd(MIG_CMD_MAX, 0), /^Invalid command 12$/, HEADER_LEN);
    await loadError(await cmd(0xffff, 0), /^Invalid command 65535$/, HEADER_LEN);
  });
  await t.step("bad length", async () => {
    await loadError(await cmd(MIG_CMD_PING, 2), /^PING received bad length 2\/4$/, HEADER_LEN);
    await loadError(await cmd(MIG_CMD_OPEN_RETURN_PATH, 1), /^OPEN_RETURN_PATH received bad length 1\/0$/);
    await loadError(await cmd(MIG_CMD_SWITCHOVER_START, 4), /^SWITCHOVER_START received bad length 4\/0$/);
  });
  await t.step("unsupported", async () => {
    await loadError(
      await cmd(3, 16),
      /^VM_COMMAND POSTCOPY_ADVISE \(0x3\) not supported by this destination$/,
      HEADER_LEN,
    );
    await loadError(
      await cmd(MIG_CMD_ENABLE_COLO, 0),
      /^MIG_CMD_ENABLE_COLO received, but x-colo is not enabled on this destination$/,
    );
    await loadError(await cmd(10, 3), /^VM_COMMAND RECV_BITMAP \(0xa\) not supported/);
  });
  await t.step("accepted", async () => {
    assert.deepEqual((await load(await cmd(MIG_CMD_SWITCHOVER_START, 0))).events, []);
    const ping = await afterHeader((w) => {
      saveCommand(w, MIG_CMD_PING, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
      w.put8(QEMU_VM_EOF);
    });
    const { error, events } = await load(ping);
    assert.equal(error, null);
    assert.deepEqual(events, [`ping ${0xdeadbeef}`]);
  });
  await t.step("truncated payload", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_COMMAND);
      w.putBe16(MIG_CMD_PING);
      w.putBe16(4);
      w.putBe16(0);
    });
    await loadError(bytes, /^Unexpected end of stream while reading PING payload$/, HEADER_LEN + 7);
  });
});

Deno.test("savevm: after EOF", async (t) => {
  await t.step("no vmdesc is fine", async () => {
    assert.equal((await load(await afterHeader((w) => w.put8(QEMU_VM_EOF)))).error, null);
  });
  await t.step("oversized vmdesc length", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_EOF);
      w.put8(QEMU_VM_VMDESCRIPTION);
      w.putBe32((10 << 20) + 1);
    });
    await loadError(bytes, /^vmdesc of 10485761 bytes exceeds the 10485760-byte limit$/, HEADER_LEN + 1);
  });
  await t.step("something else than a vmdesc", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_EOF);
      w.put8(QEMU_VM_SECTION_FULL);
    });
    await loadError(bytes, /^Expected vmdescription section, but got 4$/, HEADER_LEN + 1);
  });
  await t.step("truncated vmdesc", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_EOF);
      w.put8(QEMU_VM_VMDESCRIPTION);
      w.putBe32(0x2000);
      w.putBytes(new Uint8Array(0x1800));
    });
    await loadError(bytes, /^Unexpected end of stream while reading vmdesc$/, HEADER_LEN + 6 + 0x1800);
  });
  await t.step("a long vmdesc is skipped in chunks and the stream ends there", async () => {
    const bytes = await afterHeader((w) => {
      w.put8(QEMU_VM_EOF);
      w.put8(QEMU_VM_VMDESCRIPTION);
      w.putBe32(0x2345);
      w.putBytes(new Uint8Array(0x2345).fill(0x20));
      w.put8(0x42);
    });
    const { error, events } = await load(bytes);
    assert.equal(error, null);
    assert.deepEqual(events, ["trailing bytes"]);
  });
});

Deno.test("savevm: device load failures name the vmsd", async (t) => {
  await t.step("queue post_load rejects prod - cons > size", async () => {
    const src = sourceGuest();
    src.devRegs[DEV_RING_PROD] = 200;
    src.devRegs[DEV_RING_CONS] = 10;
    const { bytes } = await buildStream(src);
    const { error, dst } = await load(bytes);
    assert.ok(error instanceof StreamError, String(error));
    assert.equal(
      error.detail,
      "migtest-queue: post_load failed: inconsistent queue indices (prod 200, cons 10, size 64)",
    );
    // The registers keep their pre-load values.
    assert.equal(dst.devRegs[DEV_RING_PROD], 0);
  });
  await t.step("cpu refuses another workload's state", async () => {
    const { bytes } = await buildStream(sourceGuest());
    const { error } = await load(bytes, undefined, new TestGuest("a-b"));
    assert.ok(error instanceof StreamError, String(error));
    assert.match(error.detail, /^cpu\.workload: incoming value 2 differs from the current value 1$/);
  });
});

/** analyze-migration.py's read_migration_debug_json: last NUL, first '{' after it, 0x06 five bytes before. */
function findVmdesc(bytes: Uint8Array): { json: string; typeAt: number } {
  const nul = bytes.lastIndexOf(0);
  const brace = bytes.indexOf(0x7b, nul);
  assert.ok(nul >= 0 && brace > nul);
  assert.equal(bytes[brace - 5], QEMU_VM_VMDESCRIPTION);
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(brace - 4);
  assert.equal(brace + len, bytes.length);
  return { json: new TextDecoder().decode(bytes.subarray(brace, brace + len)), typeAt: brace - 5 };
}

/** Skips one RAM chunk (until EOS), the hand-written parser analyze-migration.py uses for "ram". */
async function skipRamChunk(r: QEMUFileReader): Promise<void> {
  for (;;) {
    await r.need(8, "ram word");
    const [hi, lo] = r.getBe64Parts();
    const flags = lo & (PAGE - 1);
    const addr = hi * 0x1_0000_0000 + lo - flags;
    if (flags === RAM_SAVE_FLAG_EOS) return;
    if (flags === RAM_SAVE_FLAG_MEM_SIZE) {
      for (let left = addr; left > 0;) {
        await r.getCountedString("block");
        await r.need(8, "len");
        left -= r.getBe64("len");
      }
      continue;
    }
    if (!(flags & RAM_SAVE_FLAG_CONTINUE)) await r.getCountedString("block");
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    const n = kind === RAM_SAVE_FLAG_PAGE ? PAGE : kind === RAM_SAVE_FLAG_ZERO ? 1 : -1;
    assert.ok(n > 0, `unexpected ram flags 0x${flags.toString(16)}`);
    await r.need(n, "body");
    r.skip(n);
  }
}

Deno.test("savevm: vmdesc JSON lists every device and decodes each FULL section", async () => {
  const src = sourceGuest();
  const uuid = parseUuid(UUID_A);
  const { bytes, eofAt } = await buildStream(src, { machineType: MACHINE, uuid });
  const { json, typeAt } = findVmdesc(bytes);
  assert.equal(typeAt, eofAt + 1);
  assert.equal(bytes[eofAt], QEMU_VM_EOF);
  const vmdesc = JSON.parse(json) as {
    page_size: number;
    configuration: Record<string, unknown>;
    devices: VmdescDevice[];
  };
  assert.equal(vmdesc.page_size, PAGE);
  assert.equal(vmdesc.configuration.vmsd_name, "configuration");
  assert.deepEqual(
    (vmdesc.configuration.subsections as { vmsd_name: string }[]).map((s) => s.vmsd_name),
    ["configuration/uuid"],
  );
  assert.deepEqual(
    vmdesc.devices.map((d) => [d.name, d.instance_id, d.vmsd_name, d.version]),
    [["cpu", 0, "cpu", 1], ["serial", 0, "serial", 3], ["migtest-timer", 0, "migtest-timer", 2], [
      "migtest-queue",
      0,
      "migtest-queue",
      1,
    ]],
  );
  for (const d of vmdesc.devices) {
    assert.ok(Array.isArray(d.fields) && d.fields.length > 0, d.name);
    for (const f of d.fields) {
      assert.ok(typeof f.name === "string" && typeof f.type === "string" && f.size > 0);
    }
  }
  assert.deepEqual(Object.keys(vmdesc.devices[0]), ["name", "instance_id", "vmsd_name", "version", "fields"]);
  assert.deepEqual(vmdesc.devices[1].subsections?.map((s) => s.vmsd_name), ["serial/tx"]);

  // Walk the stream like analyze-migration.py and decode each FULL section with the vmdesc alone.
  const parsed = new Map<string, VmJsonObject>();
  const seen: string[] = [];
  await withReader(bytes, async (r) => {
    await r.need(9, "header");
    assert.equal(r.getBe32(), QEMU_VM_FILE_MAGIC);
    assert.equal(r.getBe32(), QEMU_VM_FILE_VERSION);
    assert.equal(r.get8(), QEMU_VM_CONFIGURATION);
    const cfg = await parseWithVmdesc(r, vmdesc.configuration as unknown as VmdescDevice);
    assert.equal(cfg.len, MACHINE.length);
    assert.equal(
      cfg.name,
      Array.from(new TextEncoder().encode(MACHINE), (b) => b.toString(16).padStart(2, "0")).join(""),
    );
    assert.equal(
      cfg["configuration/uuid"] && (cfg["configuration/uuid"] as VmJsonObject).uuid,
      UUID_A.replaceAll("-", ""),
    );
    const names = new Map<number, string>();
    for (;;) {
      await r.need(1, "type");
      const type = r.get8();
      if (type === QEMU_VM_EOF) break;
      if (type === QEMU_VM_COMMAND) {
        await r.need(4, "cmd");
        r.getBe16();
        const len = r.getBe16();
        await r.need(len, "cmd payload");
        r.skip(len);
        seen.push("cmd");
        continue;
      }
      await r.need(4, "section id");
      const id = r.getBe32();
      if (type === QEMU_VM_SECTION_START || type === QEMU_VM_SECTION_FULL) {
        const name = await r.getCountedString("idstr");
        await r.need(8, "instance/version");
        const instance = r.getBe32();
        const version = r.getBe32();
        names.set(id, name);
        seen.push(`${type === QEMU_VM_SECTION_START ? "start" : "full"} ${name}`);
        if (name === RAM_IDSTR) await skipRamChunk(r);
        else {
          const desc = vmdesc.devices.find((d) => d.name === name && d.instance_id === instance);
          assert.ok(desc, name);
          assert.equal(version, desc.version);
          parsed.set(name, await parseWithVmdesc(r, desc));
        }
      } else {
        assert.ok(type === QEMU_VM_SECTION_PART || type === QEMU_VM_SECTION_END, `type ${type}`);
        assert.equal(names.get(id), RAM_IDSTR);
        seen.push(type === QEMU_VM_SECTION_PART ? "part" : "end");
        await skipRamChunk(r);
      }
      await r.need(5, "footer");
      assert.equal(r.get8(), QEMU_VM_SECTION_FOOTER);
      assert.equal(r.getBe32(), id);
    }
    assert.equal(r.position, eofAt + 1);
  });
  assert.deepEqual(seen, [
    "cmd",
    "cmd",
    "start ram",
    "part",
    "part",
    "cmd",
    "end",
    "full cpu",
    "full serial",
    "full migtest-timer",
    "full migtest-queue",
  ]);
  assert.deepEqual(parsed.get("cpu"), {
    workload: 2,
    phase: 2,
    index: 300,
    pass: 65,
    rng: [0x12345678, 0xffffffff, 7, 0x40000000],
  });
  assert.deepEqual(parsed.get("serial"), {
    divider: 12,
    rbr: 0,
    ier: 0,
    iir: 1,
    lcr: 3,
    mcr: 0,
    lsr: 0x60,
    msr: 0xb0,
    scr: 0x5a,
    fcr: 0,
    "serial/tx": { txCount: 2, lastTx: 0x42 },
  });
  assert.deepEqual(parsed.get("migtest-timer"), { count: 0x1_0000_0005, enabled: true, periodNs: 1_000_000 });
  assert.deepEqual(parsed.get("migtest-queue"), { prod: 100, cons: 90, size: 64 });
});
