/** The cancel flow (upstream's test_cancel_src_after_status): cancel once the source reached a status. */
import type { CancelCase } from "./case.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { expectTargetFailed } from "../../expect.ts";
import {
  connectUri,
  CONVERGE,
  injectFault,
  migrate,
  migrateIncoming,
  NON_CONVERGE,
} from "../../migration_qmp.ts";
import { waitGuestDirtying } from "../../migration_util.ts";

/** Until the source's transferred bytes stop moving for 300 ms: its write waits on the destination. */
async function waitSourceBlocked(p: MigrationPair): Promise<void> {
  const transferred = async () =>
    ((await p.status(p.src)).ram as Record<string, number> | undefined)?.transferred;
  let last = await transferred();
  await p.wait("the source's transferred bytes to stop moving (a write blocked on the target)", async () => {
    await p.sleep(300);
    const now = await transferred();
    const still = now !== undefined && now === last;
    last = now;
    return still || undefined;
  });
}

export async function cancelFlow(p: MigrationPair, c: CancelCase): Promise<void> {
  const phase = c.cancelAfter;
  // The destination must stay up after the cancel, so its own status can be read.
  await migrateIncoming(p, p.incomingUri(), false);
  for (const f of c.dstFaults ?? []) await injectFault(p, p.dst, f);
  if (phase === "none") {
    // Cancel on both sides while idle is a no-op; a normal migration then completes.
    await p.dst.qmp.execute("migrate_cancel");
    await p.src.qmp.execute("migrate_cancel");
    await p.src.qmp.execute("stop");
    await p.setParams(p.src, CONVERGE);
    await migrate(p, await connectUri(p));
    await p.waitStatus(p.src, "completed");
    await p.waitStatus(p.dst, "completed");
    return;
  }
  if (phase === "failed") {
    // No destination listens at this address: the connect fails.
    await migrate(p, `unix:${p.dir}/nobody-listens`);
    await p.waitEvent(p.src, "MIGRATION", "failed");
    await p.src.qmp.execute("migrate_cancel");
    await p.waitStatus(p.src, "failed", ["completed", "cancelled"]);
    return;
  }
  if (phase === "completed") {
    await p.setParams(p.src, CONVERGE);
    await migrate(p, await connectUri(p));
    await p.waitEvent(p.src, "MIGRATION", "completed");
    await p.src.qmp.execute("migrate_cancel");
    const s = await p.status(p.src);
    const d = await p.waitStatus(p.dst, "completed");
    if (s.status !== "completed" || d.status !== "completed") {
      throw new FlowError(`after cancel: source ${s.status}, target ${d.status}; both must stay completed`);
    }
    return;
  }
  // A case's own srcParams win (a faster stream fills a stalled target's sockets sooner).
  await p.setParams(p.src, { ...NON_CONVERGE, ...c.srcParams });
  // Cancelled while it runs: it must not be able to converge, so the guest must be dirtying memory.
  await waitGuestDirtying(p);
  await migrate(p, await connectUri(p));
  if (phase === "cancelling" || phase === "cancelled") {
    await p.waitEvent(p.src, "MIGRATION", "active");
    await p.src.qmp.execute("migrate_cancel");
    await p.waitEvent(p.src, "MIGRATION", phase);
    await p.src.qmp.execute("migrate_cancel");
  } else {
    if (phase === "pre-switchover") await p.setParams(p.src, CONVERGE);
    await p.waitEvent(p.src, "MIGRATION", phase);
    if (c.whenBlocked) await waitSourceBlocked(p);
    await p.src.qmp.execute("migrate_cancel");
    await p.waitEvent(p.src, "MIGRATION", "cancelling");
  }
  await p.waitStatus(p.src, "cancelled", ["failed", "completed"]);
  await expectTargetFailed(p);
  if (p.src.qmp.events.some((e) => e.event === "MIGRATION" && e.data?.status === "completed")) {
    throw new FlowError("the source emitted 'completed' for a cancelled migration");
  }
  const st = await p.src.qmp.execute<{ running: boolean }>("query-status");
  if (!st.running) throw new FlowError("the source guest does not run after cancel");
}
