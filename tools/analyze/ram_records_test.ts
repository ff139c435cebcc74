import assert from "node:assert/strict";
import {
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_FULL,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from "../../engine/ram.ts";
import {
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_PART,
  saveFooter,
  saveSectionShort,
} from "../../engine/savevm.ts";
import { encode, withReader } from "../../engine/testing/streams_test_util.ts";
import type { QEMUFileWriter } from "../../engine/qemu_file.ts";
import { RamRecords } from "./ram_records.ts";
import { analyzeStream } from "./stream.ts";
import { PAGE, rawRam, rejects, sha256, withTempDir, writeStream } from "./analyze_test_util.ts";

Deno.test("ram records: XBZRLE pages, MULTIFD_FLUSH, CONTINUE across sections", async () => {
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
  });
});

/** The RAM records of one PART section after rawRam's block list; the stream is cut after them. */
function partWith(records: (f: QEMUFileWriter) => void): Promise<Uint8Array> {
  return encode((f) =>
    rawRam(f, (f) => {
      saveSectionShort(f, QEMU_VM_SECTION_PART, 0);
      records(f);
    })
  );
}

/** Offset of the PART section's first record in a partWith stream. */
async function firstRecordAt(): Promise<number> {
  return (await partWith(() => {})).length - 1; // everything but the EOF byte
}

Deno.test("ram records: malformed records, in the engine's wording, at the record", async (t) => {
  const at = await firstRecordAt();
  const cases: [string, (f: QEMUFileWriter) => void, RegExp, number?][] = [
    [
      "unknown flag",
      (f) => f.putBe64(RAM_SAVE_FLAG_MEM_SIZE * 0x100),
      /^Unknown combination of migration flags: 0x400$/,
    ],
    [
      "RAM_SAVE_FLAG_FULL",
      (f) => f.putBe64(RAM_SAVE_FLAG_FULL),
      /^Unknown combination of migration flags: 0x1$/,
    ],
    [
      "RAM_SAVE_FLAG_HOOK",
      (f) => f.putBe64(RAM_SAVE_FLAG_HOOK),
      /^RAM_SAVE_FLAG_HOOK is only valid with RDMA$/,
    ],
    [
      "CONTINUE before any block",
      (f) => f.putBe64(RAM_SAVE_FLAG_ZERO + RAM_SAVE_FLAG_CONTINUE),
      /^Ack, bad migration stream! \(CONTINUE with no previous RAM block\)$/,
    ],
    ["unknown block", (f) => {
      f.putBe64(RAM_SAVE_FLAG_ZERO);
      f.putCountedString("zz");
    }, /^Can't find block zz$/],
    ["offset beyond the block", (f) => {
      f.putBe64(2 * PAGE + RAM_SAVE_FLAG_ZERO);
      f.putCountedString("a");
    }, /^Illegal RAM offset 0x2000 in block a$/],
    ["zero page with a fill byte", (f) => {
      f.putBe64(RAM_SAVE_FLAG_ZERO);
      f.putCountedString("a");
      f.put8(5);
    }, /^Found a zero page with value 5$/],
    ["XBZRLE encoding byte", (f) => {
      f.putBe64(RAM_SAVE_FLAG_XBZRLE);
      f.putCountedString("a");
      f.put8(0x02);
      f.putBe16(1);
      f.put8(0);
    }, /^Failed to load XBZRLE page - wrong compression!$/],
    ["XBZRLE longer than a page", (f) => {
      f.putBe64(RAM_SAVE_FLAG_XBZRLE);
      f.putCountedString("a");
      f.put8(0x01);
      f.putBe16(PAGE + 1);
    }, /^Failed to load XBZRLE page - len overflow!$/],
    [
      "block list sent twice",
      (f) => f.putBe64(RAM_SAVE_FLAG_MEM_SIZE),
      /^RAM block list \(MEM_SIZE\) sent twice$/,
    ],
    [
      "compressed page too long",
      (f) => {
        f.putBe64(RAM_SAVE_FLAG_COMPRESS_PAGE);
        f.putCountedString("a");
        f.putBe32(PAGE * 2);
      },
      /^Compressed page of 8192 bytes exceeds 4110$/,
      at + 8 + 2,
    ],
    [
      "truncated page",
      (f) => {
        f.putBe64(RAM_SAVE_FLAG_PAGE);
        f.putCountedString("a");
        f.putBytes(new Uint8Array(100));
      },
      /^Unexpected end of stream while reading page data$/,
      at + 8 + 2 + 100 + 1,
    ],
  ];
  for (const [name, records, detail, offset] of cases) {
    await t.step(name, async () => {
      await rejects(analyzeStream(await partWith(records)), detail, offset ?? at);
    });
  }
});

Deno.test("ram records: the block list is checked on its own (no local RAM to compare with)", async (t) => {
  const list = (blocks: [string, number][], total?: number) =>
    encode((f) => {
      f.putBe64((total ?? blocks.reduce((n, [, l]) => n + l, 0)) + RAM_SAVE_FLAG_MEM_SIZE);
      for (const [idstr, len] of blocks) {
        f.putCountedString(idstr);
        f.putBe64(len);
      }
      f.putBe64(RAM_SAVE_FLAG_EOS);
    });
  const chunk = (bytes: Uint8Array) => withReader(bytes, (r) => new RamRecords([]).chunk(r));
  await t.step("not a multiple of the page size", async () => {
    await rejects(
      chunk(await list([["a", 100]], PAGE)),
      /^RAM block a: length 100 is not a multiple of the page size$/,
      8,
    );
  });
  await t.step("listed twice", async () => {
    await rejects(chunk(await list([["a", PAGE], ["a", PAGE]])), /^RAM block a listed twice$/, 8 + 10);
  });
  await t.step("more than the announced total", async () => {
    await rejects(
      chunk(await list([["a", PAGE], ["b", 2 * PAGE]], 2 * PAGE)),
      /^RAM block list overruns the announced total size$/,
      8 + 10,
    );
  });
});

Deno.test("ram records: page size from the caller, a warning when it is a guess; ignore-shared addresses", async () => {
  const bytes = await encode((f) => {
    f.putBe64(0x10000 + RAM_SAVE_FLAG_MEM_SIZE);
    f.putCountedString("big");
    f.putBe64(0x10000);
    f.putBe64(0x4000_0000);
    f.putBe64(0x10000 - 0x10000 + RAM_SAVE_FLAG_ZERO);
    f.putCountedString("big");
    f.put8(0);
    f.putBe64(RAM_SAVE_FLAG_EOS);
  });
  const warnings: string[] = [];
  const ram = new RamRecords(warnings, { pageSize: 0x10000, keepContents: true });
  ram.ignoreShared = true;
  assert.equal(await withReader(bytes, (r) => ram.chunk(r)), 1);
  assert.deepEqual(warnings, []);
  assert.equal(ram.result?.page_size, 0x10000);
  assert.deepEqual(ram.result?.blocks.map((b) => [b.idstr, b.page_count, b.addr, b.pages_sent]), [
    ["big", 1, 0x4000_0000, 1],
  ]);
  await ram.digests();
  assert.equal(ram.result?.blocks[0].sha256, await sha256(new Uint8Array(0x10000)));

  const guessed: string[] = [];
  const eos = await encode((f) => f.putBe64(RAM_SAVE_FLAG_EOS));
  await withReader(eos, (r) => new RamRecords(guessed).chunk(r));
  assert.deepEqual(guessed, [`page size unknown (no vmdesc, no target-page-bits); assuming ${PAGE}`]);
});
