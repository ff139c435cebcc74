import assert from "node:assert/strict";
import type { VmJsonObject } from "../../engine/vmdesc.ts";
import { BytesLink } from "../../engine/transport/buffer.ts";
import { fileIncoming } from "../../engine/transport/file.ts";
import { analyzeStream } from "./stream.ts";
import {
  engineStream,
  FIXTURE,
  MACHINE,
  PAGE,
  rejects,
  sha256,
  UUID,
  withTempDir,
} from "./analyze_test_util.ts";
import type { AnalysisResult } from "./types.ts";

/** sha-256 of SeaBIOS's bios-256k.bin as shipped with Debian 12's QEMU 7.2: the pc.bios block. */
const SEABIOS_SHA256 = "2da2018c7555e50b660a84a273a14a79cb87b9070fe6a90e9f151a53e357f7e6";

// ---------------------------------------------------------------------------------------------------
// The real QEMU 7.2 stream

Deno.test("stream: a real QEMU 7.2 stream (pc, 32 MiB)", async () => {
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

Deno.test("stream: the QEMU stream at an offset, as bytes, and over a Link", async () => {
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
    await assert.rejects(analyzeStream(path, { offset: shifted.length + 1 }), RangeError);
  });
});

Deno.test("stream: a stream read from a link gives the same analysis as its file", async () => {
  const fromFile = await analyzeStream(FIXTURE, { ram: true });
  const link = new BytesLink(await Deno.readFile(FIXTURE), "fixture link");
  try {
    assert.deepEqual(await analyzeStream(link, { ram: true }), fromFile);
  } finally {
    link.close();
  }
});

// ---------------------------------------------------------------------------------------------------
// Streams from our engine

Deno.test("stream: a mapped-ram file from our engine: headers, bitmaps, pages read in place", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/mapped.mig`;
    const src = await engineStream(path, true, true);
    const res = await analyzeStream(path, { ram: true });
    assert.deepEqual(res.warnings, []);
    assert.deepEqual(res.configuration?.capabilities, ["mapped-ram"]);
    assert.equal(res.trailing_bytes, 0);
    for (const b of src.blocks) {
      const got = res.ram!.blocks.find((x) => x.idstr === b.idstr)!;
      const nonZero = Array.from({ length: b.pages }, (_, p) => b.page(p).some((x) => x !== 0)).filter(
        Boolean,
      );
      assert.equal(got.mapped_ram?.pages_present, nonZero.length, `${b.idstr}: zero pages have no bit`);
      assert.equal(got.mapped_ram!.pages_offset % 0x100000, 0);
      assert.equal(got.sha256, await sha256(b.mem), `${b.idstr} as the destination would hold it`);
    }
    // Bytes in memory cannot be read at offsets the stream does not reach in order: refused by name.
    await rejects(analyzeStream(await Deno.readFile(path)), /mapped-ram stream .* is read from a file only/);
  });
});

Deno.test("stream: a stream from our engine", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/engine.mig`;
    const src = await engineStream(path);
    const res = await analyzeStream(path, { ram: true });
    assert.deepEqual(res.warnings, []);
    assert.deepEqual(res.configuration, {
      offset: 8,
      machine_type: MACHINE,
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
  });
});

Deno.test("stream: a stream without devices needs no vmdesc", async () => {
  await withTempDir(async (dir) => {
    const res = await analyzeStream((await engineStream(`${dir}/s.mig`, false)).bytes);
    assert.equal(res.vmdesc, null);
    assert.deepEqual(res.devices, {});
    assert.equal(res.sections.at(-1)?.type, "eof");
    assert.ok(res.ram && res.ram.blocks.every((b) => b.pages_sent === b.page_count));
  });
});

// ---------------------------------------------------------------------------------------------------
// Malformed streams (the wording is the engine's: wording_test.ts holds the two side by side)

Deno.test("stream: malformed streams are rejected with the offset", async (t) => {
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
      await rejects(analyzeStream(p), /^Unsupported migration stream version 4$/, 4);
    });
    await t.step("corrupted section type", async () => {
      const p = await mutated("type", (b) => (b[cpu.offset] = 0x09, b));
      await rejects(analyzeStream(p), /^Unknown savevm section type 9$/, cpu.offset);
    });
    await t.step("bad footer marker", async () => {
      const at = cpu.offset + cpu.size! - 5;
      const p = await mutated("footer", (b) => (b[at] = 0x7f, b));
      await rejects(analyzeStream(p), /^Missing section footer for cpu$/, at);
    });
    await t.step("footer with the wrong section id", async () => {
      const at = cpu.offset + cpu.size! - 5;
      const p = await mutated("footer-id", (b) => (b[at + 4] ^= 0x10, b));
      await rejects(
        analyzeStream(p),
        /^Mismatched section id in footer for cpu - read 0x13 expected 0x3$/,
        at,
      );
    });
  });
});
