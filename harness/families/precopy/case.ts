/** The precopy family's records: upstream's test_precopy_common, and converge-after-raise. */
import type { CaseBase, FaultSpec, Outcome, SocketCase } from "../../case.ts";
import type { ReleaseName } from "../../../engine/testing/releases.ts";

/** test_precopy_common: live (marker technique) or with the source stopped. */
export interface PrecopyCase extends CaseBase, SocketCase, Outcome {
  flow: "precopy";
  /** The guest runs during precopy (a reason belongs in `why`, as upstream asks). */
  live?: boolean;
  /** Dirty-sync passes to wait for before convergence (live only). */
  iterations?: number;
  /** `migrate` with the `channels` argument instead of `uri` (upstream's .../channels/... cases). */
  migrateChannels?: boolean;
  /** `migrate` with both `uri` and `channels`, or neither: a QMP error (upstream's validate_uri cases). */
  migrateAddress?: "both" | "none";
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
  /**
   * switchover-ack held: the destination's ack waits at its breakpoint (a device not ready yet) while the
   * source, converged, must not switch over; released, the migration completes. Needs the model's
   * breakpoints.
   */
  holdSwitchoverAck?: boolean;
  /**
   * After completion, `cont` on the source (what libvirt does when the destination cannot start after
   * all): a source whose guest was suspended must go back to "suspended", not run nor die.
   */
  contSourceAfter?: boolean;
  /**
   * After completion the source's query-migrate ram.transferred must be under this many MiB (upstream's
   * ignore-shared: shared RAM is not sent, so under 4 MiB of a 128 MiB guest goes on the wire).
   */
  maxRamSentMiB?: number;
  /**
   * Once the destination is loading ('active'), a capability and a parameter are set on it, which must be
   * accepted (QEMU checks only an outgoing migration); live and held from converging until then.
   */
  setDstWhileLoading?: boolean;
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

/**
 * upstream's test_auto_converge: a live migration that cannot converge, with auto-converge: the source
 * throttles the vCPU (from cpu-throttle-initial, by cpu-throttle-increment, up to max-cpu-throttle) and,
 * throttled, syncs its dirty log periodically; given converge settings it reaches pre-switchover.
 */
export interface AutoConvergeCase extends CaseBase, SocketCase {
  flow: "auto-converge";
}
