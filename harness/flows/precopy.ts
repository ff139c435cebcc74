/**
 * Precopy flows (upstream's precopy-tests.c): test_precopy_common, live with the marker technique or
 * with the source stopped; and a live migration that cannot converge until bandwidth is raised.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { ConvergeAfterRaiseCase, PrecopyCase } from "../case.ts";
import { FlowError, type MigrationPair } from "../framework.ts";
import { finishByExpectation } from "../expect.ts";
import {
  connectUri,
  CONVERGE,
  injectFault,
  migrate,
  migrateIncoming,
  NON_CONVERGE,
  waitPasses,
} from "../migration_qmp.ts";
import { isAbGuest, waitForDirtyMem, waitSerialB, writeMarker } from "../migration_util.ts";

/** After completion the source must report pages sent as XBZRLE deltas. */
export async function expectXbzrlePages(p: MigrationPair): Promise<void> {
  const x = (await p.status(p.src))["xbzrle-cache"] as Record<string, number> | undefined;
  if (!x || !(x.pages > 0)) throw new FlowError(`no page was sent as XBZRLE: ${JSON.stringify(x)}`);
  p.ctx.log(`xbzrle: ${JSON.stringify(x)}`);
}

/** test_precopy_common. */
export async function precopyFlow(p: MigrationPair, c: PrecopyCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  for (const f of c.dstFaults ?? []) await injectFault(p, p.dst, f);
  if (c.fault) await injectFault(p, p.src, c.fault);
  let srcRunning = true;
  const ab = isAbGuest(p);
  // The marker technique (a guaranteed second pass) needs the a-b guest, and a failing case needs no
  // second pass: those run at full speed.
  const marker = c.live && ab && (c.expect ?? "succeed") === "succeed";
  if (c.live) {
    await p.setParams(p.src, marker ? NON_CONVERGE : CONVERGE);
    if (ab) await waitSerialB(p, p.src);
    if (marker) await writeMarker(p);
  } else {
    if (ab) await waitSerialB(p, p.src);
    await p.src.qmp.execute("stop");
    await p.waitEvent(p.src, "STOP");
    srcRunning = false;
    if (c.fillRandom) await p.src.qmp.execute("x-test-ram-fill", { seed: p.ctx.seed }, { timeoutMs: 60_000 });
    await p.setParams(p.src, CONVERGE);
  }
  if (!await migrate(p, await connectUri(p), { outcome: c, channels: c.migrateChannels })) return;
  if (marker) {
    if ((c.iterations ?? 1) > 1) await waitPasses(p, (c.iterations ?? 1) * 2);
    await waitForDirtyMem(p);
    await p.setParams(p.src, CONVERGE);
  }
  await finishByExpectation(p, c, srcRunning);
  if (c.expectXbzrlePages) await expectXbzrlePages(p);
}

/** A live migration that cannot converge keeps iterating; raising the bandwidth lets it complete. */
export async function convergeAfterRaiseFlow(p: MigrationPair, c: ConvergeAfterRaiseCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  // Fast enough for a pass to take well under a second, yet 1 ms of downtime never fits a dirty a-b guest;
  // a case's own srcParams win.
  await p.setParams(p.src, { "max-bandwidth": 200_000_000, "downtime-limit": 1, ...c.srcParams });
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  await migrate(p, await connectUri(p));
  const passes = c.iterations ?? 3;
  await waitPasses(p, passes);
  const s = await p.status(p.src);
  if (s.status !== "active") throw new FlowError(`expected 'active' after ${passes} passes, got ${s.status}`);
  if (c.expectDirtyPagesRate) {
    // The rate must be there after a sync and must still be there a second later, between syncs.
    // QEMU bumps dirty-sync-count at the start of a sync and the rate at its end (outside the BQL), so a
    // query can fall in between: look 200 ms after the sync, then again between syncs.
    for (const [when, ms] of [["200 ms after a sync", 200], ["1.4 s after a sync", 1200]] as const) {
      await sleep(ms);
      const rate = ((await p.status(p.src)).ram as Record<string, number>)["dirty-pages-rate"];
      if (!(rate > 0)) {
        throw new FlowError(`dirty-pages-rate is ${rate} ${when}, with a guest that dirties memory`);
      }
    }
  }
  await p.setParams(p.src, CONVERGE);
  await finishByExpectation(p, {}, true);
  if (c.expectXbzrlePages) await expectXbzrlePages(p);
}
