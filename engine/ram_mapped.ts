/**
 * mapped-ram (migration/ram.c's mapped-ram paths; docs/devel/migration/mapped-ram.rst): on a seekable
 * file, every RAM block's pages live at fixed offsets. In the block list each block is followed by a
 * 28-byte header (version be32, page size, bitmap offset, pages offset: be64, absolute file offsets);
 * the block's bitmap follows the header and its pages start at the next 1 MiB boundary; the stream goes
 * on after the pages' area. A page sent again lands on its old copy, so the file never grows past RAM.
 * The bitmap (one bit per page present in the file; zero pages are left out) is written at the end, as
 * host `unsigned long` words: on x86-64 that is bit i of byte i/8, least significant first.
 */
import type { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import type { SeekableLink } from "./transport/file.ts";

export const MAPPED_RAM_HDR_VERSION = 1;
/** sizeof(MappedRamHeader), which is packed. */
export const MAPPED_RAM_HDR_SIZE = 28;
/** Where a block's pages may start (also what O_DIRECT needs of the channels' writes). */
export const MAPPED_RAM_FILE_OFFSET_ALIGNMENT = 0x100000;
/** The most a load reads from the pages' area at once (MAPPED_RAM_LOAD_BUF_SIZE). */
export const MAPPED_RAM_LOAD_BUF_SIZE = 0x100000;

export interface MappedRamHeader {
  version: number;
  pageSize: number;
  bitmapOffset: number;
  pagesOffset: number;
}

/** BITS_TO_LONGS(pages) * sizeof(unsigned long): whole 64-bit words. */
export function bitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Where a block whose header starts at absolute offset `at` puts its bitmap and pages. */
export function planBlock(at: number, usedLength: number): MappedRamHeader {
  const bitmapOffset = at + MAPPED_RAM_HDR_SIZE;
  const end = bitmapOffset + bitmapBytes(usedLength / TARGET_PAGE_SIZE);
  const a = MAPPED_RAM_FILE_OFFSET_ALIGNMENT;
  return {
    version: MAPPED_RAM_HDR_VERSION,
    pageSize: TARGET_PAGE_SIZE,
    bitmapOffset,
    pagesOffset: Math.ceil(end / a) * a,
  };
}

export function encodeHeader(h: MappedRamHeader): Uint8Array {
  const b = new Uint8Array(MAPPED_RAM_HDR_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, h.version);
  v.setBigUint64(4, BigInt(h.pageSize));
  v.setBigUint64(12, BigInt(h.bitmapOffset));
  v.setBigUint64(20, BigInt(h.pagesOffset));
  return b;
}

export function decodeHeader(b: Uint8Array): MappedRamHeader {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    version: v.getUint32(0),
    pageSize: Number(v.getBigUint64(4)),
    bitmapOffset: Number(v.getBigUint64(12)),
    pagesOffset: Number(v.getBigUint64(20)),
  };
}

/** A block's place in the file and the bitmap of its pages there (QEMU's block->file_bmap). */
export class MappedRamBlock {
  readonly bitmap: Uint8Array;
  constructor(readonly block: RamBlock, readonly header: MappedRamHeader, bitmap?: Uint8Array) {
    this.bitmap = bitmap ?? new Uint8Array(bitmapBytes(block.usedLength / TARGET_PAGE_SIZE));
  }

  pageOffset(page: number): number {
    return this.header.pagesOffset + page * TARGET_PAGE_SIZE;
  }
  has(page: number): boolean {
    return (this.bitmap[page >> 3] & (1 << (page & 7))) !== 0;
  }
  set(page: number): void {
    this.bitmap[page >> 3] |= 1 << (page & 7);
  }
  clear(page: number): void {
    this.bitmap[page >> 3] &= ~(1 << (page & 7));
  }

  /** Runs of pages present in the file, as [first page, count], none longer than `maxPages`. */
  runs(maxPages: number): [number, number][] {
    const out: [number, number][] = [];
    const pages = this.block.usedLength / TARGET_PAGE_SIZE;
    for (let p = 0; p < pages;) {
      if (!this.has(p)) {
        p++;
        continue;
      }
      let n = 1;
      while (p + n < pages && n < maxPages && this.has(p + n)) n++;
      out.push([p, n]);
      p += n;
    }
    return out;
  }
}

/** Copies contiguous pages out of guest RAM (a shared buffer the file API does not take) for one write. */
export function copyRun(block: RamBlock, first: number, count: number): Uint8Array {
  const at = first * TARGET_PAGE_SIZE;
  return block.mem.slice(at, at + count * TARGET_PAGE_SIZE);
}

/**
 * The save side: each block's layout, written into the block list (mapped_ram_setup_ramblock); the main
 * thread's pages (without multifd) are gathered into runs and written at their offsets; the bitmaps are
 * written at the end (ram_save_file_bmap).
 */
export class MappedRamSave {
  readonly #blocks = new Map<RamBlock, MappedRamBlock>();
  #run: { mb: MappedRamBlock; first: number; pages: Uint8Array[] } | null = null;
  /** Bytes written at page offsets by the main thread. */
  bytes = 0;

  constructor(readonly link: SeekableLink) {}

  of(block: RamBlock): MappedRamBlock {
    const mb = this.#blocks.get(block);
    if (!mb) throw new Error(`mapped-ram: block ${block.idstr} has no layout`);
    return mb;
  }

  /**
   * After the block's idstr and length: its header, then the stream moves past its pages' area. A block
   * x-ignore-shared leaves out gets a header with both offsets 0 and no area (QEMU 11.0's layout; before,
   * QEMU failed to write such a file: "Failed to write bitmap to file: ... Bad address").
   */
  async setupBlock(f: QEMUFileWriter, block: RamBlock, ignored = false): Promise<void> {
    if (ignored) {
      f.putBytes(encodeHeader({ ...planBlock(0, 0), bitmapOffset: 0, pagesOffset: 0 }));
      return;
    }
    await f.flush();
    const header = planBlock(this.link.tell(), block.usedLength);
    this.#blocks.set(block, new MappedRamBlock(block, header));
    f.putBytes(encodeHeader(header));
    await f.flush();
    await this.link.seek(header.pagesOffset + block.usedLength);
  }

  /** A page sent by the main thread: into the current run (written when it ends), its bit set. */
  page(block: RamBlock, page: number): Promise<void> | undefined {
    const mb = this.of(block);
    mb.set(page);
    const run = this.#run;
    const data = copyRun(block, page, 1);
    if (run && run.mb === mb && run.first + run.pages.length === page && run.pages.length < 256) {
      run.pages.push(data);
      return undefined;
    }
    const flushed = this.flush();
    this.#run = { mb, first: page, pages: [data] };
    return flushed;
  }

  /** A zero page: nothing is written and its bit is cleared, so the load leaves it zero. */
  zeroPage(block: RamBlock, page: number): void {
    this.of(block).clear(page);
  }

  /** Writes the pending run. */
  async flush(): Promise<void> {
    const run = this.#run;
    this.#run = null;
    if (!run) return;
    const buf = new Uint8Array(run.pages.length * TARGET_PAGE_SIZE);
    run.pages.forEach((p, i) => buf.set(p, i * TARGET_PAGE_SIZE));
    await this.link.pwrite(buf, run.mb.pageOffset(run.first));
    this.bytes += buf.length;
  }

  /** ram_save_file_bmap: every block's bitmap at its offset. */
  async writeBitmaps(): Promise<void> {
    await this.flush();
    for (const mb of this.#blocks.values()) await this.link.pwrite(mb.bitmap, mb.header.bitmapOffset);
  }
}

/**
 * The load side of one block (parse_ramblock_mapped_ram): its header from the stream, its bitmap, and
 * every page the bitmap marks read from its offset, in runs of at most 1 MiB; `readers` are the main
 * channel's handle, then the multifd channels' (which read the pages in parallel, each through its own
 * handle); then the stream moves past the pages' area. `place` takes each run into guest RAM (or the COLO
 * route).
 */
export async function loadBlock(
  r: QEMUFileReader,
  block: RamBlock,
  readers: SeekableLink[],
  place: (first: number, data: Uint8Array) => void,
  /** x-ignore-shared is on: a header with both offsets 0 is a block left out (it has nothing here). */
  ignoreShared = false,
): Promise<MappedRamBlock | null> {
  const at = r.position;
  await r.need(MAPPED_RAM_HDR_SIZE, "mapped-ram header").catch(() => {
    throw r.error(
      `Could not read whole mapped-ram migration header (expected ${MAPPED_RAM_HDR_SIZE}, got ${r.available} bytes)`,
      at,
    );
  });
  const header = decodeHeader(r.getBytes(MAPPED_RAM_HDR_SIZE));
  if (header.version > MAPPED_RAM_HDR_VERSION) {
    throw r.error(
      `Migration mapped-ram capability version not supported (expected <= ${MAPPED_RAM_HDR_VERSION}, ` +
        `got ${header.version})`,
      at,
    );
  }
  if (header.pageSize !== TARGET_PAGE_SIZE) {
    throw r.error(
      `Migration mapped-ram header has invalid page_size ${header.pageSize} (expected ${TARGET_PAGE_SIZE})`,
      at,
    );
  }
  if (ignoreShared && header.bitmapOffset === 0 && header.pagesOffset === 0) return null;
  if (header.pagesOffset % TARGET_PAGE_SIZE !== 0) {
    throw r.error(`Error reading ramblock ${block.idstr} pages, region has bad alignment`, at);
  }
  const bitmap = new Uint8Array(bitmapBytes(block.usedLength / TARGET_PAGE_SIZE));
  const got = await readers[0].pread(bitmap, header.bitmapOffset);
  if (got !== bitmap.length) {
    throw r.error(`Error reading bitmap of ramblock ${block.idstr} (${got} of ${bitmap.length} bytes)`, at);
  }
  const mb = new MappedRamBlock(block, header, bitmap);
  const runs = mb.runs(MAPPED_RAM_LOAD_BUF_SIZE / TARGET_PAGE_SIZE);
  // With multifd the channels read the pages (through their O_DIRECT handles under direct-io); the main
  // channel only the header and the bitmap.
  const pageReaders = readers.length > 1 ? readers.slice(1) : readers;
  await Promise.all(pageReaders.map(async (link, i) => {
    for (let k = i; k < runs.length; k += pageReaders.length) {
      const [first, count] = runs[k];
      const buf = new Uint8Array(count * TARGET_PAGE_SIZE);
      const n = await link.pread(buf, mb.pageOffset(first));
      if (n !== buf.length) {
        throw r.error(
          `Error reading ramblock ${block.idstr} pages at 0x${mb.pageOffset(first).toString(16)}: ` +
            `${n} of ${buf.length} bytes`,
          at,
        );
      }
      place(first, buf);
    }
  }));
  await r.seekTo(header.pagesOffset + block.usedLength);
  return mb;
}
