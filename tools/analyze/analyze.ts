/**
 * `deno task analyze FILE [--offset N] [--dump state|desc] [--ram]`: an offline parser for migration
 * streams saved to a file (a `file:` or `exec:cat > FILE` migration, from our engine or from QEMU), in
 * the spirit of upstream's scripts/analyze-migration.py.
 *
 * 1. The vmdesc (QEMU_VM_VMDESCRIPTION: u8 0x06 + be32 length + JSON) is read first, from the tail of
 *    the file: it is the last thing in the stream and the only schema for device sections, which carry
 *    no self-description on the wire.
 * 2. The stream is then parsed from the start (or `--offset`): magic and version, the configuration
 *    section, every START/PART/END/FULL section with its footer, commands, EOF and the vmdesc record.
 *    "ram" (version 4) has a hand-written parser that resumes across PART/END; device (FULL) sections
 *    are decoded field by field from their vmdesc entry (matched by name + instance_id, in stream order).
 *
 * Every offset reported (in the result and in errors) is a byte offset in the file. A malformed stream
 * is a StreamError naming what was wrong and where; the CLI prints it as one line and exits 1.
 */
import { uuidToString } from "../../engine/uuid.ts";
import { parseArgs } from "node:util";
import { QEMUFileReader, StreamError } from "../../engine/qemu_file.ts";
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
import { TARGET_PAGE_SIZE } from "../../engine/ram_block.ts";
import {
  MIG_CMD_INVALID,
  MIG_CMD_LEN,
  MIG_CMD_MAX,
  MIG_CMD_NAMES,
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_FILE_VERSION_COMPAT,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_SUBSECTION,
  QEMU_VM_VMDESCRIPTION,
} from "../../engine/savevm.ts";
import type { Link } from "../../engine/transport/link.ts";
import { BytesLink, readAll } from "../../engine/transport/buffer.ts";
import { fileIncoming } from "../../engine/transport/file.ts";
import {
  parseWithVmdesc,
  type VmdescDevice,
  type VmdescObject,
  type VmJsonObject,
} from "../../engine/vmstate.ts";

/** analyze-migration.py looks for the vmdesc in the last 10 MiB of the file. */
const VMDESC_TAIL = 10 << 20;
const MIG_CMD_PACKAGED = 7;
const ENCODING_FLAG_XBZRLE = 0x01;
const RAM_SECTION = "ram";
const RAM_VERSION = 4;

const COMMAND_NAMES = MIG_CMD_NAMES;
const COMMAND_LEN = MIG_CMD_LEN;

export interface AnalyzeOptions {
  /** Where the stream starts in the file (a `file:` URI's offset). Default 0. */
  offset?: number;
  /** Also compute a sha-256 of every RAM block's final contents (unsent pages count as zero). */
  ram?: boolean;
}

/** The vmdesc JSON (top-level object written after EOF). */
export interface Vmdesc {
  page_size?: number;
  configuration?: VmdescObject;
  devices: VmdescDevice[];
  [key: string]: unknown;
}

export interface FoundVmdesc {
  /** File offset of the 0x06 byte. */
  offset: number;
  /** Length of the JSON text in bytes. */
  length: number;
  json: Vmdesc;
}

export interface ConfigurationResult {
  offset: number;
  machine_type: string;
  /** Subsection names in stream order. */
  subsections: string[];
  uuid?: string;
  target_page_bits?: number;
  capabilities?: string[];
  /** Subsections decoded from the vmdesc's "configuration" description (ones this tool does not know). */
  other?: VmJsonObject;
}

export type SectionType = "start" | "part" | "end" | "full" | "command" | "eof" | "vmdescription";

export interface SectionRecord {
  type: SectionType;
  /** File offset of the record's type byte. */
  offset: number;
  /** Bytes from the type byte through the footer (or the end of the record). */
  size?: number;
  section_id?: number;
  idstr?: string;
  instance_id?: number;
  version_id?: number;
  /** RAM sections: page records (normal + zero + xbzrle + compressed) in this chunk. */
  pages?: number;
  /** Commands. */
  command?: string;
  cmd?: number;
  len?: number;
  /** PING's be32 value. */
  value?: number;
  /** Set when the record was parsed but its meaning is not interpreted by this tool. */
  note?: string;
}

export interface RamPageCounts {
  normal: number;
  zero: number;
  xbzrle: number;
  /** Old multi-thread compression records (removed in QEMU 9.1). */
  compressed: number;
}

export interface RamBlockResult {
  idstr: string;
  length: number;
  /** length / page size. */
  page_count: number;
  /** Records per kind (a page sent twice counts twice). */
  pages: RamPageCounts;
  /** Distinct pages that appeared in at least one record. */
  pages_sent: number;
  /** Guest physical address (x-ignore-shared streams only). */
  addr?: number;
  /** With `ram: true`: sha-256 (hex) of the block as the destination would hold it, or null if unknowable. */
  sha256?: string | null;
  sha256_note?: string;
}

export interface RamResult {
  page_size: number;
  /** Total announced by MEM_SIZE. */
  total_bytes: number;
  blocks: RamBlockResult[];
  multifd_flushes: number;
  /** EOS records (one per RAM section chunk). */
  eos: number;
  /** Page records across all blocks. */
  records: number;
}

export interface AnalysisResult {
  header: { magic: string; version: number; offset: number };
  configuration: ConfigurationResult | null;
  sections: SectionRecord[];
  ram: RamResult | null;
  devices: Record<string, VmJsonObject>;
  vmdesc: { offset: number; length: number; page_size?: number; devices: number } | null;
  /** Bytes after the vmdesc (or after EOF when there is none). */
  trailing_bytes: number;
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------------
// Sources

interface Source {
  /** Whole file length. */
  size: number;
  /** The last `n` bytes of the file (fewer if the file is shorter). */
  tail(n: number): Promise<Uint8Array>;
  /** A link reading the file from `offset`. */
  open(offset: number): Promise<Link>;
  description: string;
}

function bytesSource(bytes: Uint8Array, description = "memory"): Source {
  return {
    size: bytes.length,
    tail: (n) => Promise.resolve(bytes.subarray(Math.max(0, bytes.length - n))),
    open: (offset) => Promise.resolve(new BytesLink(bytes.subarray(offset), description)),
    description,
  };
}

async function fileSource(path: string): Promise<Source> {
  const size = (await Deno.stat(path)).size;
  return {
    size,
    async tail(n) {
      const len = Math.min(n, size);
      const out = new Uint8Array(len);
      using f = await Deno.open(path, { read: true });
      await f.seek(size - len, Deno.SeekMode.Start);
      let off = 0;
      while (off < len) {
        const got = await f.read(out.subarray(off));
        if (got === null) break;
        off += got;
      }
      return out.subarray(0, off);
    },
    open: (offset) => fileIncoming(path, offset),
    description: `file:${path}`,
  };
}

// ---------------------------------------------------------------------------------------------------
// The vmdesc

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function be32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** JSON text is printable: no control bytes other than whitespace. */
function looksLikeText(b: Uint8Array): boolean {
  for (const c of b) if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  return true;
}

interface VmdescScan {
  found: FoundVmdesc | null;
  /** A vmdesc record whose announced length runs past the end of the file. */
  truncated: { offset: number; announced: number; present: number } | null;
}

/**
 * Looks for `0x06 + be32 len + JSON` ending exactly at the end of the file, in its last 10 MiB. The
 * first candidate whose length matches and whose JSON parses to an object with a "devices" array wins
 * (JSON text cannot contain a raw 0x06, so a hit inside the JSON is impossible).
 */
async function scanVmdesc(src: Source, streamStart: number): Promise<VmdescScan> {
  const tail = await src.tail(Math.min(VMDESC_TAIL + 5, src.size - streamStart));
  const base = src.size - tail.length;
  const end = tail.length;
  if (end >= 6 && tail[end - 1] === 0x7d) {
    for (let p = 0; p + 6 <= end; p++) {
      if (tail[p] !== QEMU_VM_VMDESCRIPTION || tail[p + 5] !== 0x7b || be32(tail, p + 1) !== end - p - 5) {
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(tail.subarray(p + 5)));
      } catch {
        continue;
      }
      if (isRecord(json) && Array.isArray(json.devices)) {
        return { found: { offset: base + p, length: end - p - 5, json: json as Vmdesc }, truncated: null };
      }
    }
  }
  // No complete vmdesc: look for one that was cut short (EOF byte, 0x06, a length past the end, text).
  for (let p = 1; p + 6 <= end; p++) {
    if (tail[p] !== QEMU_VM_VMDESCRIPTION || tail[p - 1] !== QEMU_VM_EOF || tail[p + 5] !== 0x7b) continue;
    const announced = be32(tail, p + 1);
    const present = end - p - 5;
    if (announced > present && looksLikeText(tail.subarray(p + 5))) {
      return { found: null, truncated: { offset: base + p, announced, present } };
    }
  }
  return { found: null, truncated: null };
}

/** Just the vmdesc (what `--dump desc` prints); null if the file has none. */
export async function findVmdesc(source: string | Uint8Array, opts: AnalyzeOptions = {}): Promise<
  FoundVmdesc | null
> {
  const src = typeof source === "string" ? await fileSource(source) : bytesSource(source);
  return (await scanVmdesc(src, opts.offset ?? 0)).found;
}

// ---------------------------------------------------------------------------------------------------
// The stream

interface RamBlockState {
  result: RamBlockResult;
  /** One bit per page: appeared in some record. */
  seen: Uint8Array;
  /** With `ram`: the assembled contents. */
  mem: Uint8Array<ArrayBuffer> | null;
}

interface SectionEntry {
  idstr: string;
  instanceId: number;
  versionId: number;
}

const hex = (n: number, width = 2) => `0x${n.toString(16).padStart(width, "0")}`;

class Analyzer {
  readonly warnings: string[] = [];
  readonly sections: SectionRecord[] = [];
  readonly devices: Record<string, VmJsonObject> = {};
  configuration: ConfigurationResult | null = null;
  ram: RamResult | null = null;
  #ramBlocks = new Map<string, RamBlockState>();
  #lastBlock: RamBlockState | null = null;
  #pageSize: number;
  #pageSizeKnown: boolean;
  #ignoreShared = false;
  #bySectionId = new Map<number, SectionEntry>();
  #usedVmdesc = new Set<number>();

  constructor(
    readonly r: QEMUFileReader,
    readonly base: number,
    readonly scan: VmdescScan,
    readonly opts: AnalyzeOptions,
  ) {
    const ps = scan.found?.json.page_size;
    this.#pageSizeKnown = typeof ps === "number";
    this.#pageSize = typeof ps === "number" ? ps : TARGET_PAGE_SIZE;
  }

  /** File offset of a stream position. */
  off(pos: number): number {
    return pos + this.base;
  }

  async header(): Promise<AnalysisResult["header"]> {
    const r = this.r;
    await r.need(8, "file header");
    const magic = r.getBe32();
    if (magic !== QEMU_VM_FILE_MAGIC) {
      throw r.error(`Not a migration stream (magic ${hex(magic, 8)}, expected 0x5145564d)`, 0);
    }
    const version = r.getBe32();
    if (version === QEMU_VM_FILE_VERSION_COMPAT) {
      throw r.error("SaveVM v2 format is obsolete and not supported", 4);
    }
    if (version !== QEMU_VM_FILE_VERSION) {
      throw r.error(`Unsupported migration stream version ${version} (expected 3)`, 4);
    }
    return { magic: hex(magic, 8), version, offset: this.off(0) };
  }

  /** The configuration vmstate: be32 len + machine type, then its subsections. */
  async parseConfiguration(at: number): Promise<void> {
    const r = this.r;
    await r.need(4, "configuration.len");
    const len = r.getBe32();
    if (len > 255) throw r.error(`configuration: machine type name of ${len} bytes is too long`, at + 1);
    await r.need(len, "configuration.name");
    const cfg: ConfigurationResult = {
      offset: this.off(at),
      machine_type: new TextDecoder().decode(r.getBytes(len)),
      subsections: [],
    };
    const described = this.scan.found?.json.configuration?.subsections ?? [];
    for (;;) {
      await r.need(1, "configuration subsection or next section");
      if (r.peek(1)[0] !== QEMU_VM_SUBSECTION) break;
      const subAt = r.position;
      r.skip(1);
      const name = await r.getCountedString("configuration subsection name");
      if (!name.startsWith("configuration/")) {
        throw r.error(`configuration: subsection '${name}' does not belong to 'configuration'`, subAt);
      }
      await r.need(4, `${name} version_id`);
      const version = r.getBe32();
      cfg.subsections.push(name);
      switch (name) {
        case "configuration/uuid":
          await r.need(16, name);
          cfg.uuid = uuidToString(r.getBytes(16));
          break;
        case "configuration/target-page-bits": {
          await r.need(4, name);
          const bitsAt = r.position;
          const bits = r.getBe32();
          if (bits < 10 || bits > 30) throw r.error(`${name}: implausible page bits ${bits}`, bitsAt);
          cfg.target_page_bits = bits;
          this.#pageSize = 2 ** bits;
          this.#pageSizeKnown = true;
          break;
        }
        case "configuration/capabilities": {
          await r.need(4, `${name} caps_count`);
          const count = r.getBe32();
          const caps: string[] = [];
          for (let i = 0; i < count; i++) caps.push(await r.getCountedString(`${name} capability ${i}`));
          cfg.capabilities = caps;
          if (caps.includes("x-ignore-shared")) this.#ignoreShared = true;
          if (caps.includes("mapped-ram")) {
            throw r.error("mapped-ram streams (RAM at fixed file offsets) are not supported", subAt);
          }
          break;
        }
        default: {
          const desc = described.find((d) => d.vmsd_name === name);
          if (!desc) {
            throw r.error(`configuration: unknown subsection '${name}' and no vmdesc describes it`, subAt);
          }
          if (desc.version !== version) {
            throw r.error(`${name}: version_id ${version} differs from the vmdesc's ${desc.version}`, subAt);
          }
          cfg.other = { ...cfg.other, [name]: await this.#decode(desc, name, subAt) };
        }
      }
    }
    this.configuration = cfg;
  }

  async #decode(desc: VmdescObject, what: string, at: number): Promise<VmJsonObject> {
    try {
      return await parseWithVmdesc(this.r, desc);
    } catch (e) {
      if (e instanceof StreamError) throw e;
      throw this.r.error(`vmdesc entry for ${what} is malformed: ${e instanceof Error ? e.message : e}`, at);
    }
  }

  async #footer(sectionId: number, idstr: string): Promise<void> {
    const r = this.r;
    const at = r.position;
    await r.need(1, `section footer of '${idstr}'`);
    const marker = r.get8();
    if (marker !== QEMU_VM_SECTION_FOOTER) {
      throw r.error(
        `Missing section footer for '${idstr}' (section ${sectionId}): found ${hex(marker)}, expected 0x7e`,
        at,
      );
    }
    await r.need(4, `section footer of '${idstr}'`);
    const id = r.getBe32();
    if (id !== sectionId) {
      throw r.error(`Mismatched section id in footer for '${idstr}': read ${id}, expected ${sectionId}`, at);
    }
  }

  /** The main loop: every record until EOF, then the vmdesc. Returns the bytes after the stream. */
  async records(): Promise<number> {
    const r = this.r;
    let first = true;
    for (;;) {
      const at = r.position;
      await r.need(1, "section type");
      const type = r.get8();
      if (type === QEMU_VM_CONFIGURATION) {
        if (!first) throw r.error("Configuration section is only valid right after the file header", at);
        await this.parseConfiguration(at);
        first = false;
        continue;
      }
      if (first) this.warnings.push("stream has no configuration section");
      first = false;
      switch (type) {
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL:
          await this.#sectionFull(type, at);
          break;
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END:
          await this.#sectionPartEnd(type, at);
          break;
        case QEMU_VM_COMMAND:
          await this.#command(at);
          break;
        case QEMU_VM_EOF:
          this.sections.push({ type: "eof", offset: this.off(at), size: 1 });
          return await this.#afterEof();
        case QEMU_VM_VMDESCRIPTION:
          throw r.error("vmdesc (type 0x06) before QEMU_VM_EOF", at);
        default:
          throw r.error(`Unknown section type ${hex(type)}`, at);
      }
    }
  }

  async #sectionFull(type: number, at: number): Promise<void> {
    const r = this.r;
    const start = type === QEMU_VM_SECTION_START;
    const kind = start ? "START" : "FULL";
    await r.need(4, `${kind} section id`);
    const sectionId = r.getBe32();
    const idstr = await r.getCountedString(`${kind} section idstr`);
    await r.need(8, `instance and version of section '${idstr}'`);
    const instanceId = r.getBe32();
    const versionId = r.getBe32();
    const rec: SectionRecord = {
      type: start ? "start" : "full",
      offset: this.off(at),
      section_id: sectionId,
      idstr,
      instance_id: instanceId,
      version_id: versionId,
    };
    this.sections.push(rec);
    if (this.#bySectionId.has(sectionId) && start) {
      throw r.error(`START section '${idstr}' reuses section id ${sectionId}`, at);
    }
    this.#bySectionId.set(sectionId, { idstr, instanceId, versionId });
    if (idstr === RAM_SECTION && instanceId === 0) {
      if (!start) throw r.error("'ram' arrived as a FULL section; it is an iterable (START/PART/END)", at);
      if (versionId !== RAM_VERSION) {
        throw r.error(`ram: unsupported version_id ${versionId} (expected ${RAM_VERSION})`, at);
      }
      rec.pages = await this.#ramChunk();
    } else if (start) {
      throw r.error(`No parser for iterable section '${idstr}' instance ${instanceId} (START)`, at);
    } else {
      await this.#device(rec, at);
    }
    await this.#footer(sectionId, idstr);
    rec.size = r.position - at;
  }

  async #sectionPartEnd(type: number, at: number): Promise<void> {
    const r = this.r;
    const kind = type === QEMU_VM_SECTION_PART ? "PART" : "END";
    await r.need(4, `${kind} section id`);
    const sectionId = r.getBe32();
    const entry = this.#bySectionId.get(sectionId);
    if (!entry) throw r.error(`${kind} for unknown section id ${sectionId} (no START seen)`, at);
    const rec: SectionRecord = {
      type: type === QEMU_VM_SECTION_PART ? "part" : "end",
      offset: this.off(at),
      section_id: sectionId,
      idstr: entry.idstr,
    };
    this.sections.push(rec);
    if (entry.idstr !== RAM_SECTION) {
      throw r.error(`${kind} of section ${sectionId} '${entry.idstr}', which is not an iterable`, at);
    }
    rec.pages = await this.#ramChunk();
    await this.#footer(sectionId, entry.idstr);
    rec.size = r.position - at;
  }

  async #device(rec: SectionRecord, at: number): Promise<void> {
    const r = this.r;
    const { idstr = "", instance_id: instance = 0, section_id: id = 0 } = rec;
    const found = this.scan.found;
    if (!found) {
      const t = this.scan.truncated;
      const why = t
        ? `the vmdesc at offset ${t.offset} is truncated (announces ${t.announced} bytes, ${t.present} present)`
        : "the file has no vmdesc";
      throw r.error(
        `Cannot decode device section '${idstr}' instance ${instance} (section ${id}): ${why}, and device ` +
          `sections carry no self-description`,
        at,
      );
    }
    const index = found.json.devices.findIndex((d, i) =>
      !this.#usedVmdesc.has(i) && isRecord(d) && d.name === idstr && d.instance_id === instance
    );
    if (index < 0) {
      throw r.error(
        `Section '${idstr}' instance ${instance} (section ${id}) is not described by the vmdesc`,
        at,
      );
    }
    this.#usedVmdesc.add(index);
    const desc = found.json.devices[index];
    if (typeof desc.version === "number" && desc.version !== rec.version_id) {
      this.warnings.push(
        `section '${idstr}' (${instance}) has version ${rec.version_id} but its vmdesc says ${desc.version}`,
      );
    }
    let key = `${idstr} (${instance})`;
    for (let n = 2; Object.hasOwn(this.devices, key); n++) key = `${idstr} (${instance}) #${n}`;
    this.devices[key] = await this.#decode(desc, `'${idstr}' instance ${instance}`, at);
  }

  async #command(at: number): Promise<void> {
    const r = this.r;
    await r.need(4, "command header");
    const cmd = r.getBe16();
    const len = r.getBe16();
    if (cmd === MIG_CMD_INVALID || cmd >= MIG_CMD_MAX) throw r.error(`Invalid command ${cmd}`, at);
    const name = COMMAND_NAMES[cmd];
    if (COMMAND_LEN[cmd] !== -1 && COMMAND_LEN[cmd] !== len) {
      throw r.error(`Command ${name} has bad length ${len} (expected ${COMMAND_LEN[cmd]})`, at);
    }
    await r.need(len, `${name} payload`);
    const payload = r.getBytes(len);
    const rec: SectionRecord = {
      type: "command",
      offset: this.off(at),
      size: 5 + len,
      command: name,
      cmd,
      len,
    };
    this.sections.push(rec);
    switch (cmd) {
      case MIG_CMD_OPEN_RETURN_PATH:
      case MIG_CMD_SWITCHOVER_START:
        break;
      case MIG_CMD_PING:
        rec.value = be32(payload, 0);
        break;
      case MIG_CMD_PACKAGED:
        throw r.error("Command PACKAGED (a nested postcopy stream) is not supported", at);
      default:
        rec.note = "not interpreted by analyze";
        this.warnings.push(`command ${name} at offset ${this.off(at)} is not interpreted`);
    }
  }

  /** After EOF: the vmdesc record (if any) must be the one found at the tail, and must end the file. */
  async #afterEof(): Promise<number> {
    const r = this.r;
    if (await r.atEnd()) {
      if (this.scan.found) {
        throw r.error(`Stream ends at EOF but a vmdesc was found at offset ${this.scan.found.offset}`);
      }
      return 0;
    }
    const at = r.position;
    await r.need(1, "vmdesc section type");
    const type = r.get8();
    if (type !== QEMU_VM_VMDESCRIPTION) {
      throw r.error(`Expected the vmdesc (type 0x06) after EOF, found type ${hex(type)}`, at);
    }
    await r.need(4, "vmdesc length");
    const len = r.getBe32();
    if (len > VMDESC_TAIL) throw r.error(`vmdesc of ${len} bytes exceeds the 10 MiB limit`, at);
    await r.need(len, "vmdesc");
    r.skip(len);
    this.sections.push({ type: "vmdescription", offset: this.off(at), size: 5 + len, len });
    const found = this.scan.found;
    if (!found || found.offset !== this.off(at)) {
      throw r.error(
        found
          ? `vmdesc record here does not match the one found at the end of the file (offset ${found.offset})`
          : "vmdesc record is not valid JSON ending the file",
        at,
      );
    }
    let trailing = 0;
    const buf = r.available;
    if (buf > 0) trailing += buf;
    r.skip(buf);
    while (!(await r.atEnd())) {
      trailing += r.available;
      r.skip(r.available);
    }
    return trailing;
  }

  // -------------------------------------------------------------------------------------------------
  // RAM

  /** One RAM chunk: records until EOS. Returns the number of page records in it. */
  async #ramChunk(): Promise<number> {
    const r = this.r;
    const ram = this.ram ??= {
      page_size: this.#pageSize,
      total_bytes: 0,
      blocks: [],
      multifd_flushes: 0,
      eos: 0,
      records: 0,
    };
    const pageSize = this.#pageSize;
    if (!this.#pageSizeKnown) {
      this.warnings.push(`page size unknown (no vmdesc, no target-page-bits); assuming ${pageSize}`);
      this.#pageSizeKnown = true;
    }
    const mask = pageSize - 1;
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
          await this.#blockList(ram, addr, at);
          break;
        case RAM_SAVE_FLAG_ZERO:
        case RAM_SAVE_FLAG_PAGE:
        case RAM_SAVE_FLAG_XBZRLE:
        case RAM_SAVE_FLAG_COMPRESS_PAGE:
          await this.#page(kind, flags, addr, at);
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
          throw r.error("RAM_SAVE_FLAG_HOOK (RDMA registration) is not supported", at);
        case RAM_SAVE_FLAG_FULL:
          throw r.error("RAM_SAVE_FLAG_FULL is obsolete and never sent", at);
        default:
          throw r.error(`Unknown combination of RAM flags ${hex(flags, 3)}`, at);
      }
    }
  }

  async #blockList(ram: RamResult, total: number, at: number): Promise<void> {
    const r = this.r;
    if (this.#ramBlocks.size > 0) throw r.error("RAM block list (MEM_SIZE) sent twice", at);
    ram.total_bytes = total;
    let remaining = total;
    while (remaining > 0) {
      const idAt = r.position;
      const idstr = await r.getCountedString("RAM block idstr");
      await r.need(8, `length of RAM block ${idstr}`);
      const length = r.getBe64(`length of RAM block ${idstr}`);
      if (length === 0 || length % this.#pageSize !== 0) {
        throw r.error(`RAM block ${idstr}: length ${length} is not a multiple of the page size`, idAt);
      }
      if (this.#ramBlocks.has(idstr)) throw r.error(`RAM block ${idstr} listed twice`, idAt);
      const pageCount = length / this.#pageSize;
      const result: RamBlockResult = {
        idstr,
        length,
        page_count: pageCount,
        pages: { normal: 0, zero: 0, xbzrle: 0, compressed: 0 },
        pages_sent: 0,
      };
      if (this.#ignoreShared) {
        await r.need(8, `address of RAM block ${idstr}`);
        result.addr = r.getBe64(`address of RAM block ${idstr}`);
      }
      ram.blocks.push(result);
      this.#ramBlocks.set(idstr, {
        result,
        seen: new Uint8Array(Math.ceil(pageCount / 8)),
        mem: this.opts.ram ? new Uint8Array(length) : null,
      });
      remaining -= length;
      if (remaining < 0) {
        throw r.error(
          `RAM block list overruns the announced total of ${total} bytes at block ${idstr}`,
          idAt,
        );
      }
    }
  }

  async #page(kind: number, flags: number, addr: number, at: number): Promise<void> {
    const r = this.r;
    const pageSize = this.#pageSize;
    let block: RamBlockState;
    if (flags & RAM_SAVE_FLAG_CONTINUE) {
      if (!this.#lastBlock) throw r.error("RAM record with CONTINUE but no previous block", at);
      block = this.#lastBlock;
    } else {
      const idstr = await r.getCountedString("RAM block idstr");
      const b = this.#ramBlocks.get(idstr);
      if (!b) throw r.error(`RAM record for unknown block '${idstr}'`, at);
      block = this.#lastBlock = b;
    }
    const res = block.result;
    if (addr + pageSize > res.length) {
      throw r.error(`RAM offset ${hex(addr)} is beyond block ${res.idstr} (length ${hex(res.length)})`, at);
    }
    const index = addr / pageSize;
    if (!(block.seen[index >> 3] & (1 << (index & 7)))) {
      block.seen[index >> 3] |= 1 << (index & 7);
      res.pages_sent++;
    }
    switch (kind) {
      case RAM_SAVE_FLAG_ZERO: {
        await r.need(1, "zero page fill byte");
        const fillAt = r.position;
        const ch = r.get8();
        if (ch !== 0) throw r.error(`Zero page record with fill byte ${ch} (must be 0)`, fillAt);
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
        await r.need(3, "XBZRLE page header");
        const hdrAt = r.position;
        const enc = r.get8();
        if (enc !== ENCODING_FLAG_XBZRLE) {
          throw r.error(`XBZRLE page with encoding flag ${hex(enc)} (expected 0x01)`, hdrAt);
        }
        const len = r.getBe16();
        if (len > pageSize) throw r.error(`XBZRLE page of ${len} bytes exceeds the page size`, hdrAt);
        await r.need(len, "XBZRLE data");
        r.skip(len);
        res.pages.xbzrle++;
        break;
      }
      default: {
        await r.need(4, "compressed page length");
        const lenAt = r.position;
        const len = r.getBe32();
        // zlib's compressBound(page size)
        const bound = pageSize + (pageSize >> 12) + (pageSize >> 14) + (pageSize >> 25) + 13;
        if (len > bound) throw r.error(`Compressed page of ${len} bytes exceeds ${bound}`, lenAt);
        await r.need(len, "compressed page data");
        r.skip(len);
        res.pages.compressed++;
      }
    }
  }

  /** With `ram`: per-block sha-256 of the assembled contents. */
  async digests(): Promise<void> {
    for (const b of this.#ramBlocks.values()) {
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

/**
 * Parses a whole migration stream: a file path, its bytes, or a Link (read to its end first, since the
 * vmdesc at the tail must be found before the stream is parsed). Rejects with a StreamError naming what
 * was wrong and the file offset.
 */
export async function analyzeStream(
  source: string | Uint8Array | Link,
  opts: AnalyzeOptions = {},
): Promise<AnalysisResult> {
  const src = typeof source === "string"
    ? await fileSource(source)
    : source instanceof Uint8Array
    ? bytesSource(source)
    : bytesSource(await readAll(source), source.description);
  const base = opts.offset ?? 0;
  if (!Number.isSafeInteger(base) || base < 0 || base > src.size) {
    throw new RangeError(`offset ${base} is outside the file (${src.size} bytes)`);
  }
  const scan = await scanVmdesc(src, base);
  const link = await src.open(base);
  try {
    const a = new Analyzer(new QEMUFileReader(link), base, scan, opts);
    try {
      const header = await a.header();
      const trailing = await a.records();
      if (opts.ram) await a.digests();
      const found = scan.found;
      return {
        header,
        configuration: a.configuration,
        sections: a.sections,
        ram: a.ram,
        devices: a.devices,
        vmdesc: found
          ? {
            offset: found.offset,
            length: found.length,
            page_size: found.json.page_size,
            devices: found.json.devices.length,
          }
          : null,
        trailing_bytes: trailing,
        warnings: a.warnings,
      };
    } catch (e) {
      if (!(e instanceof StreamError) || base === 0) throw e;
      const err = new StreamError(e.detail, e.offset + base);
      err.message = `${e.detail} (at file offset ${e.offset + base}, stream offset ${e.offset})`;
      throw err;
    }
  } finally {
    link.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// CLI

const USAGE = "usage: deno task analyze FILE [--offset N] [--dump state|desc] [--ram]";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        offset: { type: "string" },
        dump: { type: "string", default: "state" },
        ram: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`analyze: ${e instanceof Error ? e.message : e}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || (values.dump !== "state" && values.dump !== "desc")) {
    console.error(USAGE);
    return 2;
  }
  const offset = values.offset === undefined ? 0 : Number(values.offset);
  if (!Number.isSafeInteger(offset) || offset < 0) {
    console.error(`analyze: --offset must be a non-negative integer, got '${values.offset}'`);
    return 2;
  }
  const file = positionals[0];
  try {
    if (values.dump === "desc") {
      const found = await findVmdesc(file, { offset });
      if (!found) throw new Error(`${file}: no vmdesc (QEMU_VM_VMDESCRIPTION) at the end of the file`);
      console.log(JSON.stringify(found.json, null, 2));
    } else {
      console.log(JSON.stringify(await analyzeStream(file, { offset, ram: values.ram }), null, 2));
    }
    return 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`analyze: ${file}: ${msg.replaceAll("\n", " ")}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
