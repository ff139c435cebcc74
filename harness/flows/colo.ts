/**
 * The COLO flow (upstream's test_colo_common, and beyond it): the initial precopy, then checkpoints
 * checked page by page — after every apply the secondary's guest RAM equals the stopped primary's, the
 * COLO cache equals the secondary's guest RAM, and the devices are equal — then a failover: the primary
 * lost (yank + x-colo-lost-heartbeat, or SIGKILL at a named moment of a checkpoint) or the secondary lost.
 * The survivor must hold exactly what it must (the last applied checkpoint, or its own running state),
 * keep running, and pass the a-b invariant; query-colo-status tells each takeover on both sides.
 *
 * Where the secondary cannot be held after the apply (Side.breakpoints() unavailable: real QEMU), the
 * flow runs upstream's way: checkpoints are the secondary's STOP/RESUME and the primary's, with both
 * sides' statuses checked after each; what needs the hold (page-by-page checkpoints, the cache, the
 * named-moment scenarios) is said in the log or refused.
 */
import type { ColoCase, ColoPhase } from "../case.ts";
import { compareDeviceState } from "../check/device_equal.ts";
import type { DigestReply, RamSource } from "../check/ram_equal.ts";
import { FlowError, type MigrationPair } from "../framework.ts";
import { connectUri, CONVERGE, migrate, migrateIncoming } from "../migration_qmp.ts";
import {
  checkGuestRuns,
  expectDevicesEqual,
  expectRamEqual,
  fillRam,
  isAbGuest,
  waitSerialB,
} from "../migration_util.ts";
import type { QmpEvent } from "../qmp_client.ts";
import { WaitTimeoutError } from "../wait.ts";
import { type Breakpoints, type DeviceState, isUnavailable, type Side } from "../world/world.ts";

const PRIMARY_PHASES: ReadonlySet<ColoPhase> = new Set([
  "colo-request-sent",
  "colo-ram-half-sent",
  "colo-device-buffer-half-sent",
  "colo-after-vmstate-received",
  "colo-after-vmstate-loaded",
]);

/** A snapshot of a side's RAM digests and devices, to compare with what it holds later. */
interface Snapshot {
  ram: RamSource;
  devices: DeviceState;
}

async function snapshot(side: Side, label: string): Promise<Snapshot> {
  const digests: DigestReply = await side.ram().digests();
  const devices = await side.deviceState();
  if (isUnavailable(devices)) throw new FlowError(`${side.name}'s device state: ${devices.unavailable}`);
  // Only digests are kept (the pages themselves are gone by the time they are compared).
  return { ram: { name: label, digests: () => Promise.resolve(digests) }, devices };
}

/**
 * Waits for the engine to pause at breakpoint `name` (of checkpoint `n` when given). A COLO_EXIT with
 * reason error on that side first is a failure: it gave up on the checkpoint (its stderr says why).
 */
async function waitBreakpoint(
  p: MigrationPair,
  side: Side,
  name: string,
  n?: number,
): Promise<QmpEvent> {
  const what = `${side.name} at breakpoint ${name}${n === undefined ? "" : ` of checkpoint ${n}`}`;
  return await p.wait(what, () => {
    for (const e of side.qmp.events) {
      if (
        e.event === "X_TEST_BREAKPOINT" && e.data?.name === name &&
        (n === undefined || e.data?.checkpoint === n)
      ) {
        return Promise.resolve(e);
      }
      if (e.event === "COLO_EXIT" && e.data?.reason === "error") {
        const why = side.stderr.trim().split("\n").filter((l) => l.includes("COLO")).slice(-1)[0] ?? "";
        return Promise.reject(new FlowError(`${side.name} left COLO with an error before ${name}: ${why}`));
      }
    }
    return Promise.resolve(undefined);
  });
}

/** Checkpoint `n` is applied and the secondary paused before resuming; the primary waits for LOADED. */
async function checkCheckpoint(p: MigrationPair, n: number): Promise<void> {
  await expectRamEqual(p.src.ram(), p.dst.ram(), `checkpoint ${n}: guest RAM`);
  const cache = p.dst.coloCache();
  if (isUnavailable(cache)) p.ctx.log(`COLO cache not compared: ${cache.unavailable}`);
  else await expectRamEqual(p.dst.ram(), cache, `checkpoint ${n}: the secondary's COLO cache`);
  await expectDevicesEqual(p, p.src, p.dst, ["primary", "secondary"], `checkpoint ${n}: `);
}

/** The survivor runs: its a-b pattern advances; stopped, it passes check_guests_ram; then it runs on. */
async function checkSurvivor(p: MigrationPair, side: Side): Promise<void> {
  // A primary taken over mid-checkpoint is still stopped (runstate colo) when its migration reads
  // 'completed': QEMU's COLO thread restarts it as it ends, a moment later. So wait, bounded.
  let runstate = "";
  await p.wait(`${side.name} to run after the failover`, async () => {
    const st = await side.qmp.execute<{ running: boolean; status: string }>("query-status");
    runstate = st.status;
    return st.running;
  }, 10_000).catch((e) => {
    throw new FlowError(`${side.name} does not run after the failover (runstate ${runstate}): ${e.message}`);
  });
  await checkGuestRuns(p, side, { resume: true });
}

/** yank (out of band) then x-colo-lost-heartbeat, as upstream triggers a failover. */
async function failOver(p: MigrationPair, side: Side): Promise<void> {
  await side.qmp.executeOob("yank", { instances: [{ type: "migration" }] }).catch(() => {});
  await takeOver(p, side);
}

/**
 * x-colo-lost-heartbeat, then status `completed` on `side`: the time between is the failover time. Then
 * the takeover as query-colo-status tells it (see tookOver).
 */
async function takeOver(p: MigrationPair, side: Side): Promise<void> {
  const t0 = p.clock.now();
  await side.qmp.execute("x-colo-lost-heartbeat");
  await p.waitStatus(side, "completed", ["failed"]);
  p.stats.colo = { checkpoints: 0, latencyMs: [], ...p.stats.colo, failoverMs: p.clock.now() - t0 };
  await tookOver(p, side);
}

/**
 * After a takeover `side` has left COLO (its COLO_EXIT) and query-colo-status says so: mode none, its
 * last mode its role, reason request (QEMU derives it from the failover state, which is completed).
 */
async function tookOver(p: MigrationPair, side: Side): Promise<void> {
  await p.waitEvent(side, "COLO_EXIT");
  const role = side === p.src ? "primary" : "secondary";
  await expectColoStatus(side, { mode: "none", "last-mode": role, reason: "request" }, "after the takeover");
}

/**
 * The side that lost its peer without being told (no x-colo-lost-heartbeat), after its COLO_EXIT: QEMU
 * keeps it in COLO state waiting for a failover request, so query-colo-status still reads its mode, no
 * last mode (that is set when COLO ends) and reason none (no failover was asked for).
 */
async function expectLostStatus(side: Side, role: "primary" | "secondary"): Promise<void> {
  await expectColoStatus(side, { mode: role, "last-mode": "none", reason: "none" }, "after losing its peer");
}

/**
 * The primary's checkpoints so far and each one's latency (request → vmstate-loaded) into the pair's
 * stats. Only the engine answers x-test-colo-info; elsewhere there are no checkpoint statistics.
 */
async function recordCheckpoints(p: MigrationPair): Promise<void> {
  type Info = { primary: { checkpoints: number; stats: { latency: number }[] } | null };
  const info = await p.src.qmp.execute<Info>("x-test-colo-info", {}, { timeoutMs: 5000 }).catch(() => null);
  if (!info?.primary) return;
  const latencyMs = info.primary.stats.map((s) => s.latency);
  p.stats.colo = { ...p.stats.colo, checkpoints: info.primary.checkpoints, latencyMs };
}

/** What a scenario needs the secondary held at named moments for, or null (upstream's scenarios). */
function needsBreakpoints(sc: ColoCase["colo"]): string | null {
  if (sc.killPrimaryAt) {
    return `killing the primary at ${sc.killPrimaryAt} needs the side held at that moment`;
  }
  if (sc.failoverDuringApply) return "a failover during the apply needs the secondary held mid-apply";
  if (sc.failoverDuringMultifdPacket) return "a failover during a multifd packet needs a channel held";
  return null;
}

/**
 * How long one checkpoint may take to start or to finish once the previous one did: the delay between
 * checkpoints plus the transfer of what the guest dirtied (the a-b guest rewrites ~100 MiB per pass; on
 * loopback that is well under a second). A primary that deadlocks mid-checkpoint ends here, not at the
 * case's 120 s bound.
 */
function checkpointWaitMs(c: ColoCase): number {
  return 5_000 + 10 * (c.colo.checkpointDelayMs ?? 300);
}

/**
 * The index of the first `event` on `side` at or after `since`, within `timeoutMs`, for `what`. A side
 * that exits, or that `broke` says left COLO with an error, fails the wait at once.
 */
async function waitEventAt(
  p: MigrationPair,
  side: Side,
  event: string,
  since: number,
  what: string,
  timeoutMs: number,
  broke: () => string | null = () => null,
): Promise<number> {
  return await p.wait(what, () => {
    const i = side.qmp.events.findIndex((e, j) => j >= since && e.event === event);
    if (i >= 0) return Promise.resolve(i);
    const why = side.exitStatus
      ? `${side.name} exited (status ${side.exitStatus.code}: ${stderrTail(side)})`
      : broke();
    if (why) return Promise.reject(new FlowError(`${why} before ${what}`));
    return Promise.resolve(undefined);
  }, timeoutMs);
}

/**
 * A side that left COLO with an error (COLO_EXIT reason error) since event index `since[side]`, told with
 * its last lines of stderr (where QEMU says why), or null.
 */
function leftColo(since: Map<Side, number>): string | null {
  for (const [side, from] of since) {
    if (side.qmp.events.some((e, j) => j >= from && e.event === "COLO_EXIT" && e.data?.reason === "error")) {
      return `${side.name} left COLO with an error (${stderrTail(side)})`;
    }
  }
  return null;
}

/** The last lines of a side's stderr, where QEMU says why it gave up (its warnings left out). */
function stderrTail(side: Side): string {
  const lines = side.stderr.trim().split("\n").filter((l) => l && !/warning:/.test(l));
  return lines.slice(-3).join(" | ") || "nothing on stderr";
}

/** A QMP event's time in ms (the two sides share the host's clock). */
function eventMs(e: QmpEvent): number {
  return e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;
}

interface ColoStatus {
  mode: string;
  "last-mode": string;
  reason: string;
}

/** query-colo-status on `side` must read `want` (QEMU's qmp_query_colo_status; the model mirrors it). */
async function expectColoStatus(side: Side, want: ColoStatus, when: string): Promise<void> {
  const got = await side.qmp.execute<ColoStatus>("query-colo-status", {}, { timeoutMs: 5000 });
  const brief = (s: ColoStatus) => `mode ${s.mode}, last-mode ${s["last-mode"]}, reason ${s.reason}`;
  if (got.mode !== want.mode || got["last-mode"] !== want["last-mode"] || got.reason !== want.reason) {
    throw new FlowError(
      `${when}: ${side.name}'s query-colo-status reads ${brief(got)}, expected ${brief(want)}`,
    );
  }
}

/**
 * Without breakpoints (upstream's way): checkpoint n is the secondary's STOP then RESUME; the primary
 * stopped for it too (its own STOP), and both stay in COLO state, each in its mode.
 */
async function syncCheckpoints(p: MigrationPair, c: ColoCase, checkpoints: number): Promise<void> {
  const bound = checkpointWaitMs(c);
  // From the secondary's first RESUME (it starts with -S: that is its start in COLO state) and the
  // primary's entry into 'colo', so that no checkpoint is missed however late this starts.
  let dstSince = 1 + p.dst.qmp.events.findIndex((e) => e.event === "RESUME");
  let srcSince = 1 + p.src.qmp.events.findIndex((e) => e.event === "MIGRATION" && e.data?.status === "colo");
  const from = new Map([[p.src, srcSince], [p.dst, dstSince]]);
  const broke = () => leftColo(from);
  const latencyMs: number[] = [];
  for (let n = 1; n <= checkpoints; n++) {
    const wait = (side: Side, event: string, since: number, what: string) =>
      waitEventAt(p, side, event, since, what, bound, broke);
    const stop = await wait(p.dst, "STOP", dstSince, `checkpoint ${n} to start (the secondary's STOP)`);
    const resume = await wait(
      p.dst,
      "RESUME",
      stop + 1,
      `checkpoint ${n} to be applied (the secondary's RESUME)`,
    );
    dstSince = resume + 1;
    // The primary stops for the checkpoint before it asks the secondary to, and resumes once the
    // secondary has loaded it: its STOP -> RESUME is the checkpoint's latency (the guest's downtime).
    const srcStop = await wait(p.src, "STOP", srcSince, `the primary's STOP for checkpoint ${n}`);
    const srcResume = await wait(p.src, "RESUME", srcStop + 1, `the primary's RESUME after checkpoint ${n}`);
    srcSince = srcResume + 1;
    latencyMs.push(eventMs(p.src.qmp.events[srcResume]) - eventMs(p.src.qmp.events[srcStop]));
    for (const [side, mode] of [[p.src, "primary"], [p.dst, "secondary"]] as const) {
      const st = await side.qmp.execute<{ status: string }>("query-migrate", {}, { timeoutMs: 5000 });
      if (st.status !== "colo") {
        throw new FlowError(
          `checkpoint ${n}: ${side.name}'s migration status is '${st.status}', expected 'colo'`,
        );
      }
      await expectColoStatus(side, { mode, "last-mode": "none", reason: "none" }, `checkpoint ${n}`);
    }
  }
  p.stats.colo = { ...p.stats.colo, checkpoints, latencyMs };
}

export async function coloFlow(p: MigrationPair, c: ColoCase): Promise<void> {
  const sc = c.colo;
  const checkpoints = sc.checkpoints ?? 3;
  const bp = p.dst.breakpoints();
  const needs = needsBreakpoints(sc);
  if (needs && isUnavailable(bp)) throw new FlowError(`${needs}: ${bp.unavailable}`);
  await p.setParams(p.src, { "x-checkpoint-delay": sc.checkpointDelayMs ?? 300 });
  if (c.defer) await migrateIncoming(p, p.incomingUri(), c.exitOnError);
  await p.setParams(p.src, CONVERGE);
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  if (c.fillRam) await fillRam(p, p.ctx.seed);
  if (isUnavailable(bp)) {
    p.ctx.log(
      "checkpoints not checked page by page (secondary == primary, cache == secondary, devices): that " +
        `needs the secondary held after the apply, before it resumes: ${bp.unavailable}; checked instead: ` +
        "each checkpoint's STOP/RESUME, both sides' status and query-colo-status",
    );
  } else await bp.arm("colo-applied", { persistent: true });
  await migrate(p, await connectUri(p));
  // Upstream: the source must reach 'colo' and never pass 'completed' (a precopy that ends instead).
  await p.waitStatus(p.src, "colo", ["failed", "completed"]);
  await p.waitEvent(p.dst, "RESUME");
  // QEMU sets the last mode when COLO ends: in COLO state it reads none.
  for (const [side, mode] of [[p.src, "primary"], [p.dst, "secondary"]] as const) {
    await expectColoStatus(side, { mode, "last-mode": "none", reason: "none" }, "in COLO state");
  }

  if (isUnavailable(bp)) await syncCheckpoints(p, c, checkpoints);
  else {
    // Every checkpoint: paused after the apply, before the secondary resumes.
    for (let n = 1; n < checkpoints; n++) {
      await waitBreakpoint(p, p.dst, "colo-applied", n);
      await checkCheckpoint(p, n);
      await bp.continue("colo-applied");
    }
    await waitBreakpoint(p, p.dst, "colo-applied", checkpoints);
    await checkCheckpoint(p, checkpoints);
    await recordCheckpoints(p);
    // Still paused after the last checked checkpoint: arm what the scenario needs, then let it run.
    const next = checkpoints + 1;
    if (sc.killPrimaryAt) return await killPrimary(p, bp, sc.killPrimaryAt, next);
    if (sc.failoverDuringApply) return await relaunch(p, bp, next);
    if (sc.failoverDuringMultifdPacket) return await failoverDuringPacket(p, bp);
    await bp.continue("colo-applied", { disarm: true });
  }

  if (sc.duringCheckpoint) {
    // The secondary is stopped in the next checkpoint (upstream waits for its STOP).
    const since = p.dst.qmp.events.length;
    await waitEventAt(
      p,
      p.dst,
      "STOP",
      since,
      "the next checkpoint (the secondary's STOP)",
      checkpointWaitMs(c),
    );
  }
  const survivor = sc.survivor === "secondary" ? p.dst : p.src;
  const lost = sc.survivor === "secondary" ? p.src : p.dst;
  await failOver(p, survivor);
  await checkSurvivor(p, survivor);
  // The lost side, told nothing, must not crash and stays in COLO state. It reports an error exit once
  // its channel fails; on QEMU a primary that was sending a checkpoint may never notice: the yanked
  // secondary no longer reads, so its send blocks on a full TCP window (production yanks both sides).
  const noticed = await waitEventAt(
    p,
    lost,
    "COLO_EXIT",
    0,
    `the lost ${lost === p.src ? "primary" : "secondary"} to notice (its COLO_EXIT)`,
    5000,
  ).then(() => true, (e) => {
    if (lost.exitStatus || !(e instanceof WaitTimeoutError)) throw e;
    return false;
  });
  if (!noticed) {
    p.ctx.log(`the lost ${lost.name} has not noticed within 5 s (no COLO_EXIT): it still answers QMP`);
  }
  await expectLostStatus(lost, sc.survivor === "secondary" ? "primary" : "secondary");
  await recordCheckpoints(p); // the primary is still up: with the unchecked checkpoints since
}

/**
 * What the secondary may hold after the primary dies at a phase of a checkpoint:
 * - "own": the primary never sent the whole checkpoint (it was paused mid-send, or before): the secondary
 *   must keep exactly its own state, as at its stop;
 * - "applied": the secondary has the whole checkpoint and acknowledged it: it applies it, and must equal
 *   the primary at the checkpoint;
 * - "either": the primary ran freely to the end of its send before it died; whether all of it reached
 *   the secondary depends on socket buffering. The outcome is one of the two, never a mix (the Jepsen
 *   rule for an indeterminate operation).
 */
type Expected = "own" | "applied" | "either";
const EXPECTED: Record<ColoPhase, Expected> = {
  "colo-request-sent": "own",
  "colo-stopped": "own",
  "colo-ram-half-sent": "own",
  "colo-device-buffer-half-sent": "own",
  "colo-ram-half-received": "either",
  "colo-device-buffer-received": "either",
  "colo-after-vmstate-received": "applied",
  "colo-apply-middle": "applied",
  "colo-after-vmstate-loaded": "applied",
};

/**
 * SIGKILL the primary at `phase` of checkpoint `n`, then tell the secondary (x-colo-lost-heartbeat); the
 * secondary must hold what EXPECTED says, and then run on its own.
 */
async function killPrimary(p: MigrationPair, bp: Breakpoints, phase: ColoPhase, n: number): Promise<void> {
  const srcBp = p.src.breakpoints();
  if (isUnavailable(srcBp)) {
    throw new FlowError(`the primary cannot be held at ${phase}: ${srcBp.unavailable}`);
  }
  const onPrimary = PRIMARY_PHASES.has(phase);
  const expected = EXPECTED[phase];
  if (phase === "colo-after-vmstate-loaded") {
    // Strike at the checkpoint just checked, once the primary has its VMSTATE_LOADED: both committed it.
    await srcBp.arm(phase);
    await bp.continue("colo-applied", { disarm: true });
    await waitBreakpoint(p, p.src, phase, n - 1);
    await p.src.sigkill();
    p.srcKilled = true;
    await p.waitEvent(p.dst, "COLO_EXIT");
    await takeOver(p, p.dst);
    return await checkSurvivor(p, p.dst);
  }
  // The secondary is paused after checkpoint n-1. It will pause right after stopping for checkpoint n, so
  // its own state can be taken exactly, and after the apply of n if it gets to apply it.
  await bp.arm("colo-stopped");
  if (phase !== "colo-stopped") {
    await (onPrimary ? srcBp : bp).arm(phase);
  }
  await bp.continue("colo-applied", { disarm: expected === "own" });

  await waitBreakpoint(p, p.dst, "colo-stopped", n);
  // Events from here on tell whether checkpoint n got applied (it may be before the kill below).
  const since = p.dst.qmp.events.length;
  const own = await snapshot(p.dst, "the secondary at its stop");
  if (phase !== "colo-stopped") await bp.continue("colo-stopped");
  await waitBreakpoint(p, onPrimary ? p.src : p.dst, phase, n);
  // The primary is stopped from its checkpoint-reply to its vmstate-loaded: what the checkpoint carries.
  const primary = await snapshot(p.src, `the primary at checkpoint ${n}`);
  p.ctx.log(`killing the primary at ${phase} of checkpoint ${n}`);
  await p.src.sigkill();
  p.srcKilled = true;
  if (!onPrimary) await bp.continue(phase);

  // Either the secondary applies checkpoint n (and pauses before resuming), or it reports the error and
  // stays stopped in the checkpoint.
  const outcome = await p.wait(`the secondary to apply checkpoint ${n} or to give up on it`, () => {
    for (const e of p.dst.qmp.events.slice(since)) {
      if (e.event === "X_TEST_BREAKPOINT" && e.data?.name === "colo-applied" && e.data?.checkpoint === n) {
        return Promise.resolve("applied" as const);
      }
      if (e.event === "COLO_EXIT") return Promise.resolve("own" as const);
    }
    return Promise.resolve(undefined);
  });
  if (expected !== "either" && outcome !== expected) {
    throw new FlowError(
      `the primary died at ${phase}: the secondary ${
        outcome === "own" ? "gave up on" : "applied"
      } checkpoint ${n}, expected it to ${expected === "own" ? "give up" : "apply it"}`,
    );
  }
  const want = outcome === "applied" ? primary : own;
  const after = `after the primary died at ${phase}: RAM`;
  await expectRamEqual(want.ram, { ...p.dst.ram(), name: "the secondary" }, after);
  const now = await p.dst.deviceState();
  if (isUnavailable(now)) throw new FlowError(`the secondary's device state: ${now.unavailable}`);
  const dev = compareDeviceState(want.devices, now, [want.ram.name, "the secondary"]);
  if (dev.length) throw new FlowError(`devices after the primary died at ${phase}:\n  ${dev.join("\n  ")}`);
  p.ctx.log(
    `the primary died at ${phase}: the secondary ${
      outcome === "applied" ? "applied" : "kept its own state instead of"
    } checkpoint ${n}`,
  );
  if (outcome === "applied") {
    await bp.continue("colo-applied", { disarm: true });
  } else await bp.continue("colo-applied", { disarm: true }).catch(() => {});
  await takeOver(p, p.dst);
  await checkSurvivor(p, p.dst);
}

/**
 * A multifd channel of the secondary holds a packet of the next checkpoint while the secondary is told to
 * take over: the channel must finish before the cache goes, and the secondary must survive and run.
 */
async function failoverDuringPacket(p: MigrationPair, bp: Breakpoints): Promise<void> {
  await bp.arm("colo-multifd-packet");
  await bp.continue("colo-applied", { disarm: true });
  await waitBreakpoint(p, p.dst, "colo-multifd-packet");
  await p.dst.qmp.execute("x-colo-lost-heartbeat");
  await p.sleep(100); // the takeover runs up to where it waits for the channels
  await bp.continue("colo-multifd-packet");
  await p.waitStatus(p.dst, "completed", ["failed"]);
  await tookOver(p, p.dst);
  await checkSurvivor(p, p.dst);
}

/** x-colo-lost-heartbeat on the secondary in the middle of the apply: relaunch after the apply. */
async function relaunch(p: MigrationPair, bp: Breakpoints, n: number): Promise<void> {
  await bp.arm("colo-apply-middle");
  await bp.continue("colo-applied", { disarm: true });
  await waitBreakpoint(p, p.dst, "colo-apply-middle", n);
  await p.dst.qmp.execute("x-colo-lost-heartbeat");
  const info = await p.dst.qmp.execute<{ secondary: { failover: string } }>("x-test-colo-info");
  if (info.secondary.failover !== "relaunch") {
    throw new FlowError(`failover during the apply is '${info.secondary.failover}', expected 'relaunch'`);
  }
  await bp.continue("colo-apply-middle");
  await p.waitStatus(p.dst, "completed", ["failed"]);
  await tookOver(p, p.dst);
  const after = await p.dst.qmp.execute<{ secondary: { applied: number } }>("x-test-colo-info");
  if (after.secondary.applied !== n) {
    throw new FlowError(
      `the relaunched checkpoint was not applied (applied ${after.secondary.applied}, expected ${n})`,
    );
  }
  await checkSurvivor(p, p.dst);
  await p.sleep(0);
}
