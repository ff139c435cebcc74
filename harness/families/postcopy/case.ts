/** The postcopy family's record: upstream's test_postcopy_common and test_postcopy_recovery_common. */
import type { CaseBase, Outcome, SocketCase } from "../../case.ts";
import type { BreakpointName } from "../../../engine/testing/breakpoints.ts";

/**
 * How a postcopy is paused and recovered. "plain": migrate-pause on the source, migrate-recover and
 * migrate with resume. The double failures fail the first recovery as upstream does: "handshake" — the
 * source resumes towards a peer that never answers and is paused again in postcopy-recover, while the
 * destination, sent one byte on its recovery socket, is paused again in postcopy-recover; "reconnect" —
 * the source's new connection cannot be made (postcopy-recover-setup, then postcopy-paused again).
 */
export type PostcopyRecovery = "plain" | "double-failure-handshake" | "double-failure-reconnect";

/** A step of the recovery handshake at which the channel fails (the model's breakpoints). */
export type PostcopyRecoveryStep = Extract<
  BreakpointName,
  "postcopy-recv-bitmap" | "postcopy-bitmaps-reloaded" | "postcopy-resume-ack"
>;

/** The statuses a migrate_cancel is tried in (it must be refused: the guest runs on the destination). */
export type PostcopyStatus = "postcopy-active" | "postcopy-paused" | "postcopy-recover";

/**
 * A window of the page-request path a case exists to open, proven open by the model's counters:
 * "request-crosses-page" — the guest faults on a page the source already sent, so its request crosses
 * the page on the way (the source must not send it twice); "fault-on-discarded" — the guest faults on a
 * page whose precopy copy the switch discarded (it must get the source's newer copy, not the old one).
 */
export type PostcopyWindow = "request-crosses-page" | "fault-on-discarded";

export interface PostcopyCase extends CaseBase, SocketCase, Outcome {
  flow: "postcopy";
  /** postcopy-preempt on both sides: requested pages on a channel of their own. */
  preempt?: boolean;
  recovery?: PostcopyRecovery;
  /** With a recovery: the first recovery's channel fails at this step; the next recovery completes. */
  failAt?: PostcopyRecoveryStep;
  /** migrate_cancel on the source in each of these statuses: refused, and the migration completes. */
  cancelIn?: PostcopyStatus[];
  /**
   * max-postcopy-bandwidth while postcopy runs (bytes/s): background pages that slow make the running
   * destination fault; recoveries use upstream's 4096 until they resume.
   */
  postcopyBandwidth?: number;
  /** The destination's guest must have faulted on missing pages (the source got page requests). */
  expectFaults?: boolean;
  /** Windows the run must have opened (at least once each), or the case fails as not testing its why. */
  windows?: PostcopyWindow[];
  /** The destination lacks postcopy-ram: it must refuse the source's advise at once. */
  dstWithoutPostcopy?: boolean;
}
