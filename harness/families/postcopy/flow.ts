/**
 * Postcopy flows (upstream's test_postcopy_common): precopy that cannot converge, then
 * migrate-start-postcopy — the source stops, the destination runs with pages missing and faults them
 * in —, optionally a pause and recovery (recovery.ts), then the checks (checks.ts).
 */
import type { MigrationPair } from "../../framework.ts";
import { finishByExpectation } from "../../expect.ts";
import { connectUri, migrate, migrateIncoming, NON_CONVERGE, waitPasses } from "../../migration_qmp.ts";
import {
  isAbGuest,
  waitForDirtyMem,
  waitGuestDirtying,
  waitSourceGuest,
  writeMarker,
} from "../../migration_util.ts";
import type { PostcopyCase } from "./case.ts";
import { expectCancelRefused } from "./cancel.ts";
import { checkPostcopy } from "./checks.ts";
import { recover } from "./recovery.ts";

/** test_postcopy_common, with the case's recovery and cancels. */
export async function postcopyFlow(p: MigrationPair, c: PostcopyCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  // The destination's guest starts at POSTCOPY_RUN (on an incoming VM, `cont` means: run once loaded).
  await p.dst.qmp.execute("cont");
  // The case's own parameters win (a faster precopy still cannot converge under a 1 ms downtime limit).
  await p.setParams(p.src, { ...NON_CONVERGE, ...c.srcParams });
  const ab = isAbGuest(p);
  if (ab) {
    await waitSourceGuest(p);
    await writeMarker(p);
  } else await waitGuestDirtying(p);
  if (!await migrate(p, await connectUri(p), { outcome: c })) return;
  if ((c.expect ?? "succeed") !== "succeed") return await finishByExpectation(p, c, true);
  // Precopy has sent pages the guest dirtied again: the switch has something to discard.
  if (ab) await waitForDirtyMem(p);
  else await waitPasses(p, 2);
  const bandwidth = c.postcopyBandwidth ?? (c.recovery ? 4096 : undefined);
  if (bandwidth !== undefined) await p.setParams(p.src, { "max-postcopy-bandwidth": bandwidth });
  const [srcSince, dstSince] = [p.src.qmp.events.length, p.dst.qmp.events.length];
  await p.src.qmp.execute("migrate-start-postcopy");
  await p.waitEvent(p.src, "STOP", undefined, srcSince);
  await p.waitEvent(p.dst, "RESUME", undefined, dstSince);
  if (c.cancelIn?.includes("postcopy-active")) {
    await p.waitStatus(p.src, "postcopy-active");
    await expectCancelRefused(p, "postcopy-active");
  }
  if (c.expectFaults) {
    // The slow background stream stays until the guest has faulted once: on a busy machine its vCPU may
    // not run before a fast stream has brought every page, and the case would not test its why.
    await p.wait("the target's guest to fault on a missing page (a page request on the source)", async () => {
      const ram = (await p.status(p.src)).ram as Record<string, number> | undefined;
      return (ram?.["postcopy-requests"] ?? 0) > 0;
    });
  }
  if (c.recovery) await recover(p, c);
  else if (bandwidth) await p.setParams(p.src, { "max-postcopy-bandwidth": 0 });
  await p.waitStatus(p.src, "completed");
  await p.waitStatus(p.dst, "completed");
  await p.recordStats();
  await checkPostcopy(p, c, dstSince);
}
