/** The cpr-transfer flow (upstream's test_mode_transfer_common, with defer_target_connect). */
import type { CprTransferCase } from "./case.ts";
import type { MigrationPair } from "../../framework.ts";
import { expectRamSentUnder, finishByExpectation } from "../../expect.ts";
import { migrate, migrateIncoming } from "../../migration_qmp.ts";
import { isAbGuest, waitSerialB } from "../../migration_util.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The target is started only now, on the cpr channel, and comes up once the source has sent it the CPR
 * state; then (with defer) it gets migrate-incoming, and the migration must complete with the guest's RAM
 * never on the wire: the target runs on the memory it was passed.
 */
export async function cprTransferFlow(p: MigrationPair, c: CprTransferCase): Promise<void> {
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  const cprPath = `${p.dir}/cpr.sock`;
  // Its setup (capabilities) waits until it is up; listening at once, it is loading by then, so only a
  // deferred one gets it (as upstream's defer_target_connect leaves the target alone).
  const target = p.spawnTarget({ cprChannel: cprPath, setup: false });
  // Awaited below; until then a failure to start is the pair's (close() ends the process).
  target.catch(() => {});
  await p.wait("the target to listen on its cpr channel", () => exists(cprPath));
  if (!await migrate(p, p.incomingUri(), { outcome: c, channels: true, cprChannel: cprPath })) return;
  const dst = await target;
  if (c.defer) {
    await p.setTargetUp(dst);
    await migrateIncoming(p, p.incomingUri());
  }
  await finishByExpectation(p, c, true);
  // Each RAM block went over as a descriptor: the stream holds the block list and devices only.
  await expectRamSentUnder(p, 1, "mode cpr-transfer passes every RAM block as a descriptor");
}
