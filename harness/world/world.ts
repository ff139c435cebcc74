/**
 * The world interface: what a flow needs of the two sides of a migration, whoever runs them — engine
 * processes (the model), real QEMU processes, or the deterministic simulated world. Flows ask a Side for
 * QMP, memory, devices and its exit; they never ask which world it belongs to. Where a world cannot do
 * something, it says so with a reason (`Unavailable`), and a case it cannot run is reported as skipped
 * with that reason (never silently passed).
 */
import type { StreamMutator } from "../wire_mutate.ts";
import type { Clock } from "../../engine/clock.ts";
import type { WorkloadSpec } from "../../engine/guest/workload.ts";
import type { MemoryBackend } from "../../engine/hostmem.ts";
import type { RamSource } from "../check/ram_equal.ts";
import type { UncomparedField } from "../check/device_equal.ts";
import type { AnyCase, VcpuDuty } from "../case.ts";
import type { QmpClient, QmpTranscriptEntry } from "../../engine/qmp/client.ts";
import type { SideFds } from "../fds.ts";
import type { FileStore } from "../../engine/transport/file.ts";
import type { Network } from "../../engine/transport/socket.ts";
import type { PostcopyIncomingStats } from "../../engine/postcopy_ram.ts";
import { HARDWARE_COMPRESSION, type HardwareCompression } from "../../engine/options.ts";

/** Postcopy's counters: the source's requests, the destination's faults (either side absent if not one). */
export interface PostcopyStats {
  source?: { requests: number; requestsForSentPages: number };
  destination?: PostcopyIncomingStats;
}

export const WORLD_NAMES = ["engine", "qemu", "sim", "engine-to-qemu", "qemu-to-engine"] as const;
export type WorldName = typeof WORLD_NAMES[number];

/** Something a world cannot give, and why (e.g. QEMU has no command that dumps device state). */
export interface Unavailable {
  unavailable: string;
}

export function isUnavailable(v: unknown): v is Unavailable {
  return typeof v === "object" && v !== null && "unavailable" in v;
}

/** Device state as JSON, field by field, keyed "idstr/instance". */
export type DeviceState = Record<string, Record<string, unknown>>;

/**
 * Named moments at which a side can be held (the model's x-test breakpoints, e.g. `colo-applied`: the
 * secondary after a checkpoint's apply, before it resumes). A side that reaches an armed breakpoint
 * emits X_TEST_BREAKPOINT {name, checkpoint} and waits there until continued.
 */
export interface Breakpoints {
  /** Arms `name`; persistent: it holds every time it is reached until disarmed, else once. */
  arm(name: string, opts?: { persistent?: boolean }): Promise<void>;
  /** Releases the side held at `name`; disarm: and it does not hold there again. */
  continue(name: string, opts?: { disarm?: boolean }): Promise<void>;
}

/** How to start one side (QEMU's command line, in the model's terms). */
export interface SideSpec {
  /** "source" or "target" (QEMU's -name). */
  name: "source" | "target";
  /** The case's seed (the simulated world's scheduler is seeded from it). */
  seed?: number;
  /** The pair's private directory (0700). */
  dir: string;
  machine: string;
  workload: WorkloadSpec;
  /** `-incoming URI` or `defer`. */
  incoming?: string;
  /** `-S`. */
  startPaused?: boolean;
  uuid?: string;
  memPrealloc?: boolean;
  /** The vCPU's dirty ring (entries), or none: the dirty bitmap. */
  dirtyRingSize?: number;
  /** The main RAM in this memory backend (a file both sides map, or a memfd). */
  memoryBackend?: MemoryBackend;
  /** -machine aux-ram-share=on: every other RAM block a shared memfd. */
  auxRamShare?: boolean;
  /**
   * cpr-transfer's target: `-incoming cpr,...` on this unix socket. The side loads the source's CPR state
   * there before anything else, so its monitor answers only once the source has migrated.
   */
  cprChannel?: string;
  vcpu?: VcpuDuty;
  /**
   * A model destination of a QEMU source: the file (in `dir`) that describes the source's machine (its
   * type, RAM blocks and vmdesc devices), which the model loads QEMU's stream as; other worlds ignore it.
   */
  qemuMachine?: string;
  /** The simulated world's least interleave percent (the case's simInterleavePercent); others ignore it. */
  interleavePercent?: number;
  /** The case's name (the simulated world hashes it into its trace). */
  caseName?: string;
  /** The case's wire edits, for a world whose links make them (editsLinks); others ignore it. */
  wireMutator?: StreamMutator;
  /** Unix socket paths the side may use besides its QMP socket (the migration socket). */
  socketPaths: string[];
  transcript: QmpTranscriptEntry[];
  timeoutMs: number;
  /**
   * The side runs COLO, launched as upstream's colo-tests.c launches it: QMP with the `oob` capability
   * (yank is exec-oob, as in production) and, where there is a disk, a private overlay of it
   * (`snapshot=on`), since both sides run from the same image at the same time.
   */
  colo?: boolean;
}

/**
 * What a deterministic world can say about a run: a hash of everything it decided (the same seed on the
 * same commit gives the same hash) and a report of its last moments (for a failure).
 */
export interface WorldTrace {
  hash(): string;
  report(): string;
}

/** One side of a migration as a flow sees it. */
export interface Side {
  readonly name: "source" | "target";
  readonly qmp: QmpClient;
  /**
   * Why the side cannot run the guest it received, when it came from the other kind of machine (the
   * model's guest is no x86 code; QEMU's x86 program is nothing the model's vCPU runs): its RAM is
   * checked, its run is not. Absent: it runs what it received.
   */
  readonly foreignGuest?: string;
  /** The guest's serial output (upstream's `-serial file:`). */
  readonly serialPath: string;
  /**
   * After GUEST_PANICKED, what the guest saw, where the event does not say it (a QEMU guest program
   * leaves it in its memory; the model puts it in the event): null when there is nothing to say.
   */
  guestPanic?(): Promise<string | null>;
  /**
   * A count the guest program advances as it runs (a QEMU guest program's heartbeat), or null for a
   * guest that is meant to stand still; absent where the world keeps none.
   */
  guestProgress?(): Promise<number | null>;
  /**
   * Fills the guest's RAM with seeded random bytes, every page dirty, the world's own way (QEMU: its
   * test range through qtest); absent: the model's x-test-ram-fill.
   */
  fillRam?(seed: number): Promise<void>;
  readonly stderr: string;
  /** The side's time, when it is not the host's (the simulated world's virtual clock). */
  readonly clock?: Clock;
  /** The run's trace, in a deterministic world. */
  readonly trace?: WorldTrace;
  /** Exit status once the side ended, else null. */
  readonly exitStatus: Deno.CommandStatus | null;
  /**
   * A destination whose load failed: true when it stays up with status `failed` and `exit-on-error`
   * false is honoured; false when it always exits with status 1 (QEMU before 9.1 has no exit-on-error).
   */
  readonly staysUpAfterFailedLoad: boolean;

  /** Guest RAM as the RAM checker reads it. */
  ram(): RamSource;
  /** The secondary's COLO cache as the RAM checker reads it. */
  coloCache(): RamSource | Unavailable;
  /**
   * The pages the side's guest wrote since its dirty log was last cleared, by block: on a postcopy
   * destination, since it started running (bit k of byte k>>3 is page k).
   */
  guestWritten(): Promise<Map<string, Uint8Array> | Unavailable>;
  /** Postcopy's counters on this side (the model's x-test-postcopy-stats). */
  postcopyStats(): Promise<PostcopyStats | Unavailable>;
  /** The network the side's migration channels use (the host's, or the simulated world's): test peers. */
  network(): Network;
  /** Where the side's file: paths live (the host's filesystem, or the simulated world's memory). */
  files(): FileStore;
  /** Descriptors passed to the side's monitor (getfd, add-fd), as upstream's fd and fdset tests pass them. */
  fds(): SideFds;
  /** Guest-physical bytes of pc.ram. */
  readRam(offset: number, size: number): Promise<Uint8Array>;
  writeRam(offset: number, data: Uint8Array): Promise<void>;
  /** The first byte of every page in [start, end): what check_guests_ram reads. */
  firstBytes(start: number, end: number): Promise<Uint8Array>;
  deviceState(): Promise<DeviceState | Unavailable>;
  /** Device fields this world legitimately holds differently on a source and its destination. */
  readonly uncomparedFields?: readonly UncomparedField[];
  /** Holding the side at named moments (fault injection at an exact point), where the world has them. */
  breakpoints(): Breakpoints | Unavailable;
  /**
   * Tees what this side sends on the main channel of the migrations it starts from now on into `path`
   * (in the pair's directory), readable by `deno task analyze`; null once armed.
   */
  captureMainChannel(path: string): Promise<Unavailable | null>;

  /** Waits for the side to exit on its own (a destination quitting after a failed load). */
  waitExit(timeoutMs: number): Promise<Deno.CommandStatus>;
  /** SIGKILL now (fault injection: the peer dies). */
  sigkill(): Promise<Deno.CommandStatus>;
  /** A clean end (SIGTERM, then SIGKILL if it lingers); releases every resource; returns the status. */
  kill(): Promise<Deno.CommandStatus>;
}

/**
 * A bug of the system a world runs (a QEMU bug) that a case is known to hit: the case then reports
 * XFAIL when it fails this way, and XPASS — a failure to look at — when the bug no longer happens.
 */
export interface KnownBug {
  /** Short name, e.g. "qemu-7.2-multifd-refusal-abort". */
  id: string;
  /** What the case sees. */
  summary: string;
  /** The versions it was seen on, e.g. "7.2". */
  versions: string;
  /** The upstream fix, when known. */
  fix?: string;
  /** The failure message the bug causes (a different failure is a plain failure). */
  symptom: RegExp;
  /**
   * The bug strikes some runs only (a race): a pass is then not evidence that it is fixed, so it is
   * reported as a pass with a note naming the bug, not as XPASS (see known_bug.ts).
   */
  intermittent?: boolean;
  /**
   * The bug is a hang, seen as a wait that never ends: the case's waits give up after this many ms
   * instead of the usual 30 s (the same wait fails with the same message, sooner). Several times what the
   * wait takes where the bug is fixed, so that a fix still shows as XPASS.
   */
  hangMs?: number;
}

/** Something a case needs of one side's QEMU binary beyond what every QEMU that migrates has. */
export type QemuNeed =
  | { side: "src" | "dst"; kind: "transport"; name: string }
  | { side: "src" | "dst"; kind: "migrate-arg"; name: string }
  | { side: "src" | "dst"; kind: "capability"; name: string }
  | { side: "src" | "dst"; kind: "parameter"; name: string }
  | { side: "src" | "dst"; kind: "compression"; name: string }
  | { side: "src" | "dst"; kind: "applies-level"; name: string; value: unknown }
  /** A status query-migrate can report (a state the case waits for). */
  | { side: "src" | "dst"; kind: "status"; name: string }
  /** These capabilities set together (names joined by "+"): a version may refuse the combination. */
  | { side: "src" | "dst"; kind: "capability-set"; name: string };

/**
 * What a case needs of a world beyond its base fields (capabilities, parameters, machine, workload,
 * defects, which every world reads from the case itself), as its family declares it
 * (harness/families/<family>/mod.ts, `needs`). The worlds decide from these alone, so none names a
 * family; the vocabulary is the worlds' (what a world can or cannot do), not the families'.
 */
export interface CaseNeeds {
  /** A side held at a named moment (the model's breakpoints), said as the moment ("killing … at X"). */
  heldAt?: string;
  /** The moment of `heldAt` also has a place on the wire: a world with the wire proxy holds it there. */
  heldOnWire?: boolean;
  /** Stream faults only the model's hook makes (x-test-inject-fault), by kind; none: empty or absent. */
  faults?: string[];
  /** Of `faults`, those the destination makes (a pair with the model as its source only injects the others). */
  dstFaults?: string[];
  /** An older release of the model's devices on a side (x-test-release). */
  olderRelease?: boolean;
  /** Guest-control knobs of the model (its RAM filled or written once through x-test commands). */
  guestControl?: boolean;
  /** What the QEMU binaries must have beyond every QEMU that migrates (a transport, an argument). */
  qemu?: QemuNeed[];
  /** Why the simulated world cannot run the case (its I/O goes outside the scheduler). */
  notSimulated?: string;
  /**
   * Hardware the model has none of (an RDMA link), said as what it is and why: the engine and the
   * simulated world skip the case with it; QEMU runs it where its build and the host have it.
   */
  notModelled?: string;
  /** An RDMA link on the host, its address of this family (the rdma: transport listens there). */
  rdmaLink?: "IPv4" | "IPv6";
  /**
   * The verdict is a rate or a duration in the world's time, said as what it is: between real processes
   * it would depend on the machine's load, so the engine world leaves it to the simulated one.
   */
  timed?: string;
  /** The sides run as a COLO pair (QMP out-of-band, a snapshot disk, KVM first on QEMU). */
  coloPair?: boolean;
  /** Counters only the model keeps (its x-test statistics), said as what they count. */
  modelCounters?: string;
  /**
   * An interleaving the case must bring about, said as what it is: real threads give it only by chance,
   * so only the simulated world, which schedules it, can promise a verdict that does not hang on timing.
   */
  scheduled?: string;
}

/**
 * Why the model (the engine, in its processes or simulated) cannot run the case: hardware it does not
 * model, from the family's needs or the case's own multifd-compression. Null when it can.
 */
export function modelCannotRun(c: AnyCase, needs: CaseNeeds): string | null {
  if (needs.notModelled) return needs.notModelled;
  for (const params of [c.srcParams, c.dstParams]) {
    const method = params?.["multifd-compression"];
    if (method && (HARDWARE_COMPRESSION as readonly string[]).includes(method)) {
      return `multifd-compression ${method} is ${HARDWARE_WHAT[method as HardwareCompression]}: the model ` +
        "has no such device (it refuses the method, as a QEMU built without it does); a QEMU built with it runs the case";
    }
  }
  return null;
}

const HARDWARE_WHAT: Record<HardwareCompression, string> = {
  qatzip: "QATzip on an Intel QuickAssist (QAT) device (QEMU's CONFIG_QATZIP)",
  qpl: "Intel's Query Processing Library on an In-Memory Analytics Accelerator (IAA; CONFIG_QPL)",
  uadk: "HiSilicon's UADK on a Kunpeng accelerator (CONFIG_UADK)",
};

/** A backend that runs sides. */
export interface World {
  readonly name: WorldName;
  /** Learns what the world can do (e.g. probes the QEMU binaries) before cases are selected or run. */
  prepare?(): Promise<void>;
  /**
   * The world has no x-test-inject-fault: a byte fault on the source's main channel goes on the wire,
   * through a proxy between the sides (harness/wire_proxy.ts).
   */
  readonly wireFaults?: boolean;
  /** The world's own links make a case's wire edits (the simulation); else the wire proxy does. */
  readonly editsLinks?: boolean;
  /**
   * Which side is real QEMU, where the world mixes: QEMU's words (a case's `qemuError`) are what its
   * destination says. Absent: both sides are this world's (QEMU for the qemu world).
   */
  readonly qemuSides?: { src: boolean; dst: boolean };
  /** Why this world cannot run the case (reported as a skip with this reason), or null. */
  cannotRun(c: AnyCase, needs: CaseNeeds): string | null;
  /** The known bug the case hits in this world, or null. */
  knownBug?(c: AnyCase, needs: CaseNeeds): KnownBug | null;
  spawn(spec: SideSpec): Promise<Side>;
}
