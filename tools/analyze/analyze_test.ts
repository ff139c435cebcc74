import { parseUuid } from "../../engine/uuid.ts";
import assert from "node:assert/strict";
import { TestGuest } from "../../engine/testing/streams.ts";
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
import { WORKLOAD_IDS } from "../../engine/guest/workload.ts";
import { QEMUFileWriter, StreamError } from "../../engine/qemu_file.ts";
import {
  RAM_IDSTR,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
  RAM_VERSION_ID,
  RamSaveState,
} from "../../engine/ram.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "../../engine/ram_block.ts";
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
import { BytesLink } from "../../engine/transport/buffer.ts";
import { fileIncoming, fileOutgoing } from "../../engine/transport/file.ts";
import type { VmJsonObject } from "../../engine/vmstate.ts";
import { type AnalysisResult, analyzeStream, findVmdesc } from "./analyze.ts";

const PAGE = TARGET_PAGE_SIZE;
const FIXTURE = new URL("../../fixtures/streams/qemu-7.2-pc-32M.mig", import.meta.url).pathname;
const ANALYZE = new URL("./analyze.ts", import.meta.url).pathname;
const UUID = "11111111-2222-3333-4444-555555555555";
/** sha-256 of SeaBIOS's bios-256k.bin as shipped with Debian 12's QEMU 7.2: the pc.bios block. */
const SEABIOS_SHA256 = "2da2018c7555e50b660a84a273a14a79cb87b9070fe6a90e9f151a53e357f7e6";

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-analyze-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` on a writer over a `file:` link to `path` and returns the file's bytes. */
async function writeStream(
  path: string,
  fn: (f: QEMUFileWriter) => void | Promise<void>,
): Promise<Uint8Array> {
  const link = await fileOutgoing(path, 0);
  try {
    const f = new QEMUFileWriter(link, 16384);
    await fn(f);
    await f.flush();
    link.truncateToEnd();
  } finally {
    link.close();
  }
  return await Deno.readFile(path);
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function rejects(p: Promise<unknown>, detail: RegExp, offset?: number): Promise<StreamError> {
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

// ---------------------------------------------------------------------------------------------------
// The real QEMU 7.2 stream

Deno.test("analyze: a real QEMU 7.2 stream (pc, 32 MiB)", async () => {
  const size = (await Deno.stat(FIXTURE)).size;
  const res = await analyzeStream(FIXTURE, { ram: true });
  assert.deepEqual(res.header, { magic: "0x5145564d", version: 3, offset: 0 });
  assert.deepEqual(res.configuration, {
    offset: 8,
    machine_type: "pc-i440fx-7.2",
    subsections: ["configuration/uuid"],
    uuid: UUID,
  });
  assert.deepEqual(res.warnings, []);
  assert.equal(res.trailing_bytes, 0);

  // RAM: every page of every block is sent once in the first (and, for a stopped guest, only) pass.
  const ram = res.ram;
  assert.ok(ram);
  assert.equal(ram.page_size, 4096);
  assert.deepEqual(ram.blocks.map((b) => [b.idstr, b.length]), [
    ["pc.ram", 32 << 20],
    ["/rom@etc/acpi/tables", 128 << 10],
    ["pc.bios", 256 << 10],
    ["pc.rom", 128 << 10],
    ["/rom@etc/table-loader", 4096],
    ["/rom@etc/acpi/rsdp", 4096],
  ]);
  assert.equal(ram.total_bytes, ram.blocks.reduce((n, b) => n + b.length, 0));
  for (const b of ram.blocks) {
    assert.equal(b.page_count, b.length / 4096);
    assert.equal(b.pages_sent, b.page_count, b.idstr);
    assert.ok(b.pages.normal + b.pages.zero >= b.page_count, b.idstr);
    assert.equal(b.pages.xbzrle + b.pages.compressed, 0);
    assert.match(b.sha256 ?? "", /^[0-9a-f]{64}$/);
  }
  const byName = new Map(ram.blocks.map((b) => [b.idstr, b]));
  assert.deepEqual(byName.get("pc.ram")?.pages, { normal: 0, zero: 8192, xbzrle: 0, compressed: 0 });
  // query-migrate on the source said: 49 normal, 8273 duplicate.
  assert.equal(ram.blocks.reduce((n, b) => n + b.pages.normal, 0), 49);
  assert.equal(ram.blocks.reduce((n, b) => n + b.pages.zero, 0), 8273);
  assert.equal(ram.records, 8322);
  assert.equal(byName.get("pc.bios")?.sha256, SEABIOS_SHA256);
  assert.equal(byName.get("pc.ram")?.sha256, await sha256(new Uint8Array(32 << 20)));
  assert.equal(ram.multifd_flushes, 0);
  assert.equal(ram.eos, 3);

  // Sections: ram START/PART/END, 30 FULL device sections, EOF, vmdesc; sizes tile the file.
  const kinds = res.sections.map((s) => s.type);
  assert.deepEqual(kinds.slice(0, 3), ["start", "part", "end"]);
  assert.deepEqual(kinds.slice(3, -2), Array(30).fill("full"));
  assert.deepEqual(kinds.slice(-2), ["eof", "vmdescription"]);
  assert.ok(res.sections.slice(0, 3).every((s) => s.idstr === "ram" && s.section_id === 2));
  assert.equal(res.sections[0].version_id, 4);
  let at = 66; // 8-byte header + the configuration section
  for (const s of res.sections) {
    assert.equal(s.offset, at, `${s.type} ${s.idstr ?? ""}`);
    at += s.size ?? 0;
  }
  assert.equal(at, size);
  assert.deepEqual(res.vmdesc, { offset: 288767, length: 98649, page_size: 4096, devices: 30 });

  // Devices, decoded with the vmdesc alone.
  const devices = Object.keys(res.devices);
  assert.equal(devices.length, 30);
  for (
    const name of ["timer (0)", "cpu (0)", "apic (0)", "i8259 (0)", "i8259 (1)", "fw_cfg (0)", "PCIBUS (0)"]
  ) {
    assert.ok(devices.includes(name), name);
  }
  assert.ok(devices.includes("0000:00:01.1/ide (0)"));
  assert.deepEqual(res.devices["timer (0)"], {
    cpu_ticks_offset: 0,
    unused: "0000000000000000",
    cpu_clock_offset: 0,
  });
  const cpu = res.devices["cpu (0)"];
  assert.equal(cpu["env.eip"], 0xfff0); // the reset vector
  const segs = cpu["env.segs"];
  assert.ok(Array.isArray(segs) && segs.length === 6);
  assert.equal((segs[1] as VmJsonObject).selector, 0xf000);
  assert.equal((segs[1] as VmJsonObject).base, 0xffff0000);
  assert.ok("cpu/poll_control_msr" in cpu, "a subsection");
  // "int32 le" and "timer" decode as integers.
  const i440fx = res.devices["0000:00:00.0/I440FX (0)"].parent_obj as VmJsonObject;
  assert.equal(i440fx.version_id, 2);
  assert.equal(res.devices["mc146818rtc (0)"].periodic_timer, -1);
  const runstate = res.devices["globalstate (0)"].runstate;
  assert.ok(typeof runstate === "string" && runstate.startsWith("7072656c61756e636800")); // "prelaunch\0"
});

Deno.test("analyze: the QEMU stream at an offset, as bytes, and over a Link", async () => {
  const plain = await analyzeStream(FIXTURE);
  const bytes = await Deno.readFile(FIXTURE);
  assert.deepEqual(await analyzeStream(bytes), plain);
  const link = await fileIncoming(FIXTURE, 0);
  try {
    assert.deepEqual(await analyzeStream(link), plain);
  } finally {
    link.close();
  }
  await withTempDir(async (dir) => {
    const path = `${dir}/shifted.mig`;
    const shifted = new Uint8Array(4096 + bytes.length).fill(0xaa, 0, 4096);
    shifted.set(bytes, 4096);
    await Deno.writeFile(path, shifted);
    const res = await analyzeStream(path, { offset: 4096 });
    assert.deepEqual(res.devices, plain.devices);
    assert.deepEqual(res.ram, plain.ram);
    assert.deepEqual(
      res.sections.map((s) => s.offset),
      plain.sections.map((s) => s.offset + 4096),
    );
    assert.equal(res.vmdesc?.offset, (plain.vmdesc?.offset ?? 0) + 4096);
    // Errors name the file offset (and the stream offset).
    shifted[4096] ^= 0xff;
    await Deno.writeFile(path, shifted);
    const err = await rejects(analyzeStream(path, { offset: 4096 }), /^Not a migration stream/, 4096);
    assert.match(err.message, /\(at file offset 4096, stream offset 0\)$/);
  });
});

Deno.test("analyze: the QEMU stream without its vmdesc", async () => {
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
  assert.equal(await findVmdesc(bytes.subarray(0, eof + 1000)), null);
  const desc = await findVmdesc(bytes);
  assert.equal(desc?.offset, eof + 1);
  assert.equal(desc?.json.devices[0].name, "timer");
});

// ---------------------------------------------------------------------------------------------------
// Streams from our engine

/** The test guest with its devices in a recognisable state. */
function guest() {
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

interface EngineStream {
  bytes: Uint8Array;
  blocks: RamBlock[];
  devices: Device[];
  ram: RamSaveState;
}

/** A full precopy stream as the migration thread writes it, through the `file:` transport. */
async function engineStream(path: string, withDevices = true): Promise<EngineStream> {
  const { blocks, devices } = guest();
  const ram = new RamSaveState(blocks, () => "legacy", () => 0);
  const bytes = await writeStream(path, async (f) => {
    const cfg = saveHeader(f, { machineType: "pc-i440fx-migtest", uuid: parseUuid(UUID) });
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

Deno.test("analyze: a stream from our engine", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/engine.mig`;
    const src = await engineStream(path);
    const res = await analyzeStream(path, { ram: true });
    assert.deepEqual(res.warnings, []);
    assert.deepEqual(res.configuration, {
      offset: 8,
      machine_type: "pc-i440fx-migtest",
      subsections: ["configuration/uuid"],
      uuid: UUID,
    });
    assert.deepEqual(
      res.sections.map((s) => s.command ?? (s.idstr ? `${s.type} ${s.idstr}` : s.type)),
      [
        "OPEN_RETURN_PATH",
        "PING",
        "start ram",
        "part ram",
        "part ram",
        "SWITCHOVER_START",
        "end ram",
        "full cpu",
        "full serial",
        "full migtest-timer",
        "full migtest-queue",
        "eof",
        "vmdescription",
      ],
    );
    assert.equal(res.sections[1].value, 1);
    assert.deepEqual(res.sections.filter((s) => s.idstr === "ram").map((s) => s.pages), [0, 6, 6, 5]);

    // Page counts: what the sender counted, per block; every page sent; digests of the source memory.
    const ram = res.ram!;
    assert.deepEqual(ram.blocks.map((b) => [b.idstr, b.length]), [["pc.ram", 13 * PAGE], [
      "vga.vram",
      3 * PAGE,
    ]]);
    assert.equal(ram.blocks.reduce((n, b) => n + b.pages.normal, 0), src.ram.counters.normal);
    assert.equal(ram.blocks.reduce((n, b) => n + b.pages.zero, 0), src.ram.counters.duplicate);
    // pc.ram: pages 0, 3, 6, 9, 12 are zero, the other 8 are not, and page 1 is sent again in END.
    assert.deepEqual(ram.blocks[0].pages, { normal: 8 + 1, zero: 5, xbzrle: 0, compressed: 0 });
    assert.deepEqual(ram.blocks[1].pages, { normal: 2, zero: 1, xbzrle: 0, compressed: 0 });
    assert.equal(ram.records, 17);
    assert.equal(ram.eos, 4);
    for (const [i, b] of ram.blocks.entries()) {
      assert.equal(b.pages_sent, b.page_count);
      assert.equal(b.sha256, await sha256(src.blocks[i].mem));
    }

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

Deno.test("analyze: a stream without devices needs no vmdesc", async () => {
  await withTempDir(async (dir) => {
    const res = await analyzeStream((await engineStream(`${dir}/s.mig`, false)).bytes);
    assert.equal(res.vmdesc, null);
    assert.deepEqual(res.devices, {});
    assert.equal(res.sections.at(-1)?.type, "eof");
    assert.ok(res.ram && res.ram.blocks.every((b) => b.pages_sent === b.page_count));
  });
});

/** Header, configuration, then RAM sections written record by record. */
function rawRam(f: QEMUFileWriter, body: (f: QEMUFileWriter) => void): void {
  saveHeader(f, { machineType: "m", uuid: null });
  saveSectionFull(f, QEMU_VM_SECTION_START, 0, RAM_IDSTR, 0, RAM_VERSION_ID);
  f.putBe64(4 * PAGE + RAM_SAVE_FLAG_MEM_SIZE);
  f.putCountedString("a");
  f.putBe64(2 * PAGE);
  f.putCountedString("b");
  f.putBe64(2 * PAGE);
  f.putBe64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
  f.putBe64(RAM_SAVE_FLAG_EOS);
  saveFooter(f, 0);
  body(f);
  f.put8(QEMU_VM_EOF);
}

Deno.test("analyze: XBZRLE pages, MULTIFD_FLUSH, CONTINUE across sections", async () => {
  await withTempDir(async (dir) => {
    const bytes = await writeStream(`${dir}/x.mig`, (f) =>
      rawRam(f, (f) => {
        saveSectionShort(f, QEMU_VM_SECTION_PART, 0);
        f.putBe64(PAGE + RAM_SAVE_FLAG_PAGE);
        f.putCountedString("b");
        f.putBytes(new Uint8Array(PAGE).fill(7));
        f.putBe64(0 + RAM_SAVE_FLAG_XBZRLE + RAM_SAVE_FLAG_CONTINUE);
        f.put8(0x01);
        f.putBe16(3);
        f.putBytes(new Uint8Array([1, 2, 3]));
        f.putBe64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
        f.putBe64(RAM_SAVE_FLAG_EOS);
        saveFooter(f, 0);
        saveSectionShort(f, QEMU_VM_SECTION_END, 0);
        // CONTINUE persists across sections: still block "b".
        f.putBe64(0 + RAM_SAVE_FLAG_ZERO + RAM_SAVE_FLAG_CONTINUE);
        f.put8(0);
        f.putBe64(PAGE + RAM_SAVE_FLAG_ZERO);
        f.putCountedString("a");
        f.put8(0);
        f.putBe64(RAM_SAVE_FLAG_EOS);
        saveFooter(f, 0);
      }));
    const res = await analyzeStream(bytes, { ram: true });
    const ram = res.ram!;
    assert.equal(ram.multifd_flushes, 2);
    assert.equal(ram.eos, 3);
    assert.deepEqual(ram.blocks.map((b) => [b.idstr, b.pages, b.pages_sent]), [
      ["a", { normal: 0, zero: 1, xbzrle: 0, compressed: 0 }, 1],
      ["b", { normal: 1, zero: 1, xbzrle: 1, compressed: 0 }, 2],
    ]);
    assert.equal(ram.blocks[0].sha256, await sha256(new Uint8Array(2 * PAGE)));
    assert.equal(ram.blocks[1].sha256, null);
    assert.match(ram.blocks[1].sha256_note ?? "", /XBZRLE/);

    // A bad XBZRLE encoding byte, and CONTINUE before any block.
    const badXbzrle = await writeStream(`${dir}/y.mig`, (f) =>
      rawRam(f, (f) => {
        saveSectionShort(f, QEMU_VM_SECTION_PART, 0);
        f.putBe64(RAM_SAVE_FLAG_XBZRLE);
        f.putCountedString("a");
        f.put8(0x02);
        f.putBe16(1);
        f.put8(0);
      }));
    await rejects(analyzeStream(badXbzrle), /^XBZRLE page with encoding flag 0x02 \(expected 0x01\)$/);
    const noBlock = await writeStream(`${dir}/z.mig`, (f) =>
      rawRam(f, (f) => {
        saveSectionShort(f, QEMU_VM_SECTION_PART, 0);
        f.putBe64(RAM_SAVE_FLAG_ZERO + RAM_SAVE_FLAG_CONTINUE);
      }));
    await rejects(analyzeStream(noBlock), /^RAM record with CONTINUE but no previous block$/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Malformed streams

Deno.test("analyze: malformed streams are rejected with the offset", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/good.mig`;
    const { bytes } = await engineStream(path);
    const good: AnalysisResult = await analyzeStream(path);
    const cpu = good.sections.find((s) => s.idstr === "cpu")!;
    const mutated = async (name: string, edit: (b: Uint8Array) => Uint8Array) => {
      const p = `${dir}/${name}.mig`;
      await Deno.writeFile(p, edit(bytes.slice()));
      return p;
    };

    await t.step("truncated in the RAM pages", async () => {
      const part = good.sections.find((s) => s.type === "part")!;
      const cut = part.offset + 100;
      const p = await mutated("truncated", (b) => b.subarray(0, cut));
      await rejects(analyzeStream(p), /^Unexpected end of stream while reading page data$/, cut);
    });
    await t.step("bad magic", async () => {
      const p = await mutated("magic", (b) => (b[3] = 0x00, b));
      await rejects(
        analyzeStream(p),
        /^Not a migration stream \(magic 0x51455600, expected 0x5145564d\)$/,
        0,
      );
    });
    await t.step("bad version", async () => {
      const p = await mutated("version", (b) => (b[7] = 4, b));
      await rejects(analyzeStream(p), /^Unsupported migration stream version 4 \(expected 3\)$/, 4);
    });
    await t.step("corrupted section type", async () => {
      const p = await mutated("type", (b) => (b[cpu.offset] = 0x09, b));
      await rejects(analyzeStream(p), /^Unknown section type 0x09$/, cpu.offset);
    });
    await t.step("bad footer marker", async () => {
      const at = cpu.offset + cpu.size! - 5;
      const p = await mutated("footer", (b) => (b[at] = 0x7f, b));
      await rejects(
        analyzeStream(p),
        /^Missing section footer for 'cpu' \(section 1\): found 0x7f, expected 0x7e$/,
        at,
      );
    });
    await t.step("footer with the wrong section id", async () => {
      const at = cpu.offset + cpu.size! - 5;
      const p = await mutated("footer-id", (b) => (b[at + 4] ^= 0x10, b));
      await rejects(analyzeStream(p), /^Mismatched section id in footer for 'cpu': read 17, expected 1$/, at);
    });
    await t.step("the CLI: one line on stderr, exit 1", async () => {
      const p = await mutated("cli", (b) => (b[cpu.offset] = 0x09, b));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", ANALYZE, p],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 1);
      assert.equal(new TextDecoder().decode(out.stdout), "");
      const err = new TextDecoder().decode(out.stderr);
      assert.equal(err.trimEnd().split("\n").length, 1, err);
      assert.match(err, new RegExp(`Unknown section type 0x09 \\(at stream offset ${cpu.offset}\\)\\n$`));
    });
  });
});

Deno.test("analyze: the CLI prints JSON (state and desc) and exits 0", async () => {
  const run = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", ANALYZE, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const state = await run(FIXTURE);
  assert.equal(state.code, 0, new TextDecoder().decode(state.stderr));
  const res = JSON.parse(new TextDecoder().decode(state.stdout)) as AnalysisResult;
  assert.equal(res.configuration?.machine_type, "pc-i440fx-7.2");
  assert.equal(Object.keys(res.devices).length, 30);
  const desc = await run(FIXTURE, "--dump", "desc");
  assert.equal(desc.code, 0);
  const json = JSON.parse(new TextDecoder().decode(desc.stdout));
  assert.equal(json.page_size, 4096);
  assert.equal(json.devices.length, 30);
  const usage = await run(FIXTURE, "--dump", "bogus");
  assert.equal(usage.code, 2);
});

Deno.test("analyze: a stream read from a link gives the same analysis as its file", async () => {
  const fromFile = await analyzeStream(FIXTURE, { ram: true });
  const link = new BytesLink(await Deno.readFile(FIXTURE), "fixture link");
  try {
    assert.deepEqual(await analyzeStream(link, { ram: true }), fromFile);
  } finally {
    link.close();
  }
});
