/**
 * The cancel matrix (upstream test_cancel_src_after_status): one case per migration status upstream
 * covers. `device` happens too fast to catch, and wait-unplug, colo and the postcopy states are skipped
 * upstream for the reasons given there.
 */
import type { MigrationCase } from "../harness/case.ts";

const PHASES = [
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "completed",
  "failed",
  "pre-switchover",
];

export const CANCEL_CASES: MigrationCase[] = PHASES.map((phase) => ({
  name: `/migration/cancel/src/after/${phase}`,
  tier: "full",
  flow: "cancel",
  transport: "unix",
  defer: true,
  exitOnError: false,
  cancelAfter: phase,
  caps: ["setup", "active", "pre-switchover"].includes(phase) ? ["pause-before-switchover"] : [],
}));
