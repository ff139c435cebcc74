/** The cancel family's record: cancel the source at a given status (upstream's test_cancel_src_*). */
import type { CaseBase, FaultSpec } from "../../case.ts";

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
