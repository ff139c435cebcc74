/**
 * The "ram" section's records (offset|flags be64, idstr or CONTINUE, then a body), parsed on their own:
 * the engine's loader is not reused, so the analyzer can catch the loader's bugs. Flag values, the
 * section's idstr and version, and the error wording for conditions the loader also rejects are the
 * engine's (engine/ram.ts), so a message reads the same from either.
 */
import type { QEMUFileReader } from "../../engine/qemu_file.ts";
import {
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from "../../engine/ram.ts";
import { TARGET_PAGE_SIZE } from "../../engine/ram_block.ts";
import { ENCODING_FLAG_XBZRLE } from "../../engine/ram_xbzrle.ts";
import {
  bitmapBytes,
  decodeHeader,
  MAPPED_RAM_FILE_OFFSET_ALIGNMENT,
  MAPPED_RAM_HDR_SIZE,
  MAPPED_RAM_HDR_VERSION,
} from "../../engine/ram_mapped.ts";
import type { SeekableLink } from "../../engine/transport/file.ts";
import type { RamBlockResult, RamResult } from "./types.ts";

interface RamBlockState {
  result: RamBlockResult;
  /** One bit per page: appeared in some record. */
  seen: Uint8Array;
  /** With `keepContents`: the assembled contents. */
  mem: Uint8Array<ArrayBuffer> | null;
}

/** zlib's compressBound(page size): the largest record the old compression threads could send. */
function compressBound(pageSize: number): number {
  return pageSize + (pageSize >> 12) + (pageSize >> 14) + (pageSize >> 25) + 13;
}

/**
 * The RAM records of one stream. Block state and the CONTINUE block persist across chunks, as they do
 * across PART/END sections on the wire.
 */
export class RamRecords {
  result: RamResult | null = null;
  /** x-ignore-shared: each listed block is followed by its guest address. */
  ignoreShared = false;
  /** mapped-ram (from the configuration's capabilities): each listed block has a header; pages are in place. */
  mappedRam: SeekableLink | null = null;
  #blocks = new Map<string, RamBlockState>();
  #lastBlock: RamBlockState | null = null;
  #pageSize: number;
  #pageSizeKnown: boolean;
  readonly #keepContents: boolean;

  constructor(
    private readonly warnings: string[],
    opts: { pageSize?: number; keepContents?: boolean } = {},
  ) {
    this.#pageSizeKnown = opts.pageSize !== undefined;
    this.#pageSize = opts.pageSize ?? TARGET_PAGE_SIZE;
    this.#keepContents = opts.keepContents ?? false;
  }

  /** The configuration's target-page-bits. */
  setPageSize(size: number): void {
    this.#pageSize = size;
    this.#pageSizeKnown = true;
  }

  /** One RAM chunk: records until EOS. Returns the number of page records in it. */
  async chunk(r: QEMUFileReader): Promise<number> {
    const ram = this.result ??= {
      page_size: this.#pageSize,
      total_bytes: 0,
      blocks: [],
      multifd_flushes: 0,
      eos: 0,
      records: 0,
    };
    if (!this.#pageSizeKnown) {
      this.warnings.push(`page size unknown (no vmdesc, no target-page-bits); assuming ${this.#pageSize}`);
      this.#pageSizeKnown = true;
    }
    const mask = this.#pageSize - 1;
    let pages = 0;
    for (;;) {
      const at = r.position;
      if (!r.has(8)) await r.need(8, "RAM record header");
      const [hi, lo] = r.getBe64Parts();
      const flags = lo & mask;
      const addr = hi * 0x1_0000_0000 + (lo - flags);
      const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
      switch (kind) {
        case RAM_SAVE_FLAG_MEM_SIZE:
          if (hi >= 0x20_0000) throw r.error("RAM total size is out of range", at);
          await this.#blockList(r, ram, addr, at);
          break;
        case RAM_SAVE_FLAG_ZERO:
        case RAM_SAVE_FLAG_PAGE:
        case RAM_SAVE_FLAG_XBZRLE:
        case RAM_SAVE_FLAG_COMPRESS_PAGE:
          await this.#page(r, kind, flags, addr, at);
          ram.records++;
          pages++;
          break;
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          ram.multifd_flushes++;
          break;
        case RAM_SAVE_FLAG_EOS:
          ram.eos++;
          return pages;
        case RAM_SAVE_FLAG_HOOK:
          throw r.error("RAM_SAVE_FLAG_HOOK is only valid with RDMA", at);
        default:
          // RAM_SAVE_FLAG_FULL (never sent) lands here too, as in the engine's loader.
          throw r.error(`Unknown combination of migration flags: 0x${flags.toString(16)}`, at);
      }
    }
  }

  async #blockList(r: QEMUFileReader, ram: RamResult, total: number, at: number): Promise<void> {
    if (this.#blocks.size > 0) throw r.error("RAM block list (MEM_SIZE) sent twice", at);
    ram.total_bytes = total;
    const pageSize = this.#pageSize;
    let remaining = total;
    while (remaining > 0) {
      const idAt = r.position;
      const idstr = await r.getCountedString("RAM block idstr");
      await r.need(8, `length of RAM block ${idstr}`);
      const length = r.getBe64(`length of RAM block ${idstr}`);
      if (length === 0 || length % pageSize !== 0) {
        throw r.error(`RAM block ${idstr}: length ${length} is not a multiple of the page size`, idAt);
      }
      if (this.#blocks.has(idstr)) throw r.error(`RAM block ${idstr} listed twice`, idAt);
      const pageCount = length / pageSize;
      const result: RamBlockResult = {
        idstr,
        length,
        page_count: pageCount,
        pages: { normal: 0, zero: 0, xbzrle: 0, compressed: 0 },
        pages_sent: 0,
      };
      if (this.ignoreShared) {
        await r.need(8, `address of RAM block ${idstr}`);
        result.addr = r.getBe64(`address of RAM block ${idstr}`);
      }
      ram.blocks.push(result);
      const state: RamBlockState = {
        result,
        seen: new Uint8Array(Math.ceil(pageCount / 8)),
        mem: this.#keepContents ? new Uint8Array(length) : null,
      };
      this.#blocks.set(idstr, state);
      if (this.mappedRam) await this.#mappedBlock(r, this.mappedRam, state);
      remaining -= length;
      if (remaining < 0) throw r.error("RAM block list overruns the announced total size", idAt);
    }
  }

  /**
   * A mapped-ram block: its header in the stream, its bitmap and pages at their file offsets (read here,
   * not through the engine's loader); the stream goes on after the pages' area.
   */
  async #mappedBlock(r: QEMUFileReader, file: SeekableLink, block: RamBlockState): Promise<void> {
    const res = block.result;
    const at = r.position;
    await r.need(MAPPED_RAM_HDR_SIZE, `mapped-ram header of RAM block ${res.idstr}`);
    const h = decodeHeader(r.getBytes(MAPPED_RAM_HDR_SIZE));
    if (h.version !== MAPPED_RAM_HDR_VERSION) {
      throw r.error(`RAM block ${res.idstr}: mapped-ram header version ${h.version}`, at);
    }
    if (h.pageSize !== this.#pageSize) {
      throw r.error(
        `RAM block ${res.idstr}: mapped-ram page size ${h.pageSize}, stream's ${this.#pageSize}`,
        at,
      );
    }
    if (h.pagesOffset % MAPPED_RAM_FILE_OFFSET_ALIGNMENT !== 0 || h.bitmapOffset >= h.pagesOffset) {
      throw r.error(
        `RAM block ${res.idstr}: bitmap at 0x${h.bitmapOffset.toString(16)}, pages at ` +
          `0x${h.pagesOffset.toString(16)} (pages must start on a 1 MiB boundary past the bitmap)`,
        at,
      );
    }
    const bitmap = new Uint8Array(bitmapBytes(res.page_count));
    if (await file.pread(bitmap, h.bitmapOffset) !== bitmap.length) {
      throw r.error(`RAM block ${res.idstr}: bitmap at 0x${h.bitmapOffset.toString(16)} is past the end`, at);
    }
    let present = 0;
    for (let p = 0; p < res.page_count; p++) {
      if (!(bitmap[p >> 3] & (1 << (p & 7)))) continue;
      present++;
      block.seen[p >> 3] |= 1 << (p & 7);
      if (block.mem) {
        const page = block.mem.subarray(p * this.#pageSize, (p + 1) * this.#pageSize);
        if (await file.pread(page, h.pagesOffset + p * this.#pageSize) !== page.length) {
          throw r.error(`RAM block ${res.idstr}: page ${p} is past the end of the file`, at);
        }
      }
    }
    res.pages_sent = present;
    res.pages.normal = present;
    res.mapped_ram = { bitmap_offset: h.bitmapOffset, pages_offset: h.pagesOffset, pages_present: present };
    await r.seekTo(h.pagesOffset + res.length);
  }

  async #page(r: QEMUFileReader, kind: number, flags: number, addr: number, at: number): Promise<void> {
    const pageSize = this.#pageSize;
    let block: RamBlockState;
    if (flags & RAM_SAVE_FLAG_CONTINUE) {
      if (!this.#lastBlock) {
        throw r.error("Ack, bad migration stream! (CONTINUE with no previous RAM block)", at);
      }
      block = this.#lastBlock;
    } else {
      const idstr = await r.getCountedString("RAM block idstr");
      const b = this.#blocks.get(idstr);
      if (!b) throw r.error(`Can't find block ${idstr}`, at);
      block = this.#lastBlock = b;
    }
    const res = block.result;
    if (addr + pageSize > res.length) {
      throw r.error(`Illegal RAM offset 0x${addr.toString(16)} in block ${res.idstr}`, at);
    }
    const index = addr / pageSize;
    if (!(block.seen[index >> 3] & (1 << (index & 7)))) {
      block.seen[index >> 3] |= 1 << (index & 7);
      res.pages_sent++;
    }
    switch (kind) {
      case RAM_SAVE_FLAG_ZERO: {
        await r.need(1, "zero page fill byte");
        const ch = r.get8();
        if (ch !== 0) throw r.error(`Found a zero page with value ${ch}`, at);
        block.mem?.fill(0, addr, addr + pageSize);
        res.pages.zero++;
        break;
      }
      case RAM_SAVE_FLAG_PAGE:
        await r.need(pageSize, "page data");
        if (block.mem) r.copyTo(block.mem.subarray(addr, addr + pageSize));
        else r.skip(pageSize);
        res.pages.normal++;
        break;
      case RAM_SAVE_FLAG_XBZRLE: {
        await r.need(3, "XBZRLE header");
        if (r.get8() !== ENCODING_FLAG_XBZRLE) {
          throw r.error("Failed to load XBZRLE page - wrong compression!", at);
        }
        const len = r.getBe16();
        if (len > pageSize) throw r.error("Failed to load XBZRLE page - len overflow!", at);
        await r.need(len, "XBZRLE data");
        r.skip(len);
        res.pages.xbzrle++;
        break;
      }
      default: {
        await r.need(4, "compressed page length");
        const lenAt = r.position;
        const len = r.getBe32();
        const bound = compressBound(pageSize);
        if (len > bound) throw r.error(`Compressed page of ${len} bytes exceeds ${bound}`, lenAt);
        await r.need(len, "compressed page data");
        r.skip(len);
        res.pages.compressed++;
      }
    }
  }

  /** With `keepContents`: per-block sha-256 of the assembled contents. */
  async digests(): Promise<void> {
    for (const b of this.#blocks.values()) {
      if (!b.mem) continue;
      const { pages } = b.result;
      if (pages.xbzrle > 0 || pages.compressed > 0) {
        b.result.sha256 = null;
        b.result.sha256_note = "contents unknown: XBZRLE/compressed pages are not decoded";
        continue;
      }
      const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b.mem));
      b.result.sha256 = Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
    }
  }
}
