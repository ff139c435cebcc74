/**
 * The main stream's framing (migration/savevm.c): file header, configuration section, START/PART/END/FULL
 * sections with footers, commands, EOF and the JSON vmdesc; and the destination's loadvm main loop.
 */
import { uuidToString } from "./uuid.ts";
import { CAPABILITIES } from "./options.ts";
import type { Device } from "./guest/devices/device.ts";
import { QEMUFileReader, type QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { BytesLink } from "./transport/buffer.ts";
import { errorMessage } from "./error.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import { vmdescDevice } from "./vmdesc.ts";
import { loadState, saveState } from "./vmstate.ts";
import { QEMU_VM_SUBSECTION } from "./vmstate_types.ts";

export const QEMU_VM_FILE_MAGIC = 0x5145564d;
export const QEMU_VM_FILE_VERSION_COMPAT = 0x00000002;
export const QEMU_VM_FILE_VERSION = 0x00000003;

export const QEMU_VM_EOF = 0x00;
export const QEMU_VM_SECTION_START = 0x01;
export const QEMU_VM_SECTION_PART = 0x02;
export const QEMU_VM_SECTION_END = 0x03;
export const QEMU_VM_SECTION_FULL = 0x04;
// The subsection marker lives with the vmstate codec (both vmstate.ts and vmdesc.ts read it).
export { QEMU_VM_SUBSECTION };
export const QEMU_VM_VMDESCRIPTION = 0x06;
export const QEMU_VM_CONFIGURATION = 0x07;
export const QEMU_VM_COMMAND = 0x08;
export const QEMU_VM_SECTION_FOOTER = 0x7e;

export const MIG_CMD_INVALID = 0;
export const MIG_CMD_OPEN_RETURN_PATH = 1;
export const MIG_CMD_PING = 2;
export const MIG_CMD_POSTCOPY_ADVISE = 3;
export const MIG_CMD_POSTCOPY_LISTEN = 4;
export const MIG_CMD_POSTCOPY_RUN = 5;
export const MIG_CMD_POSTCOPY_RAM_DISCARD = 6;
export const MIG_CMD_PACKAGED = 7;
export const MIG_CMD_ENABLE_COLO = 8;
export const MIG_CMD_POSTCOPY_RESUME = 9;
export const MIG_CMD_RECV_BITMAP = 10;
export const MIG_CMD_SWITCHOVER_START = 11;
export const MIG_CMD_MAX = 12;

/** Command names by value (mig_cmd_args). */
export const MIG_CMD_NAMES = [
  "INVALID",
  "OPEN_RETURN_PATH",
  "PING",
  "POSTCOPY_ADVISE",
  "POSTCOPY_LISTEN",
  "POSTCOPY_RUN",
  "POSTCOPY_RAM_DISCARD",
  "PACKAGED",
  "ENABLE_COLO",
  "POSTCOPY_RESUME",
  "RECV_BITMAP",
  "SWITCHOVER_START",
];
/** Fixed payload lengths (mig_cmd_args); -1 = variable. */
export const MIG_CMD_LEN = [-1, 0, 4, -1, 0, 0, -1, 4, 0, 0, -1, 0];

/** Largest vmdesc we accept; QEMU's analyze tool reads at most the last 10 MiB. */
export const MAX_VMDESC = 10 << 20;

export interface ConfigurationInfo {
  machineType: string;
  /** 16 bytes; sent in the configuration/uuid subsection when validate-uuid is on. */
  uuid: Uint8Array | null;
  /**
   * The enabled capabilities both sides must agree on (should_validate_capability: x-ignore-shared,
   * mapped-ram); sent in configuration/capabilities when there is any, checked against the local ones.
   */
  capabilities?: readonly string[];
}

/** What should_validate_capability names, in QAPI order. */
export const VALIDATED_CAPABILITIES = ["x-ignore-shared", "mapped-ram"] as const;

export type VmdescObject = Record<string, unknown>;

/**
 * Section ids are handed out in registration order, as QEMU's global_section_id does, and ram's is 2 as in
 * QEMU's pc streams (QEMU 7.2 and 10.0: "timer" registers first with 0, one more entry takes 1). Not 0,
 * and not for looks: QEMU's loader finds a PART or END section's entry as the first whose load_section_id
 * equals the id, and that field is 0 in every entry no START section named, so a live section numbered 0
 * reaches the wrong handler ("timer: incoming version_id 0 is too old for local minimum version_id 1",
 * found by the engine-to-qemu pair). Streams built by hand (tests, stream faults) use this, and ram's
 * registration checks it.
 */
export const RAM_SECTION_ID = 2;

/** What a live section's save and load steps are given (SaveVMHandlers in include/migration/register.h). */
export interface SaveCompleteOptions {
  /** False for a COLO checkpoint: the migration goes on after it. */
  lastStage?: boolean;
  /** Runs once half of the section's data is out (a test breakpoint). */
  onHalf?: () => Promise<void>;
}

/**
 * SaveVMHandlers: the steps of a live section. A source registers the save steps, a destination the
 * load step (QEMU registers one table for both roles; here each role has its own state object).
 */
export interface SaveVMHandlers {
  /** save_setup: the body of the START section. */
  saveSetup?(f: QEMUFileWriter): Promise<void>;
  /** save_live_iterate: the body of one PART section, until `rateExceeded` says stop. */
  saveLiveIterate?(f: QEMUFileWriter, rateExceeded: () => boolean): Promise<void>;
  /** save_live_complete_precopy: the body of the END section. */
  saveLiveCompletePrecopy?(f: QEMUFileWriter, opts: SaveCompleteOptions): Promise<void>;
  /** load_state: the body of one section of this entry. */
  loadState?(r: QEMUFileReader, versionId: number): Promise<void>;
}

/** SaveStateEntry: one registered section. */
export interface SaveStateEntry {
  readonly idstr: string;
  readonly instanceId: number;
  readonly versionId: number;
  readonly sectionId: number;
  readonly ops: SaveVMHandlers;
}

/**
 * The registered sections (QEMU's savevm_state.handlers): live sections registered with
 * registerSavevmLive, in order, then the machine's devices (their vmstate descriptions), whose ids
 * follow.
 */
export class SaveVMState {
  readonly #live: SaveStateEntry[] = [];

  constructor(readonly devices: Device[]) {}

  /** register_savevm_live: the entry gets the next section id. */
  registerSavevmLive(
    idstr: string,
    instanceId: number,
    versionId: number,
    ops: SaveVMHandlers,
  ): SaveStateEntry {
    const se = { idstr, instanceId, versionId, sectionId: RAM_SECTION_ID + this.#live.length, ops };
    this.#live.push(se);
    return se;
  }

  /** Every entry, live sections first: what the loader looks sections up in. */
  entries(): SaveStateEntry[] {
    return [
      ...this.#live,
      ...this.devices.map((d, i): SaveStateEntry => ({
        idstr: d.idstr,
        instanceId: d.instanceId,
        versionId: d.vmsd.versionId,
        sectionId: RAM_SECTION_ID + this.#live.length + i,
        ops: { loadState: (r, v) => loadState(r, d.vmsd, d.state, v) },
      })),
    ];
  }

  /** qemu_savevm_state_setup: a START section per live entry. */
  async saveSetup(f: QEMUFileWriter): Promise<void> {
    for (const se of this.#live) {
      saveSectionFull(f, QEMU_VM_SECTION_START, se.sectionId, se.idstr, se.instanceId, se.versionId);
      await se.ops.saveSetup?.(f);
      saveFooter(f, se.sectionId);
    }
  }

  /**
   * qemu_savevm_state_iterate: a PART section per live entry. `footerId` maps the id written in the
   * footer (the bad-footer stream fault writes a wrong one).
   */
  async saveIterate(
    f: QEMUFileWriter,
    rateExceeded: () => boolean,
    footerId: (sectionId: number) => number = (id) => id,
  ): Promise<void> {
    for (const se of this.#live) {
      saveSectionShort(f, QEMU_VM_SECTION_PART, se.sectionId);
      await se.ops.saveLiveIterate?.(f, rateExceeded);
      saveFooter(f, footerId(se.sectionId));
    }
  }

  /** qemu_savevm_state_complete_precopy_iterable: an END section per live entry. */
  async saveCompletePrecopy(f: QEMUFileWriter, opts: SaveCompleteOptions = {}): Promise<void> {
    for (const se of this.#live) {
      saveSectionShort(f, QEMU_VM_SECTION_END, se.sectionId);
      await se.ops.saveLiveCompletePrecopy?.(f, opts);
      saveFooter(f, se.sectionId);
    }
  }

  /** The non-iterable part: one FULL section per device; returns the vmdesc entries. */
  saveDevices(f: QEMUFileWriter): VmdescObject[] {
    return saveDevices(f, this.devices, RAM_SECTION_ID + this.#live.length);
  }
}

/** Magic, version and the configuration section (qemu_savevm_state_header). */
export function saveHeader(f: QEMUFileWriter, cfg: ConfigurationInfo): VmdescObject {
  f.putBe32(QEMU_VM_FILE_MAGIC);
  f.putBe32(QEMU_VM_FILE_VERSION);
  f.put8(QEMU_VM_CONFIGURATION);
  const name = new TextEncoder().encode(cfg.machineType);
  f.putBe32(name.length);
  f.putBytes(name);
  const desc: VmdescObject = {
    vmsd_name: "configuration",
    version: 1,
    fields: [
      { name: "len", type: "uint32", size: 4 },
      { name: "name", type: "buffer", size: name.length },
    ],
  };
  const subsections: VmdescObject[] = [];
  const caps = cfg.capabilities ?? [];
  if (caps.length) {
    f.put8(QEMU_VM_SUBSECTION);
    f.putCountedString("configuration/capabilities");
    f.putBe32(1);
    f.putBe32(caps.length);
    for (const c of caps) f.putCountedString(c);
    subsections.push({
      vmsd_name: "configuration/capabilities",
      version: 1,
      fields: [
        { name: "caps_count", type: "uint32", size: 4 },
        { name: "capabilities", array_len: caps.length, type: "capability", size: 4 },
      ],
    });
  }
  if (cfg.uuid) {
    f.put8(QEMU_VM_SUBSECTION);
    f.putCountedString("configuration/uuid");
    f.putBe32(1);
    f.putBytes(cfg.uuid);
    subsections.push({
      vmsd_name: "configuration/uuid",
      version: 1,
      fields: [{ name: "uuid", type: "buffer", size: 16 }],
    });
  }
  if (subsections.length) desc.subsections = subsections;
  return desc;
}

export function saveSectionFull(
  f: QEMUFileWriter,
  type: typeof QEMU_VM_SECTION_START | typeof QEMU_VM_SECTION_FULL,
  sectionId: number,
  idstr: string,
  instanceId: number,
  versionId: number,
): void {
  f.put8(type);
  f.putBe32(sectionId);
  f.putCountedString(idstr);
  f.putBe32(instanceId);
  f.putBe32(versionId);
}

export function saveSectionShort(
  f: QEMUFileWriter,
  type: typeof QEMU_VM_SECTION_PART | typeof QEMU_VM_SECTION_END,
  sectionId: number,
): void {
  f.put8(type);
  f.putBe32(sectionId);
}

export function saveFooter(f: QEMUFileWriter, sectionId: number): void {
  f.put8(QEMU_VM_SECTION_FOOTER);
  f.putBe32(sectionId);
}

export function saveCommand(f: QEMUFileWriter, cmd: number, payload: Uint8Array = new Uint8Array()): void {
  f.put8(QEMU_VM_COMMAND);
  f.putBe16(cmd);
  f.putBe16(payload.length);
  f.putBytes(payload);
}

/**
 * One FULL section per device (qemu_savevm_state_complete_precopy_non_iterable); returns vmdesc entries.
 * Device ids follow the live sections' (`firstSectionId`: after ram's by default).
 */
export function saveDevices(
  f: QEMUFileWriter,
  devices: Device[],
  firstSectionId = RAM_SECTION_ID + 1,
): VmdescObject[] {
  const out: VmdescObject[] = [];
  devices.forEach((d, i) => {
    const id = firstSectionId + i;
    saveSectionFull(f, QEMU_VM_SECTION_FULL, id, d.idstr, d.instanceId, d.vmsd.versionId);
    const desc = saveState(f, d.vmsd, d.state);
    saveFooter(f, id);
    out.push({ ...vmdescDevice(d.idstr, d.instanceId, desc) });
  });
  return out;
}

/** EOF, then the vmdesc JSON that tools such as analyze-migration.py use as the schema. */
export function saveEofAndVmdesc(
  f: QEMUFileWriter,
  configuration: VmdescObject,
  devices: VmdescObject[],
): void {
  f.put8(QEMU_VM_EOF);
  const json = new TextEncoder().encode(
    JSON.stringify({ page_size: TARGET_PAGE_SIZE, configuration, devices }),
  );
  f.put8(QEMU_VM_VMDESCRIPTION);
  f.putBe32(json.length);
  f.putBytes(json);
}

export interface LoadVMContext {
  local: ConfigurationInfo;
  /** The registered sections the stream's sections are looked up in. */
  savevm: SaveVMState;
  /** MIG_CMD_OPEN_RETURN_PATH. */
  openReturnPath(): void;
  /** MIG_CMD_PING: reply PONG on the return path. */
  ping(value: number): void;
  /** Called between records, so the loader can be paused or observed (test breakpoints). */
  progress?(): Promise<void>;
  /** MIG_CMD_ENABLE_COLO: throws when this destination does not have x-colo. */
  enableColo?(): void;
  /** COLO was enabled: no vmdesc follows the initial EOF, the stream goes on with COLO messages. */
  coloEnabled?(): boolean;
  /** The postcopy commands (absent: the destination refuses them). Each throws its refusal. */
  postcopy?: PostcopyCommands;
}

/** What the destination does on postcopy's commands (savevm.c's loadvm_postcopy_handle_*). */
export interface PostcopyCommands {
  advise(payload: Uint8Array): void;
  discard(payload: Uint8Array): void;
  /** LISTEN: from here on the rest of the main stream is loaded by the listen "thread". */
  listen(): void;
  /** RUN: the guest starts; the loader that read it quits (LOADVM_QUIT). */
  run(): void;
  /** POSTCOPY_RESUME: a recovery's handshake ends. */
  resume(): Promise<void>;
  /** RECV_BITMAP: send the block's received bitmap on the return path. */
  recvBitmap(idstr: string): Promise<void>;
  /** The listen thread reads the main stream now (after LISTEN): this loader must not read on. */
  listening(): boolean;
}

/** Largest PACKAGED blob accepted (MAX_VM_CMD_PACKAGED_SIZE). */
export const MAX_VM_CMD_PACKAGED_SIZE = 0xffffffff;

/** How a run of sections ended: at QEMU_VM_EOF, or by a command that quits the loader (RUN). */
export type LoadEnd = "eof" | "quit";

type SectionLoader = (r: QEMUFileReader, versionId: number) => Promise<void>;

/**
 * The destination's section loader. It keeps the section-id map across calls, because COLO checkpoints
 * continue the stream: their END sections refer to ids the initial precopy's START sections defined.
 */
export class VmStateLoader {
  /** The stream's section ids (which need not be ours) → our entry and the stream's version. */
  readonly #bySectionId = new Map<number, { idstr: string; versionId: number; load: SectionLoader }>();
  readonly #entries: SaveStateEntry[];

  constructor(private readonly ctx: LoadVMContext) {
    this.#entries = ctx.savevm.entries();
  }

  /** qemu_loadvm_state: header, configuration, then sections until EOF, then the vmdesc (unless COLO). */
  async loadVmState(r: QEMUFileReader): Promise<LoadEnd> {
    await loadHeader(r, this.ctx.local);
    const end = await this.loadSections(r);
    // After RUN the listen thread owns the rest of the stream.
    if (end === "eof" && !this.ctx.coloEnabled?.()) await skipVmdesc(r);
    return end;
  }

  /** qemu_loadvm_state_main: sections and commands until QEMU_VM_EOF, or a command that quits. */
  async loadSections(r: QEMUFileReader): Promise<LoadEnd> {
    const ctx = this.ctx;
    while (true) {
      await ctx.progress?.();
      const at = r.position;
      await r.need(1, "section type");
      const type = r.get8();
      switch (type) {
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL: {
          await r.need(4, "section id");
          const sectionId = r.getBe32();
          const idstr = await r.getCountedString("section idstr");
          await r.need(8, `instance and version of section '${idstr}'`);
          const instanceId = r.getBe32();
          const versionId = r.getBe32();
          const entry = this.#entries.find((e) => e.idstr === idstr && e.instanceId === instanceId);
          const load = entry?.ops.loadState?.bind(entry.ops);
          if (!entry || !load) {
            throw r.error(
              `Unknown savevm section or instance '${idstr}' ${instanceId}. Make sure that your current VM ` +
                `setup matches your saved VM setup, including any hotplugged devices`,
              at,
            );
          }
          if (versionId > entry.versionId) {
            throw r.error(`savevm: unsupported version ${versionId} for '${idstr}' v${entry.versionId}`, at);
          }
          this.#bySectionId.set(sectionId, { idstr, versionId, load });
          await load(r, versionId);
          await checkFooter(r, sectionId, idstr);
          break;
        }
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END: {
          await r.need(4, "section id");
          const sectionId = r.getBe32();
          const entry = this.#bySectionId.get(sectionId);
          if (!entry) throw r.error(`Unknown savevm section ${sectionId}`, at);
          await entry.load(r, entry.versionId);
          await checkFooter(r, sectionId, entry.idstr);
          break;
        }
        case QEMU_VM_COMMAND:
          if (await this.#loadCommand(r, at) === "quit") return "quit";
          break;
        case QEMU_VM_EOF:
          return "eof";
        default:
          throw r.error(`Unknown savevm section type ${type}`, at);
      }
    }
  }

  /** loadvm_process_command; "quit" when the command ends this loader (RUN, or a package that ran). */
  async #loadCommand(r: QEMUFileReader, at: number): Promise<LoadEnd | null> {
    const ctx = this.ctx;
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
    const postcopy = (): PostcopyCommands => {
      if (!ctx.postcopy) {
        throw r.error(`VM_COMMAND ${name} (0x${cmd.toString(16)}) not supported by this destination`, at);
      }
      return ctx.postcopy;
    };
    // The postcopy handlers' refusals are stream errors at this command.
    const at_ = <T>(f: () => T): T => {
      try {
        return f();
      } catch (e) {
        if (e instanceof StreamError) throw e;
        throw r.error(errorMessage(e), at);
      }
    };
    switch (cmd) {
      case MIG_CMD_OPEN_RETURN_PATH:
        ctx.openReturnPath();
        break;
      case MIG_CMD_PING:
        ctx.ping(new DataView(payload.buffer).getUint32(0));
        break;
      case MIG_CMD_SWITCHOVER_START:
        break;
      case MIG_CMD_ENABLE_COLO:
        if (!ctx.enableColo) {
          throw r.error("MIG_CMD_ENABLE_COLO received, but x-colo is not enabled on this destination", at);
        }
        ctx.enableColo();
        break;
      case MIG_CMD_POSTCOPY_ADVISE:
        at_(() => postcopy().advise(payload));
        break;
      case MIG_CMD_POSTCOPY_RAM_DISCARD:
        at_(() => postcopy().discard(payload));
        break;
      case MIG_CMD_POSTCOPY_LISTEN:
        at_(() => postcopy().listen());
        break;
      case MIG_CMD_POSTCOPY_RUN:
        at_(() => postcopy().run());
        return "quit";
      case MIG_CMD_POSTCOPY_RESUME: {
        const pc = postcopy();
        await at_(() => pc.resume());
        break;
      }
      case MIG_CMD_RECV_BITMAP: {
        const pc = postcopy();
        if (len < 1 || payload[0] !== len - 1) throw r.error(`RECV_BITMAP: bad length ${len}`, at);
        const idstr = new TextDecoder().decode(payload.subarray(1));
        await at_(() => pc.recvBitmap(idstr));
        break;
      }
      case MIG_CMD_PACKAGED: {
        // loadvm_handle_cmd_packaged: the blob is read whole, then loaded as a stream of its own, so the
        // main channel is free for the pages the device loads may fault on.
        const size = new DataView(payload.buffer).getUint32(0);
        if (size > MAX_VM_CMD_PACKAGED_SIZE) throw r.error(`Unreasonably large packaged state: ${size}`, at);
        await r.need(size, "packaged state");
        const blob = r.getBytes(size);
        const end = await this.loadSections(new QEMUFileReader(new BytesLink(blob, "packaged state")));
        if (end === "quit") return "quit";
        if (ctx.postcopy?.listening()) {
          throw r.error("the packaged state ended without POSTCOPY_RUN while the listen thread reads on", at);
        }
        return null;
      }
      default:
        throw r.error(`VM_COMMAND ${name} (0x${cmd.toString(16)}) not supported by this destination`, at);
    }
    return null;
  }
}

/** qemu_loadvm_state in one call (a stream that is not continued by COLO checkpoints). */
export async function loadVmState(r: QEMUFileReader, ctx: LoadVMContext): Promise<void> {
  await new VmStateLoader(ctx).loadVmState(r);
}

async function loadHeader(r: QEMUFileReader, local: ConfigurationInfo): Promise<void> {
  await r.need(8, "file header");
  const magic = r.getBe32();
  if (magic !== QEMU_VM_FILE_MAGIC) {
    throw r.error(
      `Not a migration stream (magic 0x${magic.toString(16).padStart(8, "0")}, expected 0x5145564d)`,
      0,
    );
  }
  const version = r.getBe32();
  if (version === QEMU_VM_FILE_VERSION_COMPAT) {
    throw r.error("SaveVM v2 format is obsolete and don't work anymore", 4);
  }
  if (version !== QEMU_VM_FILE_VERSION) throw r.error(`Unsupported migration stream version ${version}`, 4);
  await r.need(1, "configuration section");
  const at = r.position;
  const type = r.get8();
  if (type !== QEMU_VM_CONFIGURATION) throw r.error(`Configuration section missing (found type ${type})`, at);
  await r.need(4, "configuration.len");
  const len = r.getBe32();
  if (len > 255) throw r.error(`configuration: machine type name of ${len} bytes is too long`, at + 1);
  await r.need(len, "configuration.name");
  const machineType = new TextDecoder().decode(r.getBytes(len));
  let uuid: Uint8Array | null = null;
  let received: string[] = [];
  while (true) {
    await r.need(1, "configuration subsection or next section");
    if (r.peek(1)[0] !== QEMU_VM_SUBSECTION) break;
    const subAt = r.position;
    r.skip(1);
    const name = await r.getCountedString("configuration subsection name");
    await r.need(4, `${name} version`);
    r.getBe32();
    if (name === "configuration/uuid") {
      await r.need(16, "configuration/uuid");
      uuid = r.getBytes(16);
    } else if (name === "configuration/capabilities") {
      await r.need(4, "configuration/capabilities.caps_count");
      const count = r.getBe32();
      if (count > 255) throw r.error(`configuration/capabilities: ${count} capabilities`, subAt);
      received = [];
      for (let i = 0; i < count; i++) {
        const capAt = r.position;
        const cap = await r.getCountedString("capability name");
        if (!(CAPABILITIES as readonly string[]).includes(cap)) {
          throw r.error(`get_capability: Received unknown capability ${cap}`, capAt);
        }
        received.push(cap);
      }
    } else if (name === "configuration/target-page-bits") {
      await r.need(4, name);
      const bits = r.getBe32();
      if (1 << bits !== TARGET_PAGE_SIZE) {
        throw r.error(`Received TARGET_PAGE_BITS is ${bits} but local is 12`, subAt);
      }
    } else {
      throw r.error(`VM subsection '${name}' in 'configuration' does not exist`, subAt);
    }
  }
  if (machineType !== local.machineType) {
    throw r.error(`Machine type received is '${machineType}' and local is '${local.machineType}'`, at);
  }
  // configuration_validate_capabilities: every mismatch is reported, then the load fails.
  const localCaps = local.capabilities ?? [];
  const mismatches = VALIDATED_CAPABILITIES.flatMap((c) => {
    const src = received.includes(c);
    const dst = localCaps.includes(c);
    return src === dst ? [] : [
      `Capability ${c} is ${dst ? "on" : "off"}, but received capability is ${src ? "on" : "off"}`,
    ];
  });
  if (mismatches.length) throw r.error(mismatches.join("; "), at);
  if (uuid && local.uuid && uuid.some((b, i) => b !== local.uuid![i])) {
    throw r.error(`UUID received is ${uuidToString(uuid)} and local is ${uuidToString(local.uuid)}`, at);
  }
}

async function checkFooter(r: QEMUFileReader, sectionId: number, idstr: string): Promise<void> {
  const at = r.position;
  // The marker alone decides "missing", even when fewer than 5 bytes remain (as check_section_footer).
  await r.need(1, `section footer of '${idstr}'`);
  const marker = r.get8();
  if (marker !== QEMU_VM_SECTION_FOOTER) throw r.error(`Missing section footer for ${idstr}`, at);
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

/** After EOF the vmdesc is read and discarded, so the sender does not fail on close. */
async function skipVmdesc(r: QEMUFileReader): Promise<void> {
  if (await r.atEnd()) return;
  const at = r.position;
  await r.need(1, "vmdesc section type");
  const type = r.get8();
  if (type !== QEMU_VM_VMDESCRIPTION) throw r.error(`Expected vmdescription section, but got ${type}`, at);
  await r.need(4, "vmdesc length");
  const len = r.getBe32();
  if (len > MAX_VMDESC) throw r.error(`vmdesc of ${len} bytes exceeds the ${MAX_VMDESC}-byte limit`, at);
  let left = len;
  while (left > 0) {
    const n = Math.min(left, 0x1000);
    await r.need(n, "vmdesc");
    r.skip(n);
    left -= n;
  }
}
