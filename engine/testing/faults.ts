/**
 * Stream faults: what `x-test-inject-fault` arms on an engine, and where each one acts. The migration
 * code calls the hooks below at the points where a fault can change what goes on the wire, without
 * knowing which kinds exist; this file is the only one that does. Byte faults (corrupt, truncate) are
 * carried out by the channel's QEMUFileWriter, which only knows offsets.
 */
import { type QmpArgSpec, QmpError } from "../qmp/schema.ts";
import type { MultifdSendFaultHooks } from "../multifd/send.ts";
import type { ChannelDelay } from "../multifd/recv.ts";
import type { Device } from "../guest/devices/device.ts";
import type { OutputFaults, QEMUFileWriter } from "../qemu_file.ts";
import { RAM_SAVE_FLAG_EOS, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_XBZRLE, RAM_SAVE_FLAG_ZERO } from "../ram.ts";
import { ENCODING_FLAG_XBZRLE } from "../ram_xbzrle.ts";
import { type RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import {
  type ConfigurationInfo,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  RAM_SECTION_ID,
  saveFooter,
  saveSectionFull,
  saveSectionShort,
} from "../savevm.ts";
import { saveState } from "../vmstate.ts";
import type { Link } from "../transport/link.ts";
import { CaptureLink } from "./capture.ts";

export const STREAM_FAULT_KINDS = [
  /** XOR `xor` into the byte at `offset` of the main channel, or of multifd channel `channel`. */
  "corrupt",
  /** Deliver `offset` bytes of the main channel (or of multifd channel `channel`), then close it. */
  "truncate",
  /** Announce another machine type in the configuration section (a wrong peer). */
  "machine-type",
  /** After the RAM setup section, a RAM record with both ZERO and PAGE flags. */
  "bad-ram-flags",
  /** After the RAM setup section, a page just past the end of the first RAM block. */
  "ram-offset",
  /** After the RAM setup section, an XBZRLE record for page 0 whose delta runs past the page's end. */
  "xbzrle-overrun",
  /** After the devices, a FULL section of a device the destination does not have. */
  "unknown-section",
  /** The footers of RAM iteration sections name another section id. */
  "bad-footer",
  /** After the devices, a FULL section of the first device announced one version newer than its own. */
  "newer-device-version",
  /** After the devices, a FULL section of a device with a subsection one version newer than its own. */
  "newer-subsection-version",
  /**
   * After the devices, a FULL section of the first device with one field more than its description has
   * (a source whose device grew a field without a new version): the field is where the footer must be.
   */
  "device-extra-field",
  /** Connect one multifd channel fewer than configured. */
  "multifd-missing-channel",
  /** Announce channel ids shifted by one (the last one is out of range). */
  "multifd-channel-id",
  /** The last multifd channel announces channel id 0, which the first one already has. */
  "multifd-channel-id-twice",
  /** The first multifd packet with pages names a page just past the end of its block. */
  "multifd-offset",
  /** Destination side: the first packet with pages on `channel` is held `delay-ms` (a stalled channel). */
  "multifd-channel-delay",
  /** Destination side: every packet with pages on `channel` is held `delay-ms` (a slow channel). */
  "multifd-channel-slow",
] as const;
export type StreamFaultKind = typeof STREAM_FAULT_KINDS[number];

/** The kinds that change the stream's structure: one is armed at a time, the last one injected. */
type StructuralFaultKind = Exclude<
  StreamFaultKind,
  "corrupt" | "truncate" | "machine-type" | "multifd-channel-delay" | "multifd-channel-slow"
>;

/** One fault, as x-test-inject-fault's arguments describe it (`channel` omitted: the main channel). */
export type StreamFault =
  | { kind: "corrupt"; offset: number; xor: number; channel?: number }
  | { kind: "truncate"; offset: number; channel?: number }
  | { kind: "multifd-channel-delay" | "multifd-channel-slow"; channel: number; delayMs: number }
  | { kind: "machine-type" | StructuralFaultKind };

/**
 * Where an armed fault acts on one outgoing migration; with nothing armed each hook changes nothing.
 * The multifd sender's hooks are declared by the sender (the model owns what it calls).
 */
export interface OutgoingFaultHooks extends MultifdSendFaultHooks {
  /** The main channel's link as its writer sees it (x-test-capture tees it into a file). */
  mainChannel(link: Link): Link;
  /** The configuration section the source announces. */
  configuration(cfg: ConfigurationInfo): ConfigurationInfo;
  /** After the RAM setup section: may append a section the destination must refuse. */
  afterSetup(f: QEMUFileWriter, blocks: readonly RamBlock[]): void;
  /** The section id written in the footer of a RAM iteration (PART) section. */
  partFooterId(sectionId: number): number;
  /** After the device sections: may append a section the destination must refuse. */
  afterDevices(f: QEMUFileWriter, devices: readonly Device[]): void;
  /** How many of the `n` configured multifd channels to connect. */
  multifdChannels(n: number): number;
}

/** Where an armed fault acts on an incoming migration. */
export interface IncomingFaultHooks {
  /** Per multifd channel id: how long its packets with pages are held. */
  multifdChannelDelays(): Map<number, ChannelDelay>;
}

/** x-test-inject-fault's arguments; which ones a kind takes is checked by parseStreamFault. */
export const INJECT_FAULT_ARGS: QmpArgSpec = {
  kind: { type: { enum: STREAM_FAULT_KINDS } },
  offset: { type: "int", optional: true },
  xor: { type: "int", optional: true },
  channel: { type: "int", optional: true },
  "delay-ms": { type: "int", optional: true },
};

const ARGS_OF_KIND: Partial<Record<StreamFaultKind, readonly string[]>> = {
  corrupt: ["offset", "xor", "channel"],
  truncate: ["offset", "channel"],
  "multifd-channel-delay": ["channel", "delay-ms"],
  "multifd-channel-slow": ["channel", "delay-ms"],
};

/** Multifd channel ids are below multifd-channels, at most 255. */
const MAX_CHANNEL_ID = 254;
/** setTimeout's limit: a longer delay would fire at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** An integer argument in [min, max] (a 64-bit value parsed as bigint is out of range), or undefined. */
function intArg(args: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || v < min || v > max) {
    throw new QmpError(`Parameter '${name}' expects a value between ${min} and ${max}`);
  }
  return v;
}

/**
 * The fault x-test-inject-fault's arguments describe (already checked against INJECT_FAULT_ARGS):
 * the arguments a kind needs, then arguments it does not take, then ranges.
 */
export function parseStreamFault(args: Record<string, unknown>): StreamFault {
  const kind = args.kind as StreamFaultKind;
  if ((kind === "corrupt" || kind === "truncate") && args.offset === undefined) {
    throw new QmpError(`fault '${kind}' needs 'offset'`);
  }
  const delayKind = kind === "multifd-channel-delay" || kind === "multifd-channel-slow";
  if (delayKind && (args.channel === undefined || args["delay-ms"] === undefined)) {
    throw new QmpError(`fault '${kind}' needs 'channel' and 'delay-ms'`);
  }
  const allowed = ARGS_OF_KIND[kind] ?? [];
  for (const name of Object.keys(args)) {
    if (name !== "kind" && !allowed.includes(name)) throw new QmpError(`Parameter '${name}' is unexpected`);
  }
  const offset = intArg(args, "offset", 0, Number.MAX_SAFE_INTEGER);
  const channel = intArg(args, "channel", 0, MAX_CHANNEL_ID);
  switch (kind) {
    case "corrupt":
      // xor 0 would corrupt nothing.
      return { kind, offset: offset!, xor: intArg(args, "xor", 1, 0xff) ?? 0xff, channel };
    case "truncate":
      return { kind, offset: offset!, channel };
    case "multifd-channel-delay":
    case "multifd-channel-slow":
      return { kind, channel: channel!, delayMs: intArg(args, "delay-ms", 1, MAX_DELAY_MS)! };
    default:
      return { kind };
  }
}

/** The faults armed on one engine. They stay armed for every later migration, as a wrong peer stays wrong. */
export class StreamFaults {
  readonly #main: OutputFaults = {};
  readonly #channels = new Map<number, OutputFaults>();
  readonly #delays = new Map<number, ChannelDelay>();
  #machineType = false;
  #structural: StructuralFaultKind | null = null;
  #capturePath: string | null = null;

  /** Tees the main channel of every later outgoing migration into `path` (each replaces it); null stops. */
  capture(path: string | null): void {
    this.#capturePath = path;
  }

  inject(fault: StreamFault): void {
    switch (fault.kind) {
      case "corrupt":
      case "truncate": {
        let out = this.#main;
        if (fault.channel !== undefined) {
          out = this.#channels.get(fault.channel) ?? {};
          this.#channels.set(fault.channel, out);
        }
        if (fault.kind === "corrupt") {
          out.corruptAt = fault.offset;
          out.xor = fault.xor;
        } else out.truncateAt = fault.offset;
        break;
      }
      case "multifd-channel-delay":
      case "multifd-channel-slow":
        this.#delays.set(fault.channel, { ms: fault.delayMs, every: fault.kind === "multifd-channel-slow" });
        break;
      case "machine-type":
        this.#machineType = true;
        break;
      default:
        this.#structural = fault.kind;
    }
  }

  /** The hooks of one outgoing migration (faults armed later still act, as the wire is written). */
  outgoing(): OutgoingFaultHooks {
    let offsetDone = false;
    let lastChannel = -1;
    const capturePath = this.#capturePath;
    return {
      mainChannel: (link) => capturePath === null ? link : new CaptureLink(link, capturePath),
      // The main channel's record is shared, so its faults also act on a migration under way.
      output: (channel) => channel === undefined ? this.#main : this.#channels.get(channel) ?? {},
      configuration: (cfg) => this.#machineType ? { ...cfg, machineType: `${cfg.machineType}-other` } : cfg,
      afterSetup: (f, blocks) => {
        const kind = this.#structural;
        if (kind !== "bad-ram-flags" && kind !== "ram-offset" && kind !== "xbzrle-overrun") return;
        const block = blocks[0];
        saveSectionShort(f, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
        if (kind === "bad-ram-flags") {
          f.putBe64(RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE);
        } else if (kind === "xbzrle-overrun") {
          // zrun of 4095 bytes (ULEB128 0xff 0x1f), then an nzrun of 2 bytes: one byte past the page.
          f.putBe64(RAM_SAVE_FLAG_XBZRLE);
          f.putCountedString(block.idstr);
          f.put8(ENCODING_FLAG_XBZRLE);
          f.putBe16(5);
          f.putBytes(new Uint8Array([0xff, 0x1f, 0x02, 0xaa, 0xbb]));
        } else {
          f.putBe64(block.usedLength + RAM_SAVE_FLAG_PAGE);
          f.putCountedString(block.idstr);
          f.putBytes(new Uint8Array(TARGET_PAGE_SIZE));
        }
        f.putBe64(RAM_SAVE_FLAG_EOS);
        saveFooter(f, RAM_SECTION_ID);
      },
      partFooterId: (id) => this.#structural === "bad-footer" ? id + 0x40 : id,
      afterDevices: (f, devices) => {
        const kind = this.#structural;
        if (kind === "unknown-section") {
          saveSectionFull(f, QEMU_VM_SECTION_FULL, 0x99, "x-bogus-device", 0, 1);
          saveFooter(f, 0x99);
          return;
        }
        if (kind === "device-extra-field") {
          const d = devices[0];
          // A be32 0 after the device's own fields: its first byte is read as the footer's marker.
          const vmsd = {
            ...d.vmsd,
            fields: [...d.vmsd.fields, { name: "x-extra", type: "uint32" as const }],
          };
          saveSectionFull(f, QEMU_VM_SECTION_FULL, 0x97, d.idstr, d.instanceId, vmsd.versionId);
          saveState(f, vmsd, { ...d.state, "x-extra": 0 });
          saveFooter(f, 0x97);
          return;
        }
        if (kind !== "newer-device-version" && kind !== "newer-subsection-version") return;
        // A device the destination has, sent again as a source with a newer version of it would send it.
        const d = kind === "newer-device-version"
          ? devices[0]
          : devices.find((x) => (x.vmsd.subsections?.length ?? 0) > 0);
        if (!d) return;
        const vmsd = kind === "newer-device-version" ? { ...d.vmsd, versionId: d.vmsd.versionId + 1 } : {
          ...d.vmsd,
          // Sent whatever the state, so the newer version is on the wire.
          subsections: d.vmsd.subsections?.map((sub) => ({
            ...sub,
            versionId: sub.versionId + 1,
            needed: undefined,
          })),
        };
        saveSectionFull(f, QEMU_VM_SECTION_FULL, 0x98, d.idstr, d.instanceId, vmsd.versionId);
        saveState(f, vmsd, d.state);
        saveFooter(f, 0x98);
      },
      multifdChannelId: (id) => {
        if (this.#structural === "multifd-channel-id") return id + 1;
        // The channels are numbered from 0 by the sender, so the last one has the highest id.
        if (this.#structural === "multifd-channel-id-twice" && id > 0 && id === lastChannel) return 0;
        return id;
      },
      multifdChannels: (n) => {
        lastChannel = n - 1;
        return this.#structural === "multifd-missing-channel" ? n - 1 : n;
      },
      multifdPacket: (block, offsets, normalPages) => {
        if (this.#structural !== "multifd-offset" || offsetDone || normalPages === 0) return;
        offsets[0] = block.usedLength;
        offsetDone = true;
      },
    };
  }

  /** The hooks of an incoming migration. */
  incoming(): IncomingFaultHooks {
    return { multifdChannelDelays: () => new Map(this.#delays) };
  }
}
