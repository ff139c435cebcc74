/** The COLO family's record: checkpoints, then a failover at a chosen moment (upstream's colo-tests.c). */
import type { CaseBase, SocketCase } from "../../case.ts";
import type { BreakpointName } from "../../../engine/testing/breakpoints.ts";

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
  /**
   * The fuzzer's: a checkpoint after the checked ones arrives mangled (tools/fuzz). Whatever the secondary
   * makes of it — an error it must word precisely, or a checkpoint loaded — the primary fails over and
   * runs on, and the secondary neither crashes nor stops answering.
   */
  mangledCheckpoint?: boolean;
  /** x-checkpoint-delay on the primary (upstream: 300 ms). */
  checkpointDelayMs?: number;
}

/** test_colo_common: checkpoints, then a failover on one side. */
export interface ColoCase extends CaseBase, SocketCase {
  flow: "colo";
  colo: ColoScenario;
  /** Every page of the primary's RAM written once with seeded bytes before the migration (a cold guest). */
  fillRam?: boolean;
}
