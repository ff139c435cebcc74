import assert from "node:assert/strict";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { RAM_SAVE_FLAG_MEM_SIZE, RamLoadState, RamSaveState } from "./ram.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import {
  bitmapBytes,
  decodeHeader,
  encodeHeader,
  MappedRamBlock,
  MappedRamSave,
  planBlock,
} from "./ram_mapped.ts";
import { fileIncoming, fileOutgoing } from "./transport/file.ts";

const PAGE = TARGET_PAGE_SIZE;

Deno.test("mapped-ram: the header QEMU 10.0 wrote for a 32 MiB pc.ram whose header starts at 114", () => {
  const h = planBlock(114, 32 << 20);
  assert.deepEqual(h, { version: 1, pageSize: 4096, bitmapOffset: 142, pagesOffset: 0x100000 });
  // The bytes of QEMU 10.0.2's own file (migrate file: with mapped-ram, -m 32, pc-i440fx-10.0).
  const qemu = "00000001" + "0000000000001000" + "000000000000008e" + "0000000000100000";
  assert.equal(encodeHeader(h).toHex(), qemu);
  assert.deepEqual(decodeHeader(Uint8Array.fromHex(qemu)), h);
  // A bitmap that reaches past the boundary pushes the pages to the next one.
  assert.equal(planBlock(0x100000 - 30, 8 * PAGE).pagesOffset, 0x200000);
});

Deno.test("mapped-ram: bitmaps are whole 64-bit words, bit i of byte i/8 (x86-64's unsigned long)", () => {
  assert.equal(bitmapBytes(1), 8);
  assert.equal(bitmapBytes(64), 8);
  assert.equal(bitmapBytes(65), 16);
  const mb = new MappedRamBlock(new RamBlock({ idstr: "pc.ram", size: 70 * PAGE }), planBlock(0, 70 * PAGE));
  for (const p of [0, 1, 2, 9, 10, 69]) mb.set(p);
  mb.clear(1);
  assert.deepEqual([...mb.bitmap.subarray(0, 9)], [0b101, 0b110, 0, 0, 0, 0, 0, 0, 0b100000]);
  assert.deepEqual(mb.runs(256), [[0, 1], [2, 1], [9, 2], [69, 1]]);
  for (const p of [3, 4, 5, 6]) mb.set(p);
  assert.deepEqual(mb.runs(3), [[0, 1], [2, 3], [5, 2], [9, 2], [69, 1]]);
});

function blocks(fill: (b: RamBlock, p: number) => void): RamBlock[] {
  return [{ idstr: "pc.ram", pages: 300 }, { idstr: "vga.vram", pages: 17 }].map(({ idstr, pages }) => {
    const b = new RamBlock({ idstr, size: pages * PAGE });
    for (let p = 0; p < pages; p++) fill(b, p);
    return b;
  });
}

/** Saves `src` to a file with mapped-ram (main thread only), then loads it into fresh blocks. */
async function roundTrip(path: string, src: RamBlock[], offset = 0) {
  const out = await fileOutgoing(path, offset);
  const mapped = new MappedRamSave(out);
  const save = new RamSaveState(src, () => "legacy", () => 0, { mappedRam: mapped });
  const w = new QEMUFileWriter(out);
  await save.setup(w);
  await save.iterate(w, () => false);
  await save.complete(w);
  await w.flush();
  out.truncateToEnd();
  out.close();
  const dst = blocks(() => {});
  const link = await fileIncoming(path, offset);
  try {
    const load = new RamLoadState(dst);
    load.mappedRam = [link];
    const r = new QEMUFileReader(link);
    for (let i = 0; i < 3; i++) await load.load(r, 4);
    assert.ok(await r.atEnd(), "the stream ends after the last EOS");
  } finally {
    link.close();
  }
  return { dst, save, mapped };
}

Deno.test("mapped-ram: a save loads back page for page; zero pages are left out of the bitmap", async () => {
  const path = await Deno.makeTempFile();
  try {
    const src = blocks((b, p) => {
      if (p % 5 !== 0) b.page(p).fill((p * 7 + b.idstr.length) & 0xff || 1);
    });
    const { dst, save, mapped } = await roundTrip(path, src);
    src.forEach((b, i) => assert.deepEqual(dst[i].mem, b.mem, `${b.idstr} differs after the load`));
    const pc = mapped.of(src[0]);
    assert.equal(pc.has(0), false, "a zero page has no bit");
    assert.equal(pc.has(1), true);
    assert.equal(save.counters.duplicate, 60 + 4);
    // The pages' area of each block starts on a 1 MiB boundary; the file ends after the last one.
    assert.equal(pc.header.pagesOffset % 0x100000, 0);
    const vga = mapped.of(src[1]);
    assert.ok((await Deno.stat(path)).size <= vga.header.pagesOffset + 17 * PAGE + 64);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("mapped-ram: with file:,offset=N the offsets are absolute and the bytes before N stay", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array(4096).fill(0x58));
    const src = blocks((b, p) => b.page(p).fill(p & 1 ? 0xaa : 0));
    const { dst, mapped } = await roundTrip(path, src, 4096);
    src.forEach((b, i) => assert.deepEqual(dst[i].mem, b.mem));
    assert.ok(mapped.of(src[0]).header.bitmapOffset > 4096);
    const head = (await Deno.readFile(path)).subarray(0, 4096);
    assert.ok(head.every((x) => x === 0x58));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("mapped-ram: a header QEMU would refuse gives its error", async () => {
  const path = await Deno.makeTempFile();
  try {
    const src = blocks((b, p) => b.page(p).fill(1));
    await roundTrip(path, src);
    const file = await Deno.readFile(path);
    // The first header follows MEM_SIZE (8), then "pc.ram" (1 + 6) and its length (8).
    const at = file.findIndex((_, i) =>
      file[i] === 6 && new TextDecoder().decode(file.subarray(i + 1, i + 7)) === "pc.ram"
    ) + 15;
    assert.equal(new DataView(file.buffer).getBigUint64(at - 23) & BigInt(RAM_SAVE_FLAG_MEM_SIZE), 4n);
    for (
      const [patch, error] of [
        [(v: DataView) =>
          v.setUint32(at, 2), /mapped-ram capability version not supported \(expected <= 1, got 2\)/],
        [(v: DataView) =>
          v.setBigUint64(at + 4, 65536n), /invalid page_size 65536 \(expected 4096\)/],
        [(v: DataView) =>
          v.setBigUint64(at + 20, 0x100100n), /pages, region has bad alignment/],
      ] as const
    ) {
      const bad = file.slice();
      patch(new DataView(bad.buffer));
      await Deno.writeFile(path, bad);
      const link = await fileIncoming(path, 0);
      try {
        const load = new RamLoadState(blocks(() => {}));
        load.mappedRam = [link];
        await assert.rejects(load.load(new QEMUFileReader(link), 4), (e) => {
          assert.ok(e instanceof StreamError);
          assert.match(e.message, error);
          return true;
        });
      } finally {
        link.close();
      }
    }
  } finally {
    await Deno.remove(path);
  }
});
