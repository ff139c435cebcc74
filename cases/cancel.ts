/**
 * The cancel matrix (upstream test_cancel_src_after_status): one case per migration status upstream
 * covers. `device` happens too fast to catch, and wait-unplug, colo and the postcopy states are skipped
 * upstream for the reasons given there.
 */
import { CANCEL_PHASES } from "../harness/families/cancel/case.ts";
import { type MigrationCase } from "../harness/families/mod.ts";

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

CANCEL_CASES.push({
  name: "/migration/cancel/src/after/active/blocked-write",
  tier: "full",
  flow: "cancel",
  cancelAfter: "active",
  caps: ["multifd"],
  srcParams: { "multifd-channels": 2, "max-bandwidth": 100_000_000 },
  dstParams: { "multifd-channels": 2 },
  // Long enough for the source to fill both channels' sockets and block; short enough for a prompt teardown.
  dstFaults: [0, 1].map((channel) => ({ kind: "multifd-channel-delay", channel, delayMs: 2000 })),
  whenBlocked: true,
  why: "migrate_cancel while the source's write is blocked on a target that stopped reading: the write " +
    "fails because of the cancel, and the migration must end 'cancelled', not 'failed', guest running",
});
