/**
 * What `deno task fuzz` mangles: a stream of a small migration, named. Each target is one direction of
 * one connection of a case built here (a tiny guest under a random writer, so a run takes well under a
 * second in the simulated world): the main channel of plain precopy, with XBZRLE, of multifd; a multifd
 * channel with each compression; the return path's messages; a COLO checkpoint on the main channel.
 * Every case expects "survives": complete, or fail saying what was wrong, the source keeping its guest.
 */
import type { PrecopyCase } from "../../harness/families/precopy/case.ts";
import type { ColoCase } from "../../harness/families/colo/case.ts";
import type { FileCase } from "../../harness/families/file/case.ts";
import type { StreamMutation } from "../../harness/wire_mutate.ts";
import type { ColoWirePlace } from "../../harness/wire_colo.ts";

export type StreamKind = "main" | "multifd" | "return-path" | "colo" | "file";

export interface FuzzTarget {
  name: string;
  kind: StreamKind;
  case: PrecopyCase | ColoCase | FileCase;
  connection: number;
  direction: StreamMutation["direction"];
  /** For a COLO target: the checkpoint places an input's offsets count from. */
  coloFrom?: { places: readonly ColoWirePlace[]; checkpoints: number };
}

function precopy(name: string, extra: Partial<PrecopyCase> = {}): PrecopyCase {
  return {
    name: `/migration/fuzz/${name}`,
    tier: "full",
    flow: "precopy",
    why: "a mangled stream is refused with a precise error or loaded; no side hangs or crashes, the " +
      "source keeps its guest",
    transport: "unix",
    live: true,
    // migrate-incoming with exit-on-error off: a destination that failed stays up to be asked.
    defer: true,
    machine: "tiny",
    workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 90 },
    exitOnError: false,
    expect: "survives",
    ...extra,
  };
}

function multifd(name: string, compression: "none" | "zlib" | "zstd"): PrecopyCase {
  const params = { "multifd-channels": 2, "multifd-compression": compression } as const;
  return precopy(name, {
    transport: "tcp",
    caps: ["multifd", "return-path"],
    srcParams: params,
    dstParams: params,
  });
}

const plain = precopy("precopy");
const xbzrle = precopy("precopy/xbzrle", { caps: ["xbzrle"], iterations: 2 });
const returnPath = precopy("precopy/return-path", { caps: ["return-path", "switchover-ack"] });
const multifdNone = multifd("multifd/none", "none");
const multifdZlib = multifd("multifd/zlib", "zlib");
const multifdZstd = multifd("multifd/zstd", "zstd");

function colo(name: string, multifd: boolean): ColoCase {
  const params = multifd ? { "multifd-channels": 2 } : {};
  return {
    name: `/migration/fuzz/${name}`,
    tier: "full",
    flow: "colo",
    why: "a mangled COLO checkpoint: the secondary refuses it with a precise error or loads it, neither " +
      "side crashes, and the primary's failover still works",
    transport: "tcp",
    defer: multifd,
    caps: multifd ? ["x-colo", "multifd"] : ["x-colo"],
    machine: "tiny",
    workload: { kind: "random", seed: 0, hotPages: 256, hotPercent: 70 },
    // One checkpoint checked page by page, then the second is mangled.
    colo: { survivor: "primary", checkpoints: 1, checkpointDelayMs: 20, mangledCheckpoint: true },
    srcParams: params,
    dstParams: params,
  };
}

/** A stream saved to a file (the file flow), edited between the save and the load. */
function file(name: string, caps: FileCase["caps"]): FileCase {
  return {
    name: `/migration/fuzz/${name}`,
    tier: "full",
    flow: "file",
    why: "a mangled migration file is refused with a precise error or loaded; the destination stays up",
    machine: "tiny",
    workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 90 },
    caps,
    expect: "survives",
  };
}

/** Where in a checkpoint an edit counts from (the wire tracker's places in what the primary sends). */
const CHECKPOINT_PLACES = [
  "request-sent",
  "send-start",
  "ram-middle",
  "devices-middle",
  "devices-end",
] as const;
const COLO_FROM = { places: CHECKPOINT_PLACES, checkpoints: 2 };

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  { name: "main/precopy", kind: "main", case: plain, connection: 0, direction: "forward" },
  { name: "main/xbzrle", kind: "main", case: xbzrle, connection: 0, direction: "forward" },
  { name: "main/multifd", kind: "main", case: multifdNone, connection: 0, direction: "forward" },
  { name: "multifd/none", kind: "multifd", case: multifdNone, connection: 1, direction: "forward" },
  { name: "multifd/zlib", kind: "multifd", case: multifdZlib, connection: 2, direction: "forward" },
  { name: "multifd/zstd", kind: "multifd", case: multifdZstd, connection: 1, direction: "forward" },
  { name: "return-path", kind: "return-path", case: returnPath, connection: 0, direction: "back" },
  { name: "return-path/multifd", kind: "return-path", case: multifdNone, connection: 0, direction: "back" },
  { name: "file", kind: "file", case: file("file", []), connection: 0, direction: "forward" },
  {
    name: "file/mapped-ram",
    kind: "file",
    case: file("file/mapped-ram", ["mapped-ram"]),
    connection: 0,
    direction: "forward",
  },
  {
    name: "colo",
    kind: "colo",
    case: colo("colo/plain", false),
    connection: 0,
    direction: "forward",
    coloFrom: COLO_FROM,
  },
  {
    name: "colo/multifd",
    kind: "colo",
    case: colo("colo/multifd", true),
    connection: 0,
    direction: "forward",
    coloFrom: COLO_FROM,
  },
];

export function targetNamed(name: string): FuzzTarget | undefined {
  return FUZZ_TARGETS.find((t) => t.name === name);
}
