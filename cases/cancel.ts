/**
 * The cancel matrix (upstream test_cancel_src_after_status): one case per migration status upstream
 * covers. `device` happens too fast to catch, and wait-unplug, colo and the postcopy states are skipped
 * upstream for the reasons given there.
 */
import { CANCEL_PHASES, type MigrationCase } from "../harness/case.ts";

export const CANCEL_CASES: MigrationCase[] = CANCEL_PHASES.map((phase) => ({
  name: `/migration/cancel/src/after/${phase}`,
  tier: "full",
  flow: "cancel",
  cancelAfter: phase,
  caps: ["setup", "active", "pre-switchover"].includes(phase) ? ["pause-before-switchover"] : [],
  why: phase === "none" || phase === "completed" || phase === "failed"
    ? `migrate_cancel after '${phase}' changes nothing: the source keeps its status and its guest`
    : `migrate_cancel in '${phase}' ends in 'cancelled' with the source guest running and the target failed`,
}));
