import assert from "node:assert/strict";
import fc from "fast-check";
import { QEMUFileWriter, StreamError } from "./qemu_file.ts";
import {
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
  RamLoadState,
  RamSaveState,
  type ZeroPageDetection,
} from "./ram.ts";
import { popcount32, RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import { DirtyRing } from "./guest/dirty_ring.ts";
import { encode, withReader } from "./testing/streams_test_util.ts";

const PAGE = TARGET_PAGE_SIZE;

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Two blocks whose page counts are not multiples of 32 (bitmap tail words are partial). */
const SPECS = [{ idstr: "pc.ram", pages: 37 }, { idstr: "vga.vram", pages: 45 }];

function makeBlocks(specs = SPECS, fill = 0): RamBlock[] {
  return specs.map(({ idstr, pages }) => {
    const b = new RamBlock({ idstr, size: pages * PAGE });
    b.mem.fill(fill);
    return b;
  });
}

/** Random pages, about a third of them all-zero; returns the number of zero pages. */
function randomize(blocks: RamBlock[], seed: number): number {
  const rnd = mulberry32(seed);
  let zeros = 0;
  for (const b of blocks) {
    for (let p = 0; p < b.pages; p++) {
      const page = b.page(p);
      if (rnd() < 0.33) {
        page.fill(0);
        zeros++;
      } else {
        for (let i = 0; i < PAGE; i += 4) page[i] = (rnd() * 256) | 0;
        page[PAGE - 1] = 1; // never accidentally zero
      }
    }
  }
  return zeros;
}

/** rateExceeded that lets exactly `k` pages through per iterate call. */
function pages(k: number): () => boolean {
  let calls = 0;
  return () => calls++ >= k;
}

interface RamRecord {
  offset: number;
  flags: number;
  addr: number;
  idstr?: string;
}

/** An independent decoder of one RAM chunk (until EOS), for inspecting what the saver wrote. */
function walkChunk(bytes: Uint8Array, start: number): { records: RamRecord[]; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const records: RamRecord[] = [];
  let at = start;
  for (;;) {
    const word = Number(view.getBigUint64(at));
    const rec: RamRecord = { offset: at, flags: word % PAGE, addr: word - (word % PAGE) };
    at += 8;
    records.push(rec);
    const kind = rec.flags & ~RAM_SAVE_FLAG_CONTINUE;
    if (kind === RAM_SAVE_FLAG_EOS) return { records, end: at };
    if (kind === RAM_SAVE_FLAG_MEM_SIZE) {
      let left = rec.addr;
      while (left > 0) {
        const n = bytes[at];
        at += 1 + n;
        left -= Number(view.getBigUint64(at));
        at += 8;
      }
      continue;
    }
    if (!(rec.flags & RAM_SAVE_FLAG_CONTINUE)) {
      const n = bytes[at];
      rec.idstr = new TextDecoder().decode(bytes.subarray(at + 1, at + 1 + n));
      at += 1 + n;
    }
    if (kind === RAM_SAVE_FLAG_PAGE) at += PAGE;
    else if (kind === RAM_SAVE_FLAG_ZERO) at += 1;
    else throw new Error(`unexpected flags 0x${rec.flags.toString(16)}`);
  }
}

interface Migrated {
  bytes: Uint8Array;
  /** Stream offsets where each chunk (setup, iterate..., complete) starts. */
  chunkStarts: number[];
  save: RamSaveState;
  sent: number[];
}

/** setup, iterate in chunks of `k` pages until none is left, (optional mutation), complete. */
async function migrate(
  src: RamBlock[],
  zpd: ZeroPageDetection,
  k: number,
  between?: (iteration: number, save: RamSaveState) => void,
): Promise<Migrated> {
  const save = new RamSaveState(src, () => zpd, () => 0);
  const chunkStarts: number[] = [];
  const sent: number[] = [];
  const bytes = await encode(async (w) => {
    chunkStarts.push(w.position);
    save.setup(w);
    for (let i = 0;; i++) {
      between?.(i, save);
      chunkStarts.push(w.position);
      const n = await save.iterate(w, pages(k));
      sent.push(n);
      if (n < k) break;
    }
    chunkStarts.push(w.position);
    await save.complete(w);
  });
  return { bytes, chunkStarts, save, sent };
}

/** Loads one chunk per load() call, as PART/END sections would, and checks nothing is left. */
async function loadAll(bytes: Uint8Array, dst: RamBlock[], chunks: number): Promise<RamLoadState> {
  const load = new RamLoadState(dst);
  await withReader(bytes, async (r) => {
    for (let i = 0; i < chunks; i++) await load.load(r, 4);
    assert.ok(await r.atEnd());
  });
  return load;
}

function assertSameMemory(src: RamBlock[], dst: RamBlock[]): void {
  src.forEach((b, i) => {
    for (let p = 0; p < b.pages; p++) {
      assert.ok(b.page(p).every((v, j) => v === dst[i].page(p)[j]), `${b.idstr} page ${p} differs`);
    }
  });
}

Deno.test("ram: round trip in rate-limited chunks with CONTINUE persisting across chunks", async () => {
  const src = makeBlocks();
  const zeros = randomize(src, 1);
  const total = 37 + 45;
  const m = await migrate(src, "legacy", 10);
  const dst = makeBlocks(SPECS, 0xaa);
  const load = await loadAll(m.bytes, dst, m.chunkStarts.length);
  assertSameMemory(src, dst);

  assert.deepEqual(m.sent, [10, 10, 10, 10, 10, 10, 10, 10, 2]);
  assert.deepEqual(m.save.counters, { duplicate: zeros, normal: total - zeros, transferred: m.bytes.length });
  assert.deepEqual(load.counters, { normal: total - zeros, zero: zeros, xbzrle: 0, multifdFlush: 0 });
  assert.equal(m.save.dirtyPages, 0);
  for (const b of dst) assert.equal(b.receivedmap.reduce((n, w) => n + popcount32(w), 0), b.pages);

  // Setup chunk: MEM_SIZE with the total, then the block list, then EOS.
  const setup = walkChunk(m.bytes, 0);
  assert.deepEqual(setup.records.map((r) => [r.flags, r.addr]), [
    [RAM_SAVE_FLAG_MEM_SIZE, total * PAGE],
    [RAM_SAVE_FLAG_EOS, 0],
  ]);
  assert.equal(setup.end, m.chunkStarts[1]);

  // Walk every iterate/complete chunk: an idstr appears only when the block changes.
  const firsts: RamRecord[] = [];
  const named: string[] = [];
  for (let c = 1; c < m.chunkStarts.length; c++) {
    const { records, end } = walkChunk(m.bytes, m.chunkStarts[c]);
    assert.equal(end, c + 1 < m.chunkStarts.length ? m.chunkStarts[c + 1] : m.bytes.length);
    if (records.length > 1) firsts.push(records[0]);
    for (const r of records) if (r.idstr) named.push(r.idstr);
  }
  assert.deepEqual(named, ["pc.ram", "vga.vram"]);
  assert.equal(firsts[0].flags & RAM_SAVE_FLAG_CONTINUE, 0);
  // Chunk 2 starts at pc.ram page 10 and chunk 5 at vga.vram page 3, both with CONTINUE and no idstr.
  assert.equal(firsts[1].flags & RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_CONTINUE);
  assert.equal(firsts[1].addr, 10 * PAGE);
  assert.equal(firsts[4].flags & RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_CONTINUE);
  assert.equal(firsts[4].addr, 3 * PAGE);
  assert.ok(firsts.slice(1).every((r) => r.flags & RAM_SAVE_FLAG_CONTINUE));
});

Deno.test("ram: zero-page-detection none sends zero pages as PAGE", async () => {
  const src = makeBlocks();
  const zeros = randomize(src, 2);
  assert.ok(zeros > 0);
  const m = await migrate(src, "none", 1000);
  const dst = makeBlocks(SPECS, 0x55);
  const load = await loadAll(m.bytes, dst, m.chunkStarts.length);
  assertSameMemory(src, dst);
  assert.deepEqual(m.save.counters, { duplicate: 0, normal: 82, transferred: m.bytes.length });
  assert.deepEqual(load.counters, { normal: 82, zero: 0, xbzrle: 0, multifdFlush: 0 });
  const recs = walkChunk(m.bytes, m.chunkStarts[1]).records;
  assert.ok(recs.every((r) => (r.flags & ~RAM_SAVE_FLAG_CONTINUE) !== RAM_SAVE_FLAG_ZERO));
});

Deno.test("ram: zero pages cost 9 bytes with CONTINUE, 10 + idlen without", async () => {
  const src = makeBlocks([{ idstr: "r", pages: 3 }]);
  const m = await migrate(src, "multifd", 10);
  // setup (8 + 1+1 + 8 + 8), iterate (8+1+1+1 + 9 + 9 + 8), complete (8).
  assert.equal(m.bytes.length, 26 + 37 + 8);
  assert.deepEqual(m.save.counters, { duplicate: 3, normal: 0, transferred: 71 });
});

Deno.test("ram: pages dirtied after setup are re-sent at complete", async () => {
  const src = makeBlocks();
  randomize(src, 3);
  const [a, b] = src;
  const m = await migrate(src, "legacy", 20, (i) => {
    if (i !== 2) return;
    // After 40 pages: a.3, a.5 and b.0 were sent; b.40 is sent later in this round, with the new content.
    a.page(3).fill(0x33);
    a.markDirty(3);
    b.page(40)[17] ^= 0xff;
    b.markDirty(40);
    a.page(5).fill(0);
    a.markDirty(5);
    // A bit set with no change of content is still re-sent.
    b.markDirty(0);
  });
  // Iterations do not sync, so all four log bits reach the bitmap only at complete.
  assert.deepEqual(m.sent, [20, 20, 20, 20, 2]);
  assert.equal(m.save.counters.normal + m.save.counters.duplicate, 82 + 4);
  assert.equal(m.save.dirtySyncCount, 2);
  const last = walkChunk(m.bytes, m.chunkStarts[m.chunkStarts.length - 1]).records;
  assert.deepEqual(last.map((r) => [r.idstr, r.addr / PAGE, r.flags & ~RAM_SAVE_FLAG_CONTINUE]), [
    ["pc.ram", 3, RAM_SAVE_FLAG_PAGE],
    [undefined, 5, RAM_SAVE_FLAG_ZERO],
    ["vga.vram", 0, RAM_SAVE_FLAG_PAGE],
    [undefined, 40, RAM_SAVE_FLAG_PAGE],
    [undefined, 0, RAM_SAVE_FLAG_EOS],
  ]);
  const dst = makeBlocks(SPECS, 0xaa);
  await loadAll(m.bytes, dst, m.chunkStarts.length);
  assertSameMemory(src, dst);
});

Deno.test("ram: a sync during iteration adds only pages not already pending", async () => {
  const src = makeBlocks();
  randomize(src, 5);
  const [a, b] = src;
  let added = -1;
  const m = await migrate(src, "legacy", 20, (i, save) => {
    if (i !== 2) return;
    for (const [blk, p] of [[a, 3], [a, 5], [b, 0], [b, 40]] as const) {
      blk.page(p)[100] ^= 0x5a;
      blk.markDirty(p);
    }
    const before = save.dirtyPages;
    save.syncBitmap();
    added = save.dirtyPages - before;
  });
  // b.40 was still pending, so only three pages are added, and the round picks them up after wrapping.
  assert.equal(added, 3);
  assert.deepEqual(m.sent, [20, 20, 20, 20, 5]);
  assert.equal(m.save.dirtySyncCount, 3);
  const last = walkChunk(m.bytes, m.chunkStarts[m.chunkStarts.length - 1]).records;
  assert.deepEqual(last.map((r) => r.flags), [RAM_SAVE_FLAG_EOS]);
  const dst = makeBlocks(SPECS, 0xaa);
  await loadAll(m.bytes, dst, m.chunkStarts.length);
  assertSameMemory(src, dst);
});

Deno.test("ram: syncBitmap counts new pages and computes the dirty rate once per second", async () => {
  const blocks = makeBlocks();
  let now = 0;
  const save = new RamSaveState(blocks, () => "legacy", () => now);
  await encode(async (w) => {
    save.setup(w);
    assert.equal(save.dirtyPages, 82);
    assert.equal(save.pendingBytes(), 82 * PAGE);
    assert.equal(await save.iterate(w, () => false), 82);
  });
  assert.equal(save.pendingBytes(), 0);
  for (const p of [1, 2, 3, 4, 5]) blocks[0].markDirty(p);
  now = 500;
  save.syncBitmap();
  assert.equal(save.dirtyPages, 5);
  assert.equal(save.dirtyPagesRate, 0);
  for (const p of [5, 6, 7, 8, 9, 10]) blocks[1].markDirty(p);
  blocks[0].markDirty(1); // already pending: not counted again
  now = 2000;
  save.syncBitmap();
  assert.equal(save.dirtyPages, 11);
  // 11 pages dirtied over the 2000 ms period.
  assert.equal(save.dirtyPagesRate, 6);
  blocks[1].markDirty(20);
  now = 2500;
  save.syncBitmap();
  assert.equal(save.dirtyPages, 12);
  assert.equal(save.dirtyPagesRate, 6, "a period shorter than 1 s keeps the old rate");
  assert.equal(save.dirtySyncCount, 4);
});

Deno.test("ram: iterate stops after MAX_WAIT, checking the clock every 64 pages", async () => {
  const src = makeBlocks([{ idstr: "big", pages: 200 }]);
  let clock = 0;
  const save = new RamSaveState(src, () => "legacy", () => clock);
  await encode(async (w) => {
    save.setup(w);
    // 1 ms per page: the check after page 64 sees 64 ms > 50 ms.
    const sent = await save.iterate(w, () => {
      clock++;
      return false;
    });
    assert.equal(sent, 64);
    // A frozen clock never stops it.
    assert.equal(await save.iterate(w, () => false), 136);
  });
});

Deno.test("ram: the loader keeps last_recv_block across load() calls", async () => {
  const dst = makeBlocks(SPECS, 0xaa);
  const bytes = await encode((w) => {
    w.putBe64(2 * PAGE + RAM_SAVE_FLAG_ZERO);
    w.putCountedString("vga.vram");
    w.put8(0);
    w.putBe64(RAM_SAVE_FLAG_EOS);
    // A new section whose first record continues the previous block.
    w.putBe64(4 * PAGE + RAM_SAVE_FLAG_PAGE + RAM_SAVE_FLAG_CONTINUE);
    w.putBytes(new Uint8Array(PAGE).fill(7));
    w.putBe64(RAM_SAVE_FLAG_MULTIFD_FLUSH);
    w.putBe64(RAM_SAVE_FLAG_EOS);
  });
  const load = await loadAll(bytes, dst, 2);
  assert.ok(dst[1].page(2).every((v) => v === 0));
  assert.ok(dst[1].page(4).every((v) => v === 7));
  assert.ok(dst[1].page(3).every((v) => v === 0xaa));
  assert.ok(dst[0].page(2).every((v) => v === 0xaa));
  assert.deepEqual(load.counters, { normal: 1, zero: 1, xbzrle: 0, multifdFlush: 1 });
});

/** Loads a hand-built stream into fresh blocks and expects a StreamError. */
async function loadError(
  build: (w: QEMUFileWriter) => void,
  detail: RegExp,
  offset?: number,
  version = 4,
): Promise<StreamError> {
  const bytes = await encode(build);
  const load = new RamLoadState(makeBlocks());
  let caught: unknown;
  await withReader(bytes, async (r) => {
    try {
      for (;;) await load.load(r, version);
    } catch (e) {
      caught = e;
    }
  });
  assert.ok(caught instanceof StreamError, `expected a StreamError, got ${String(caught)}`);
  assert.match(caught.detail, detail);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  return caught;
}

const TOTAL = (37 + 45) * PAGE;

function goodHeader(w: QEMUFileWriter): void {
  w.putBe64(TOTAL + RAM_SAVE_FLAG_MEM_SIZE);
  w.putCountedString("pc.ram");
  w.putBe64(37 * PAGE);
  w.putCountedString("vga.vram");
  w.putBe64(45 * PAGE);
  w.putBe64(RAM_SAVE_FLAG_EOS);
}

Deno.test("ram: loader rejects malformed streams", async (t) => {
  await t.step("CONTINUE with no previous block", async () => {
    await loadError(
      (w) => {
        goodHeader(w);
        w.putBe64(RAM_SAVE_FLAG_PAGE + RAM_SAVE_FLAG_CONTINUE);
      },
      /^Ack, bad migration stream!/,
      48,
    );
  });
  await t.step("unknown block idstr in a page record", async () => {
    await loadError(
      (w) => {
        w.putBe64(PAGE + RAM_SAVE_FLAG_ZERO);
        w.putCountedString("nope");
        w.put8(0);
      },
      /^Can't find block nope$/,
      0,
    );
  });
  await t.step("offset beyond the block", async () => {
    await loadError(
      (w) => {
        w.putBe64(37 * PAGE + RAM_SAVE_FLAG_PAGE);
        w.putCountedString("pc.ram");
      },
      /^Illegal RAM offset 0x25000 in block pc\.ram$/,
      0,
    );
    await loadError(
      (w) => {
        w.putBe64(0x1_0000_0000 * 3 + RAM_SAVE_FLAG_ZERO);
        w.putCountedString("pc.ram");
      },
      /^Illegal RAM offset 0x300000000 /,
      0,
    );
  });
  await t.step("zero page with a non-zero fill byte", async () => {
    await loadError(
      (w) => {
        w.putBe64(RAM_SAVE_FLAG_ZERO);
        w.putCountedString("pc.ram");
        w.put8(7);
      },
      /^Found a zero page with value 7$/,
      0,
    );
  });
  await t.step("unknown flag combinations", async () => {
    for (const flags of [RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE, 0x1, 0x100, 0x400, 0x0, 0xfff]) {
      await loadError(
        (w) => {
          w.putBe64(RAM_SAVE_FLAG_EOS);
          w.putBe64(PAGE + flags);
        },
        new RegExp(`^Unknown combination of migration flags: 0x${flags.toString(16)}$`),
        8,
      );
    }
  });
  await t.step("RAM size mismatch", async () => {
    await loadError(
      (w) => {
        w.putBe64(TOTAL + PAGE + RAM_SAVE_FLAG_MEM_SIZE);
      },
      new RegExp(`^RAM size mismatch: stream announces ${TOTAL + PAGE} bytes, local RAM is ${TOTAL} bytes`),
      0,
    );
  });
  await t.step("unknown block in the block list", async () => {
    await loadError(
      (w) => {
        w.putBe64(TOTAL + RAM_SAVE_FLAG_MEM_SIZE);
        w.putCountedString("pc.ram");
        w.putBe64(37 * PAGE);
        w.putCountedString("x.rom");
        w.putBe64(45 * PAGE);
      },
      /^Unknown ramblock "x\.rom", cannot accept migration$/,
      23,
    );
  });
  await t.step("block length mismatch", async () => {
    await loadError(
      (w) => {
        w.putBe64(TOTAL + RAM_SAVE_FLAG_MEM_SIZE);
        w.putCountedString("pc.ram");
        w.putBe64(38 * PAGE);
      },
      /^Length mismatch: pc\.ram: 0x26000 in != 0x25000$/,
      8,
    );
  });
  await t.step("block length out of range", async () => {
    await loadError(
      (w) => {
        w.putBe64(TOTAL + RAM_SAVE_FLAG_MEM_SIZE);
        w.putCountedString("pc.ram");
        w.putBytes(new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0]));
      },
      /^length of RAM block pc\.ram 0xff00000000000000 is out of range$/,
      15,
    );
  });
  await t.step(
    "XBZRLE with a bad encoding byte, an oversized length, a bad delta; HOOK refused",
    async () => {
      const xbzrle = (enc: number, len: number, data: number[]) => (w: QEMUFileWriter) => {
        w.putBe64(RAM_SAVE_FLAG_XBZRLE);
        w.putCountedString("pc.ram");
        w.put8(enc);
        w.putBe16(len);
        w.putBytes(new Uint8Array(data));
      };
      await loadError(xbzrle(2, 1, [0]), /^Failed to load XBZRLE page - wrong compression!$/, 0);
      await loadError(xbzrle(1, 4097, []), /^Failed to load XBZRLE page - len overflow!$/, 0);
      // zrun 0, then an nzrun of 0 bytes: a zero-length nzrun is invalid.
      await loadError(xbzrle(1, 2, [0, 0]), /^Failed to load XBZRLE page - decode error!/, 0);
      await loadError(
        (w) => {
          w.putBe64(RAM_SAVE_FLAG_HOOK);
        },
        /^RAM_SAVE_FLAG_HOOK is only valid with RDMA$/,
        0,
      );
    },
  );
  await t.step("wrong version_id", async () => {
    await loadError((w) => goodHeader(w), /^ram: unsupported version_id 3 \(expected 4\)$/, 0, 3);
  });
  await t.step("truncated page data", async () => {
    await loadError(
      (w) => {
        w.putBe64(RAM_SAVE_FLAG_PAGE);
        w.putCountedString("pc.ram");
        w.putBytes(new Uint8Array(100));
      },
      /^Unexpected end of stream while reading page data$/,
      115,
    );
  });
});

const SMALL = [{ idstr: "a", pages: 3 }, { idstr: "b", pages: 5 }];

/** Loads until the stream gives out; returns what ended it. */
async function loadUntilError(bytes: Uint8Array, specs = SMALL): Promise<unknown> {
  const load = new RamLoadState(makeBlocks(specs));
  return await withReader(bytes, async (r) => {
    try {
      for (;;) await load.load(r, 4);
    } catch (e) {
      return e;
    }
  });
}

Deno.test("ram: any byte soup ends the loader with a StreamError (property)", async () => {
  const flagsArb = fc.oneof(
    {
      arbitrary: fc.constantFrom(
        0x2,
        0x8,
        0x22,
        0x28,
        0x200,
        0x4,
        0x10,
        0x0,
        0x1,
        0x20,
        0x40,
        0x80,
        0x100,
        0xa,
      ),
      weight: 6,
    },
    { arbitrary: fc.nat(PAGE - 1), weight: 1 },
  );
  // A valid block list for SMALL, so later records reach the page paths.
  const header = await encode((w) => {
    w.putBe64(8 * PAGE + RAM_SAVE_FLAG_MEM_SIZE);
    w.putCountedString("a");
    w.putBe64(3 * PAGE);
    w.putCountedString("b");
    w.putBe64(5 * PAGE);
  });
  const recordArb = fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 24 }), weight: 1 },
    { arbitrary: fc.constant(header), weight: 1 },
    {
      weight: 6,
      arbitrary: fc.record({
        page: fc.nat(9),
        flags: flagsArb,
        idstr: fc.option(fc.constantFrom("a", "b", "zz", ""), { nil: undefined }),
        body: fc.oneof(
          fc.uint8Array({ maxLength: 12 }),
          fc.constant(new Uint8Array([0])),
          fc.constant(new Uint8Array(PAGE)),
        ),
      }).map(({ page, flags, idstr, body }) => {
        const w = new Uint8Array(8 + (idstr === undefined ? 0 : 1 + idstr.length) + body.length);
        new DataView(w.buffer).setBigUint64(0, BigInt(page * PAGE + flags));
        let at = 8;
        if (idstr !== undefined) {
          w[at++] = idstr.length;
          w.set(new TextEncoder().encode(idstr), at);
          at += idstr.length;
        }
        w.set(body, at);
        return w;
      }),
    },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(recordArb, { maxLength: 12 }), async (parts) => {
      const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        bytes.set(p, off);
        off += p.length;
      }
      const e = await loadUntilError(bytes);
      assert.ok(e instanceof StreamError, `not a StreamError: ${String(e)}`);
      assert.ok(e.offset >= 0 && e.offset <= bytes.length, e.message);
    }),
    { seed: 20260301, numRuns: 300 },
  );
});

Deno.test("ram: every truncated prefix of a valid stream is a truncation error at its end (property)", async () => {
  const src = makeBlocks(SMALL);
  randomize(src, 4);
  const m = await migrate(src, "legacy", 3, (i) => {
    if (i === 1) {
      src[1].page(4)[9] = 1;
      src[1].markDirty(4);
    }
  });
  await fc.assert(
    fc.asyncProperty(fc.nat(m.bytes.length - 1), async (n) => {
      const e = await loadUntilError(m.bytes.subarray(0, n));
      assert.ok(e instanceof StreamError, `not a StreamError: ${String(e)}`);
      assert.match(e.detail, /^Unexpected end of stream while reading /);
      assert.equal(e.offset, n);
    }),
    { seed: 31337, numRuns: 150 },
  );
  // The whole stream loads and then ends cleanly at a record boundary.
  const e = await loadUntilError(m.bytes);
  assert.ok(e instanceof StreamError);
  assert.equal(e.detail, "Unexpected end of stream while reading RAM record header");
  assert.equal(e.offset, m.bytes.length);
});

Deno.test("ram: each bitmap sync reaps the vCPU's dirty ring first (kvm_dirty_ring_flush)", () => {
  const block = new RamBlock({ idstr: "pc.ram", size: 64 * PAGE });
  const ring = new DirtyRing(DirtyRing.create(1024, [block.pages]), [block.dirtyLog]);
  const save = new RamSaveState([block], () => "legacy", () => 0, { flushDirtyRing: () => void ring.reap() });
  save.syncBitmap();
  const before = save.dirtyPages;
  // Pages written after the first sync sit on the ring, not in the dirty bitmap, until reaped.
  for (const p of [3, 17, 40]) ring.mark(0, p);
  save.syncBitmap();
  assert.equal(ring.pending, 0);
  assert.ok([3, 17, 40].every((p) => block.isDirty(p)), "a page still on the ring was missed by the sync");
  assert.ok(save.dirtyPages >= before);
});
