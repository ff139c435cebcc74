/**
 * Precopy flows (upstream's precopy-tests.c): test_precopy_common, live with the marker technique or
 * with the source stopped; and a live migration that cannot converge until bandwidth is raised.
 */
import type { WireHold } from "../../wire_proxy.ts";
import type { AutoConvergeCase, ConvergeAfterRaiseCase, PrecopyCase } from "./case.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { type Breakpoints, isUnavailable } from "../../world/world.ts";
import {
  expectConvergesWithin,
  expectRamSentAtMost,
  expectRamSentUnder,
  finishByExpectation,
} from "../../expect.ts";
import {
  connectUri,
  CONVERGE,
  injectFault,
  migrate,
  migrateIncoming,
  NON_CONVERGE,
  waitPasses,
} from "../../migration_qmp.ts";
import {
  fillRam,
  isAbGuest,
  suspendsGuest,
  waitForDirtyMem,
  waitGuestDirtying,
  waitSerialB,
  waitSourceGuest,
  writeMarker,
} from "../../migration_util.ts";

/** After completion the source must report pages sent as XBZRLE deltas. */
export async function expectXbzrlePages(p: MigrationPair): Promise<void> {
  const x = (await p.status(p.src))["xbzrle-cache"] as Record<string, number> | undefined;
  if (!x || !(x.pages > 0)) throw new FlowError(`no page was sent as XBZRLE: ${JSON.stringify(x)}`);
  p.ctx.log(`xbzrle: ${JSON.stringify(x)}`);
}

/** A guest that wrote its RAM once: the passes it may take (setup, first pass, the write's pass, final). */
const WRITE_ONCE_PASSES = 6;
/** 1 MB/s while the harness writes the RAM again: the first pass cannot end meanwhile. */
const WRITE_ONCE_TRICKLE = 1_000_000;
/** QEMU's default max-bandwidth (MAX_THROTTLE, 128 MiB/s), for a case that keeps it. */
const WRITE_ONCE_BANDWIDTH = 128 << 20;
const WRITE_ONCE_WHY = "the guest wrote its RAM once after the setup and nothing since, so a page not " +
  "dirtied since the last sync is being sent again (a dirty log read without being cleared?)";

/** test_precopy_common. */
export async function precopyFlow(p: MigrationPair, c: PrecopyCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  for (const f of c.dstFaults ?? []) await injectFault(p, p.dst, f);
  if (c.fault) await injectFault(p, p.src, c.fault);
  let srcRunning = true;
  const ab = isAbGuest(p);
  // The marker technique (a guaranteed second pass) needs the a-b guest, and a failing case needs no
  // second pass: those run at full speed.
  // Nor does a guest in shared memory with x-ignore-shared: none of its pages is sent, so none can be
  // "already sent, dirty again" (upstream's wait ends only because its destination runs and writes it).
  const marker = c.live && ab && (c.expect ?? "succeed") === "succeed" && c.memType !== "shmem";
  if (c.live) {
    // A write-once case keeps its own bounded bandwidth and downtime: it must take passes.
    if (!c.writeOnce) await p.setParams(p.src, marker ? NON_CONVERGE : CONVERGE);
    if (ab) await waitSourceGuest(p);
    if (marker) await writeMarker(p);
  } else {
    if (ab) await waitSourceGuest(p);
    await p.src.qmp.execute("stop");
    await p.waitEvent(p.src, "STOP");
    srcRunning = false;
    if (c.fillRandom) await fillRam(p, p.ctx.seed);
    await p.setParams(p.src, CONVERGE);
  }
  // Data in every page, so that the first pass takes time (a zero guest's first pass is over at once).
  if (c.writeOnce) await fillRam(p, p.ctx.seed);
  const held = c.holdSwitchoverAck ? await holdSwitchoverAck(p) : null;
  const address = c.migrateAddress;
  if (!await migrate(p, await connectUri(p), { outcome: c, channels: c.migrateChannels, address })) return;
  if (c.writeOnce) {
    // After the setup's sync (which clears the dirty log), every page is written once more. On QEMU the
    // fill is many qtest writes: a migration that completed between two of them would leave the stopped
    // source holding writes made after its switchover (found: 512 pages "differ" now and then on 10.0).
    // A trickle until the fill is done keeps the first pass, and so the switchover, after it.
    await waitPasses(p, 1);
    await p.setParams(p.src, { "max-bandwidth": WRITE_ONCE_TRICKLE });
    await fillRam(p, (p.ctx.seed + 1) >>> 0);
    await p.setParams(p.src, { "max-bandwidth": c.srcParams?.["max-bandwidth"] ?? WRITE_ONCE_BANDWIDTH });
    await expectConvergesWithin(p, WRITE_ONCE_PASSES, WRITE_ONCE_WHY);
  }
  if (c.setDstWhileLoading) {
    await p.waitStatus(p.dst, "active");
    await p.setCaps(p.dst, ["pause-before-switchover"]);
    await p.setParams(p.dst, { "downtime-limit": 400 });
  }
  if (marker) {
    if ((c.iterations ?? 1) > 1) await waitPasses(p, (c.iterations ?? 1) * 2);
    await waitForDirtyMem(p);
    await p.setParams(p.src, CONVERGE);
  }
  if (held) await expectNoSwitchoverUntilAck(p, held);
  await finishByExpectation(p, c, srcRunning);
  if (c.contSourceAfter) await expectSourceContinues(p);
  if (c.expectXbzrlePages) await expectXbzrlePages(p);
  if (c.writeOnce) await expectRamSentAtMost(p, 2.5, WRITE_ONCE_WHY);
  if (c.maxRamSentMiB !== undefined) {
    await expectRamSentUnder(
      p,
      c.maxRamSentMiB,
      "memory that x-ignore-shared leaves out (the destination maps it) went on the wire",
    );
  }
}

/** `cont` on the migrated-out source: RESUME, and a guest that slept is asleep again, not running. */
async function expectSourceContinues(p: MigrationPair): Promise<void> {
  const since = p.src.qmp.events.length;
  await p.src.qmp.execute("cont");
  await p.waitEvent(p.src, "RESUME", undefined, since);
  const st = await p.src.qmp.execute<{ status: string }>("query-status");
  const want = suspendsGuest(p) ? "suspended" : "running";
  if (st.status !== want) {
    throw new FlowError(`after cont the source is '${st.status}', expected '${want}'`);
  }
}

/** Where the ack is held: the destination's breakpoint, or (no breakpoints: QEMU) the return path's wire. */
type AckHold = { bps: Breakpoints } | { wire: WireHold };

/** Arms the destination's switchover-ack breakpoint, or a hold of its RP_SWITCHOVER_ACK on the wire. */
async function holdSwitchoverAck(p: MigrationPair): Promise<AckHold> {
  const bps = p.dst.breakpoints();
  if (!isUnavailable(bps)) {
    await bps.arm("switchover-ack");
    return { bps };
  }
  if (!p.ctx.world.wireFaults) throw new FlowError(`switchover-ack: ${bps.unavailable}`);
  return { wire: p.holdReturnPath("switchover-ack") };
}

/**
 * The ack held at the destination: the source, converged, iterates on (two more dirty syncs) and stays
 * 'active' — no switchover without the ack; then the ack goes and the migration may complete.
 */
async function expectNoSwitchoverUntilAck(p: MigrationPair, held: AckHold): Promise<void> {
  if ("bps" in held) {
    await p.dst.qmp.waitEvent("X_TEST_BREAKPOINT", (e) => e.data?.name === "switchover-ack", {
      timeoutMs: p.ctx.waitMs,
      matching: "breakpoint switchover-ack",
      diagnose: () => p.diagnose(),
    });
  } else {
    await p.wait(
      "the destination's RP_SWITCHOVER_ACK on the wire",
      () => Promise.resolve(held.wire.isReached || undefined),
    );
  }
  const ram = async () => (await p.status(p.src)).ram as Record<string, number> | undefined;
  const syncs = (await ram())?.["dirty-sync-count"] ?? 0;
  await waitPasses(p, syncs + 2);
  const s = await p.status(p.src);
  if (s.status !== "active") {
    throw new FlowError(`the source is '${s.status}' while the destination still holds its switchover ack`);
  }
  if ("bps" in held) await held.bps.continue("switchover-ack", { disarm: true });
  else held.wire.release("continue");
}

/** A live migration that cannot converge keeps iterating; raising the bandwidth lets it complete. */
export async function convergeAfterRaiseFlow(p: MigrationPair, c: ConvergeAfterRaiseCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  for (const f of c.dstFaults ?? []) await injectFault(p, p.dst, f);
  // Fast enough for a pass to take well under a second, yet 1 ms of downtime never fits a dirty a-b guest;
  // a case's own srcParams win.
  await p.setParams(p.src, { "max-bandwidth": 200_000_000, "downtime-limit": 1, ...c.srcParams });
  // The guest must have dirtied its memory first (found in the simulated world, whose guest can be slow
  // to start); upstream waits for the a-b guest's 'B'.
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  else await waitGuestDirtying(p);
  await migrate(p, await connectUri(p));
  const passes = c.iterations ?? 3;
  await waitPasses(p, passes);
  const s = await p.status(p.src);
  if (s.status !== "active") throw new FlowError(`expected 'active' after ${passes} passes, got ${s.status}`);
  if (c.expectDirtyPagesRate) {
    // QEMU computes the rate at a bitmap sync, and only at one that comes at least a second after the
    // last computation (migration_bitmap_sync); it bumps dirty-sync-count at the start of the sync and
    // the rate at its end. So: the rate must appear within the next passes (a fast pass may sync before a
    // second has gone by), looked at 200 ms after each sync, and must then still be there a second later,
    // between syncs, as QEMU keeps it until the next computation.
    const rate = async () => ((await p.status(p.src)).ram as Record<string, number>)["dirty-pages-rate"];
    const count = async () => ((await p.status(p.src)).ram as Record<string, number>)["dirty-sync-count"];
    let seen = await count();
    let last = 0;
    for (let extra = 0; extra <= 2; extra++) {
      await p.sleep(200);
      last = await rate();
      if (last > 0) break;
      if (extra < 2) {
        await waitPasses(p, seen + 1);
        seen = await count();
      }
    }
    if (!(last > 0)) {
      throw new FlowError(
        `dirty-pages-rate is ${last} 200 ms after each of 3 syncs, with a guest that dirties memory`,
      );
    }
    await p.sleep(1200);
    const later = await rate();
    if (!(later > 0)) throw new FlowError(`dirty-pages-rate is ${later} 1.4 s after a sync (between syncs)`);
  }
  await p.setParams(p.src, CONVERGE);
  await finishByExpectation(p, {}, true);
  if (c.expectXbzrlePages) await expectXbzrlePages(p);
}

/** upstream's auto_converge settings: a gentle start, big steps, a ceiling. */
const THROTTLE = { "cpu-throttle-initial": 5, "cpu-throttle-increment": 25, "max-cpu-throttle": 95 };
/** Upstream allows 10 s for the periodic sync to show (the throttle syncs every 5 s). */
const PERIODIC_SYNC_MS = 10_000;

/**
 * test_auto_converge: non-converging, the throttle must start (at least cpu-throttle-initial), a
 * throttled source must sync its dirty log again within 10 s even though a pass takes far longer, and
 * with converge settings it reaches pre-switchover with the throttle never past max-cpu-throttle.
 */
export async function autoConvergeFlow(p: MigrationPair, c: AutoConvergeCase): Promise<void> {
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  // Non-converging (1 ms of downtime never fits a dirtying guest) but with passes of about a second, so
  // the sync periods the throttle is decided at come within seconds (upstream's slow test waits longer).
  await p.setParams(p.src, { ...THROTTLE, "max-bandwidth": 100_000_000, "downtime-limit": 1 });
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  else await waitGuestDirtying(p);
  await migrate(p, await connectUri(p));
  const info = async () => {
    const s = await p.status(p.src);
    if (s.status === "failed") throw new FlowError(`source failed: ${s["error-desc"]}`);
    const ram = s.ram as Record<string, number> | undefined;
    return { s, pct: Number(s["cpu-throttle-percentage"] ?? 0), syncs: ram?.["dirty-sync-count"] ?? 0 };
  };
  await p.wait("cpu-throttle-percentage ≥ cpu-throttle-initial (5) on the source", async (see) => {
    const { s, pct } = await info();
    see(`status '${s.status}', cpu-throttle-percentage ${pct}`);
    return pct >= THROTTLE["cpu-throttle-initial"];
  });
  await waitPasses(p, 2);
  const before = (await info()).syncs;
  const t0 = performance.now();
  await p.wait(
    `a dirty sync after the ${before}th within ${PERIODIC_SYNC_MS / 1000} s (periodic sync)`,
    async () => {
      if ((await info()).syncs > before) return true;
      if (performance.now() - t0 > PERIODIC_SYNC_MS) {
        throw new FlowError(
          `no dirty sync in ${PERIODIC_SYNC_MS} ms while throttled (dirty-sync-count ${before})`,
        );
      }
      return false;
    },
  );
  await p.setParams(p.src, CONVERGE);
  await p.waitStatus(p.src, "pre-switchover");
  const { pct } = await info();
  if (pct > THROTTLE["max-cpu-throttle"]) {
    throw new FlowError(
      `cpu-throttle-percentage ${pct} past max-cpu-throttle ${THROTTLE["max-cpu-throttle"]}`,
    );
  }
  // finishByExpectation sends migrate-continue from pre-switchover and checks the migrated guest.
  await finishByExpectation(p, {}, true);
}
