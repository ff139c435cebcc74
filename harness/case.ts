/**
 * A case is data: a record like upstream's MigrateStart/MigrateCommon. Families in cases/ are tables of
 * these; the shared flows in framework.ts interpret them.
 */
import type { WorkloadSpec } from "../engine/guest/workload.ts";
import type { Capability } from "../engine/options.ts";

export type Tier = "smoke" | "full" | "slow";
export const TIERS: readonly Tier[] = ["smoke", "full", "slow"];

/**
 * Expected outcome (upstream's MIG_TEST_*): the migration completes; it fails and the destination stays
 * usable; it fails and the destination process exits with status 1; the `migrate` command itself errors.
 */
export type Expect = "succeed" | "fail" | "fail-dest-exits" | "qmp-error";

export type Flow =
  /** test_precopy_common: live (marker technique) or with the source stopped. */
  | "precopy"
  /** test_file_common: the source saves to a file, then the destination loads it. */
  | "file"
  /** test_cancel_src_after_status: cancel once the source reached `cancelAfter`. */
  | "cancel"
  /** Migrate to an address nobody listens on. */
  | "bad-dest"
  /** Live and not converging for `iterations` passes, then converging once bandwidth is raised. */
  | "converge-after-raise"
  /** test_multifd_tcp_cancel: cancel, the old destination exits, migrate again to a new one. */
  | "multifd-cancel"
  /** /migration/analyze-script: save to a file, then the stream analyzer must parse it. */
  | "analyze-script"
  /** test_colo_common: checkpoints, then a failover on one side (see `colo`). */
  | "colo";

/** A fault injected into the source's outgoing main channel (x-test-inject-fault). */
export interface FaultSpec {
  kind:
    | "corrupt"
    | "truncate"
    | "machine-type"
    | "bad-ram-flags"
    | "ram-offset"
    | "unknown-section"
    | "bad-footer"
    | "multifd-missing-channel"
    | "multifd-channel-id"
    | "multifd-offset"
    /** Destination side: the first packet with pages on `channel` waits `delayMs` before it is written. */
    | "multifd-channel-delay";
  /** Absolute stream offset for corrupt/truncate; a function of the seed picks one in a range. */
  offset?: number | ((seed: number) => number);
  xor?: number;
  /** A multifd channel id (corrupt/truncate on that channel; multifd-channel-delay). */
  channel?: number;
  delayMs?: number;
}

/** The named moments of a checkpoint (engine/breakpoints.ts) a COLO case can strike at. */
export type ColoPhase =
  | "colo-request-sent"
  | "colo-ram-half-sent"
  | "colo-device-buffer-half-sent"
  | "colo-after-vmstate-received"
  | "colo-after-vmstate-loaded"
  | "colo-stopped"
  | "colo-ram-half-received"
  | "colo-device-buffer-received"
  | "colo-apply-middle";

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

export interface MigrationCase {
  /** QEMU-style path, e.g. "/migration/precopy/unix/plain". */
  name: string;
  tier: Tier;
  flow?: Flow;
  /** Machine fixture (fixtures/machines.ts); default "pc". */
  machine?: string;
  /** Guest workload on both sides; default a-b. A random workload's seed comes from the case seed. */
  workload?: WorkloadSpec;
  transport?: "unix" | "tcp" | "file";
  /** Start the destination with `-incoming defer` and send migrate-incoming from the flow. */
  defer?: boolean;
  /** migrate-incoming exit-on-error (only with defer); default true like QEMU. */
  exitOnError?: boolean;
  /** file: offset option, as written in the URI (a string lets a case pass a malformed one). */
  fileOffset?: number | string;
  /** Capabilities on both sides (`events` is always on), and per side. */
  caps?: Capability[];
  srcCaps?: Capability[];
  dstCaps?: Capability[];
  srcParams?: Record<string, unknown>;
  dstParams?: Record<string, unknown>;
  /** The guest runs during precopy (a reason belongs in `why`, as upstream asks). */
  live?: boolean;
  /** Dirty-sync passes to wait for before convergence (live only). */
  iterations?: number;
  expect?: Expect;
  /** What the error (error-desc, QMP error or destination stderr) must match. */
  error?: RegExp;
  uuid?: { src?: string; dst?: string };
  /** `migrate` with the `channels` argument instead of `uri` (upstream's .../channels/... cases). */
  migrateChannels?: boolean;
  /** Fill the stopped source's RAM with seeded random bytes before migrating (incompressible guest). */
  fillRandom?: boolean;
  /** The vCPU's duty cycle (ms running / ms asleep per slice; default 2/2). */
  vcpu?: { runMs: number; sleepMs: number };
  /** The destination's vCPU duty cycle, when it differs (a COLO secondary running slower diverges more). */
  dstVcpu?: { runMs: number; sleepMs: number };
  /** -mem-prealloc on both sides (guest RAM faulted in at start). */
  memPrealloc?: boolean;
  fault?: FaultSpec;
  /** Faults injected on the destination (before migrate-incoming). */
  dstFaults?: FaultSpec[];
  /** Known defects (engine/defects.ts) switched on per side. */
  defects?: { src?: string[]; dst?: string[] };
  /**
   * Regression cases: the known defect this case guards against. The defects meta-test runs the case
   * with it switched on (the case must fail) and off (it must pass).
   */
  guards?: { side: "src" | "dst"; defect: string };
  /** file flow: stop the source before saving (upstream's stop_src). */
  stopSrc?: boolean;
  /** After completion the source must report pages sent as XBZRLE deltas. */
  expectXbzrlePages?: boolean;
  /** converge-after-raise: the source must report a non-zero dirty-pages-rate after a sync and between syncs. */
  expectDirtyPagesRate?: boolean;
  /** colo flow: which side fails over, and when. */
  colo?: ColoScenario;
  /** cancel flow: the status after which the source is cancelled. */
  cancelAfter?: string;
  /** Why the case exists, or why it is live. */
  why?: string;
  timeoutMs?: number;
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
