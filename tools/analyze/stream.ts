/**
 * The stream parser: magic and version, the configuration section, every START/PART/END/FULL section
 * with its footer, commands, EOF and the vmdesc record. "ram" goes to RamRecords (it resumes across
 * PART/END), device (FULL) sections to DeviceDecoder.
 *
 * It is written apart from the engine's loader (engine/savevm.ts) on purpose: a tool that reused the
 * loader could not catch the loader's bugs. What it shares with the engine is the wire constants and,
 * for every condition the loader also rejects, the loader's error wording (tools/analyze/wording_test.ts
 * checks both say the same about the same bytes).
 */
import { uuidToString } from "../../engine/uuid.ts";
import { QEMUFileReader, StreamError } from "../../engine/qemu_file.ts";
import { RAM_IDSTR, RAM_VERSION_ID } from "../../engine/ram.ts";
import {
  MAX_VMDESC,
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
import { DeviceDecoder } from "./devices.ts";
import { RamRecords } from "./ram_records.ts";
import { openSource } from "./source.ts";
import { isSeekable } from "../../engine/transport/file.ts";
import type { AnalysisResult, AnalyzeOptions, ConfigurationResult, SectionRecord } from "./types.ts";
import { scanVmdesc, type VmdescScan } from "./vmdesc.ts";

/** The engine has no constant for it (it never sends it); its number is the engine's command table's. */
const MIG_CMD_PACKAGED = MIG_CMD_NAMES.indexOf("PACKAGED");

const hex = (n: number, width = 2) => `0x${n.toString(16).padStart(width, "0")}`;

interface SectionEntry {
  idstr: string;
  instanceId: number;
  versionId: number;
}

export class StreamParser {
  readonly warnings: string[] = [];
  readonly sections: SectionRecord[] = [];
  configuration: ConfigurationResult | null = null;
  readonly ram: RamRecords;
  readonly devices: DeviceDecoder;
  #bySectionId = new Map<number, SectionEntry>();

  constructor(
    readonly r: QEMUFileReader,
    /** File offset of stream position 0. */
    readonly base: number,
    readonly scan: VmdescScan,
    opts: AnalyzeOptions = {},
  ) {
    const ps = scan.found?.json.page_size;
    this.ram = new RamRecords(this.warnings, {
      pageSize: typeof ps === "number" ? ps : undefined,
      keepContents: opts.ram,
    });
    this.devices = new DeviceDecoder(scan, this.warnings);
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
      throw r.error(
        `Not a migration stream (magic ${hex(magic, 8)}, expected ${hex(QEMU_VM_FILE_MAGIC, 8)})`,
        0,
      );
    }
    const version = r.getBe32();
    if (version === QEMU_VM_FILE_VERSION_COMPAT) {
      throw r.error("SaveVM v2 format is obsolete and don't work anymore", 4);
    }
    if (version !== QEMU_VM_FILE_VERSION) throw r.error(`Unsupported migration stream version ${version}`, 4);
    return { magic: hex(magic, 8), version, offset: this.off(0) };
  }

  /** The configuration vmstate: be32 len + machine type, then its subsections. */
  async configurationSection(at: number): Promise<void> {
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
    for (;;) {
      await r.need(1, "configuration subsection or next section");
      if (r.peek(1)[0] !== QEMU_VM_SUBSECTION) break;
      const subAt = r.position;
      r.skip(1);
      const name = await r.getCountedString("configuration subsection name");
      await r.need(4, `${name} version`);
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
          this.ram.setPageSize(2 ** bits);
          break;
        }
        case "configuration/capabilities": {
          await r.need(4, `${name} caps_count`);
          const count = r.getBe32();
          const caps: string[] = [];
          for (let i = 0; i < count; i++) caps.push(await r.getCountedString(`${name} capability ${i}`));
          cfg.capabilities = caps;
          if (caps.includes("x-ignore-shared")) this.ram.ignoreShared = true;
          if (caps.includes("mapped-ram")) {
            if (!isSeekable(r.link)) {
              throw r.error(
                "a mapped-ram stream (RAM at fixed file offsets) is read from a file only",
                subAt,
              );
            }
            this.ram.mappedRam = r.link;
          }
          break;
        }
        default:
          cfg.other = {
            ...cfg.other,
            [name]: await this.devices.configurationSubsection(r, name, version, subAt),
          };
      }
    }
    this.configuration = cfg;
  }

  async #footer(sectionId: number, idstr: string): Promise<void> {
    const r = this.r;
    const at = r.position;
    // The marker alone decides "missing", even when fewer than 5 bytes remain (as the engine does).
    await r.need(1, `section footer of '${idstr}'`);
    if (r.get8() !== QEMU_VM_SECTION_FOOTER) throw r.error(`Missing section footer for ${idstr}`, at);
    await r.need(4, `section footer of '${idstr}'`);
    const id = r.getBe32();
    if (id !== sectionId) {
      throw r.error(
        `Mismatched section id in footer for ${idstr} - read 0x${id.toString(16)} expected 0x${
          sectionId.toString(16)
        }`,
        at,
      );
    }
  }

  /** The main loop: every record until EOF, then the vmdesc. Returns the bytes after the stream. */
  async records(): Promise<number> {
    const r = this.r;
    for (let first = true;; first = false) {
      const at = r.position;
      await r.need(1, "section type");
      const type = r.get8();
      if (first && type === QEMU_VM_CONFIGURATION) {
        await this.configurationSection(at);
        continue;
      }
      // Old machine types send none (QEMU's send_configuration), so this is not an error here.
      if (first) this.warnings.push("stream has no configuration section");
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
        default:
          // A vmdesc before EOF, or a second configuration section, is just as unknown to the loader.
          throw r.error(`Unknown savevm section type ${type}`, at);
      }
    }
  }

  async #sectionFull(type: number, at: number): Promise<void> {
    const r = this.r;
    const start = type === QEMU_VM_SECTION_START;
    await r.need(4, "section id");
    const sectionId = r.getBe32();
    const idstr = await r.getCountedString("section idstr");
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
    if (idstr === RAM_IDSTR && instanceId === 0) {
      if (!start) throw r.error("'ram' arrived as a FULL section; it is an iterable (START/PART/END)", at);
      if (versionId > RAM_VERSION_ID) {
        throw r.error(`savevm: unsupported version ${versionId} for '${idstr}' v${RAM_VERSION_ID}`, at);
      }
      if (versionId !== RAM_VERSION_ID) {
        throw r.error(`ram: unsupported version_id ${versionId} (expected ${RAM_VERSION_ID})`, at);
      }
      rec.pages = await this.ram.chunk(r);
    } else if (start) {
      throw r.error(`No parser for iterable section '${idstr}' instance ${instanceId} (START)`, at);
    } else {
      await this.devices.section(r, { idstr, instanceId, sectionId, versionId }, at);
    }
    await this.#footer(sectionId, idstr);
    rec.size = r.position - at;
  }

  async #sectionPartEnd(type: number, at: number): Promise<void> {
    const r = this.r;
    await r.need(4, "section id");
    const sectionId = r.getBe32();
    const entry = this.#bySectionId.get(sectionId);
    if (!entry) throw r.error(`Unknown savevm section ${sectionId}`, at);
    const rec: SectionRecord = {
      type: type === QEMU_VM_SECTION_PART ? "part" : "end",
      offset: this.off(at),
      section_id: sectionId,
      idstr: entry.idstr,
    };
    this.sections.push(rec);
    if (entry.idstr !== RAM_IDSTR) {
      const kind = type === QEMU_VM_SECTION_PART ? "PART" : "END";
      throw r.error(`${kind} of section ${sectionId} '${entry.idstr}', which is not an iterable`, at);
    }
    rec.pages = await this.ram.chunk(r);
    await this.#footer(sectionId, entry.idstr);
    rec.size = r.position - at;
  }

  async #command(at: number): Promise<void> {
    const r = this.r;
    await r.need(4, "command header");
    const cmd = r.getBe16();
    const len = r.getBe16();
    if (cmd >= MIG_CMD_MAX || cmd === MIG_CMD_INVALID) throw r.error(`Invalid command ${cmd}`, at);
    const name = MIG_CMD_NAMES[cmd];
    if (MIG_CMD_LEN[cmd] !== -1 && MIG_CMD_LEN[cmd] !== len) {
      throw r.error(`${name} received bad length ${len}/${MIG_CMD_LEN[cmd]}`, at);
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
        rec.value = new DataView(payload.buffer).getUint32(0);
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
    if (type !== QEMU_VM_VMDESCRIPTION) throw r.error(`Expected vmdescription section, but got ${type}`, at);
    await r.need(4, "vmdesc length");
    const len = r.getBe32();
    if (len > MAX_VMDESC) throw r.error(`vmdesc of ${len} bytes exceeds the ${MAX_VMDESC}-byte limit`, at);
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
    while (!(await r.atEnd())) {
      trailing += r.available;
      r.skip(r.available);
    }
    return trailing;
  }
}

/**
 * Parses a whole migration stream: a file path, its bytes, or a Link (read to its end first, since the
 * vmdesc at the tail must be found before the stream is parsed). Rejects with a StreamError naming what
 * was wrong and the file offset (and the stream offset, when the stream does not start the file).
 */
export async function analyzeStream(
  source: string | Uint8Array | Link,
  opts: AnalyzeOptions = {},
): Promise<AnalysisResult> {
  const src = await openSource(source);
  const base = opts.offset ?? 0;
  if (!Number.isSafeInteger(base) || base < 0 || base > src.size) {
    throw new RangeError(`offset ${base} is outside the file (${src.size} bytes)`);
  }
  const scan = await scanVmdesc(src, base);
  const link = await src.open(base);
  try {
    const p = new StreamParser(new QEMUFileReader(link), base, scan, opts);
    try {
      const header = await p.header();
      const trailing = await p.records();
      if (opts.ram) await p.ram.digests();
      const found = scan.found;
      return {
        header,
        configuration: p.configuration,
        sections: p.sections,
        ram: p.ram.result,
        devices: p.devices.devices,
        vmdesc: found
          ? {
            offset: found.offset,
            length: found.length,
            page_size: found.json.page_size,
            devices: found.json.devices.length,
          }
          : null,
        trailing_bytes: trailing,
        warnings: p.warnings,
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
