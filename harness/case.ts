/**
 * A case is data: a record like upstream's MigrateStart/MigrateCommon, one member of a union
 * discriminated by `flow`, so a field exists only where its flow reads it (a COLO case cannot carry
 * `cancelAfter`, a file case cannot carry a socket fault it would ignore). Families in cases/ are tables
 * of these; `validateCases` (harness/validate.ts) checks what the type system cannot when they load.
 */
import type { WorkloadSpec } from "../engine/guest/workload.ts";
import type { Capability, MigrationParameters } from "../engine/options.ts";
import type { BreakpointName } from "../engine/testing/breakpoints.ts";
import type { DefectName } from "../engine/testing/defects.ts";
import type { StreamFaultKind } from "../engine/testing/faults.ts";
import type { ReleaseName } from "../engine/testing/releases.ts";

export type Tier = "smoke" | "full" | "slow";
export const TIERS: readonly Tier[] = ["smoke", "full", "slow"];

/**
 * Expected outcome (upstream's MIG_TEST_*): the migration completes; it fails and the destination stays
 * usable; it fails and the destination process exits with status 1; the `migrate` command itself errors.
 */
/**
 * How the migration must end. "complete-or-fail": a fault the run may or may not hit (the swarm's
 * connection reset at a seeded byte) — it completes and passes every check, or fails cleanly.
 */
export type Expect = "succeed" | "fail" | "fail-dest-exits" | "qmp-error" | "complete-or-fail";

/** A fault injected into one side's stream (x-test-inject-fault; engine/testing/faults.ts). */
export interface FaultSpec {
  kind: StreamFaultKind;
  /** Absolute stream offset for corrupt/truncate; a function of the seed picks one in a range. */
  offset?: number | ((seed: number) => number);
  xor?: number;
  /** A multifd channel id (corrupt/truncate on that channel; multifd-channel-delay/-slow). */
  channel?: number;
  delayMs?: number;
}

/** The named moments of a checkpoint (engine/testing/breakpoints.ts) a COLO case can strike at. */
export type ColoPhase = Extract<
  BreakpointName,
  | "colo-request-sent"
  | "colo-ram-half-sent"
  | "colo-device-buffer-half-sent"
  | "colo-after-vmstate-received"
  | "colo-after-vmstate-loaded"
  | "colo-stopped"
  | "colo-ram-half-received"
  | "colo-device-buffer-received"
  | "colo-apply-middle"
>;

export interface ColoScenario {
  /** The side that survives and takes over (the other is lost). */
  survivor: "primary" | "secondary";
  /** Checkpoints checked page by page before the failure (upstream waits for 3). */
  checkpoints?: number;
  /** Fail over while the secondary is stopped in the next checkpoint (upstream's *_checkpoint cases). */
  duringCheckpoint?: boolean;
  /** SIGKILL the primary at this moment of the next checkpoint, instead of a yank. */
  killPrimaryAt?: ColoPhase;
  /** Ask the secondary to fail over in the middle of the apply (it must relaunch after the apply). */
  failoverDuringApply?: boolean;
  /** Ask the secondary to fail over while a multifd channel holds a packet of the next checkpoint. */
  failoverDuringMultifdPacket?: boolean;
  /** x-checkpoint-delay on the primary (upstream: 300 ms). */
  checkpointDelayMs?: number;
}

export type Side = "src" | "dst";
export type VcpuDuty = { runMs: number; sleepMs: number };

/** What every case has, whatever its flow: the pair as upstream's MigrateStart describes it. */
export interface CaseBase {
  /** QEMU-style path, e.g. "/migration/precopy/unix/plain". */
  name: string;
  tier: Tier;
  /** One line: the bug class the case guards (shown by `--list`). */
  why: string;
  /** Bound of the whole case (default 120 s). */
  timeoutMs?: number;
  /** Machine fixture (fixtures/machines.ts); default "pc". */
  machine?: string;
  /** Guest workload on both sides; default a-b. A random workload's seed comes from the case seed. */
  workload?: WorkloadSpec;
  /** Capabilities on both sides (`events` is always on), and per side. */
  caps?: Capability[];
  srcCaps?: Capability[];
  dstCaps?: Capability[];
  srcParams?: Partial<MigrationParameters>;
  dstParams?: Partial<MigrationParameters>;
  uuid?: { src?: string; dst?: string };
  /** The vCPU's duty cycle (ms running / ms asleep per slice; default 2/2). */
  vcpu?: VcpuDuty;
  /** The destination's vCPU duty cycle, when it differs (a COLO secondary running slower diverges more). */
  dstVcpu?: VcpuDuty;
  /** -mem-prealloc on both sides (guest RAM faulted in at start). */
  memPrealloc?: boolean;
  /**
   * The simulated world: the least percent of the engine's interleave points (Clock.interleave) at which
   * a running guest writes, whatever the seed draws (it may draw more). For a case that exists to race
   * the guest against one step of migration code, so that no seed of the matrix runs it without the race
   * (a seed may draw 0). The other worlds have real concurrency and ignore it.
   */
  simInterleavePercent?: number;
  /** Known defects (engine/testing/defects.ts) switched on per side. */
  defects?: { src?: DefectName[]; dst?: DefectName[] };
  /**
   * Regression cases: the known defect this case guards against. The defects meta-test runs the case
   * with it switched on (the case must fail) and off (it must pass).
   */
  guards?: { side: Side; defect: DefectName };
}

/** A migration over a socket. */
export interface SocketCase {
  transport?: "unix" | "tcp";
  /** Start the destination with `-incoming defer` and send migrate-incoming from the flow. */
  defer?: boolean;
  /** migrate-incoming exit-on-error (only with defer); default true like QEMU. */
  exitOnError?: boolean;
}

/** How the migration must end, and what its error must say. */
export interface Outcome {
  expect?: Expect;
  /** What the error (error-desc, QMP error or destination stderr) must match; only with a failure. */
  error?: RegExp;
}

/** test_precopy_common: live (marker technique) or with the source stopped. */
export interface PrecopyCase extends CaseBase, SocketCase, Outcome {
  flow: "precopy";
  /** The guest runs during precopy (a reason belongs in `why`, as upstream asks). */
  live?: boolean;
  /** Dirty-sync passes to wait for before convergence (live only). */
  iterations?: number;
  /** `migrate` with the `channels` argument instead of `uri` (upstream's .../channels/... cases). */
  migrateChannels?: boolean;
  /** Fill the stopped source's RAM with seeded random bytes before migrating (incompressible guest). */
  fillRandom?: boolean;
  /**
   * Live, with a guest that writes nothing of its own (the idle workload): all of its RAM is written
   * once as the migration starts — seeded bytes before `migrate` and new ones right after the setup's
   * sync (x-test-ram-fill, marking every page dirty) — and never again. The case's srcParams bound the
   * bandwidth and downtime so that it takes passes; the migration must then complete within a few of
   * them, its RAM sent about twice at most (the first pass, and once more for the write).
   */
  writeOnce?: boolean;
  /** A fault in the source's outgoing stream (main channel or a multifd channel). */
  fault?: FaultSpec;
  /** Faults injected on the destination (before migrate-incoming). */
  dstFaults?: FaultSpec[];
  /** After completion the source must report pages sent as XBZRLE deltas. */
  expectXbzrlePages?: boolean;
  /**
   * Cross-version migration: the side runs an older release of the model's devices
   * (engine/testing/releases.ts, x-test-release). The fields a source's release does not send are left
   * out of the device comparison by name, and the destination must have kept its own value of each.
   */
  release?: { src?: ReleaseName; dst?: ReleaseName };
}

/** Live and not converging for `iterations` passes, then converging once bandwidth is raised. */
export interface ConvergeAfterRaiseCase extends CaseBase, SocketCase {
  flow: "converge-after-raise";
  iterations?: number;
  /** Faults injected on the destination (before migrate-incoming). */
  dstFaults?: FaultSpec[];
  /** The source must report a non-zero dirty-pages-rate after a sync and between syncs. */
  expectDirtyPagesRate?: boolean;
  expectXbzrlePages?: boolean;
}

/** test_file_common: the source saves to a file, then the destination loads it. */
export interface FileCase extends CaseBase, Outcome {
  flow: "file";
  /** file: offset option, as written in the URI (a string lets a case pass a malformed one). */
  fileOffset?: number | string;
  /** Stop the source before saving (upstream's stop_src; default true). */
  stopSrc?: boolean;
}

/** test_cancel_src_after_status: cancel once the source reached `cancelAfter`. */
export interface CancelCase extends CaseBase {
  flow: "cancel";
  cancelAfter: CancelPhase;
  /** Faults injected on the destination (before migrate). */
  dstFaults?: FaultSpec[];
  /** Cancel only once the source has sent nothing for a while (its write blocked on the destination). */
  whenBlocked?: boolean;
}

export const CANCEL_PHASES = [
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "completed",
  "failed",
  "pre-switchover",
] as const;
export type CancelPhase = typeof CANCEL_PHASES[number];

/** Migrate to an address nobody listens on. */
export interface BadDestCase extends CaseBase {
  flow: "bad-dest";
}

/** test_multifd_tcp_cancel: cancel, the old destination exits, migrate again to a new one. */
export interface MultifdCancelCase extends CaseBase, SocketCase {
  flow: "multifd-cancel";
}

/** /migration/analyze-script: save to a file, then the stream analyzer must parse it. */
export interface AnalyzeCase extends CaseBase {
  flow: "analyze-script";
}

/** test_colo_common: checkpoints, then a failover on one side. */
export interface ColoCase extends CaseBase, SocketCase {
  flow: "colo";
  colo: ColoScenario;
  /** Every page of the primary's RAM written once with seeded bytes before the migration (a cold guest). */
  fillRam?: boolean;
}

export type MigrationCase =
  | PrecopyCase
  | ConvergeAfterRaiseCase
  | FileCase
  | CancelCase
  | BadDestCase
  | MultifdCancelCase
  | AnalyzeCase
  | ColoCase;

export type Flow = MigrationCase["flow"];

/** The case type of one flow. */
export type CaseOf<F extends Flow> = Extract<MigrationCase, { flow: F }>;

/**
 * The socket options of a case whose flow migrates over a socket the case chooses (its destination
 * listens from the start unless it defers); null for the flows that send migrate-incoming themselves.
 */
export function socketOptions(c: MigrationCase): SocketCase | null {
  switch (c.flow) {
    case "precopy":
    case "converge-after-raise":
    case "multifd-cancel":
    case "colo":
      return c;
    default:
      return null;
  }
}

/** Cases of the selected tier and below (smoke ⊂ full ⊂ slow). */
export function inTier(c: MigrationCase, tier: Tier): boolean {
  return TIERS.indexOf(c.tier) <= TIERS.indexOf(tier);
}

/** Case names mirror upstream: "/migration/...". A filter is a substring or /regex/. */
export function matchesFilter(name: string, filter: string | undefined): boolean {
  if (!filter) return true;
  const m = /^\/(.*)\/([a-z]*)$/.exec(filter);
  if (m && !filter.startsWith("/migration")) return new RegExp(m[1], m[2]).test(name);
  return name.includes(filter);
}
