/**
 * Multifd flows beyond test_precopy_common (upstream's precopy-tests.c): test_multifd_tcp_cancel. The
 * other multifd cases are precopy cases with the multifd capability.
 */
import type { MultifdCancelCase } from "./case.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { finishByExpectation } from "../../expect.ts";
import { connectUri, CONVERGE, migrate, migrateIncoming, NON_CONVERGE } from "../../migration_qmp.ts";
import { waitForDirtyMem, waitSerialB, writeMarker } from "../../migration_util.ts";

/**
 * test_multifd_tcp_cancel: cancel a live multifd migration, the old destination exits with
 * EXIT_FAILURE, then the same source migrates to a new destination and completes.
 */
export async function multifdCancelFlow(p: MigrationPair, c: MultifdCancelCase): Promise<void> {
  await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  await p.setParams(p.src, NON_CONVERGE);
  await waitSerialB(p, p.src);
  await writeMarker(p);
  await migrate(p, await connectUri(p));
  await waitForDirtyMem(p);
  await p.src.qmp.execute("migrate_cancel");
  const old = p.dst;
  const st = await old.waitExit(p.ctx.waitMs);
  if (st.code !== 1) throw new FlowError(`the cancelled target exited with status ${st.code}, expected 1`);
  await p.waitStatus(p.src, "cancelled", ["failed", "completed"]);
  await old.kill();
  await p.spawnTarget();
  await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  const since = p.src.qmp.events.length;
  await migrate(p, await connectUri(p));
  await p.setParams(p.src, CONVERGE);
  await p.waitEvent(p.src, "STOP", undefined, since);
  await finishByExpectation(p, {}, true);
}
