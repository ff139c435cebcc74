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
import { FlowError, type MigrationPair } from "../../framework.ts";
import { connectUri, CONVERGE, migrate, migrateIncoming } from "../../migration_qmp.ts";
import { fillRam, isAbGuest, waitSerialB } from "../../migration_util.ts";
import { WaitTimeoutError } from "../../../engine/wait.ts";
import { impreciseError } from "../../expect.ts";
import { isUnavailable, type Side } from "../../world/world.ts";
import type { ColoCase } from "./case.ts";
import {
  checkCheckpoint,
  checkSurvivor,
  expectColoStatus,
  expectLostStatus,
  recordCheckpoints,
} from "./checks.ts";
import { killPrimary, killPrimaryOnWire } from "./kill_at_phase.ts";
import { needsBreakpoints } from "./moments.ts";
import { failoverDuringPacket, relaunch } from "./relaunch.ts";
import { failOver } from "./takeover.ts";
import { checkpointWaitMs, eventMs, leftColo, waitBreakpoint, waitEventAt } from "./waits.ts";

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

/**
 * A checkpoint arrives mangled (the fuzzer's): up to three more checkpoints' time for either side to give
 * up on COLO (its COLO_EXIT) or for the checkpoints to go on (the edit changed nothing that is checked).
 * Neither may happen: with bytes removed the secondary waits for the rest while the primary waits for its
 * answer, as QEMU's would — what ends that is the failover a lost heartbeat brings. A secondary that
 * failed must say what was wrong. Then the primary takes over and must run on, and the secondary must
 * still answer.
 */
async function afterMangledCheckpoint(p: MigrationPair, c: ColoCase): Promise<void> {
  const dstFrom = p.dst.qmp.events.length;
  const exited = (side: Side, from: number) =>
    side.qmp.events.slice(from).some((e) => e.event === "COLO_EXIT");
  const settled = await p.wait("a side to leave COLO or three more checkpoints", () => {
    const resumes = p.dst.qmp.events.slice(dstFrom).filter((e) => e.event === "RESUME").length;
    return exited(p.dst, dstFrom) || exited(p.src, 0) || resumes >= 3 || p.dst.exitStatus !== null;
  }, 3 * checkpointWaitMs(c) + 10_000).catch((e) => {
    if (e instanceof WaitTimeoutError) return false;
    throw e;
  });
  if (!settled) p.ctx.log("the checkpoint stalls (each side waits for the other): the failover must end it");
  if (p.dst.exitStatus) throw new FlowError(`the secondary exited (status ${p.dst.exitStatus.code})`);
  const failed = p.dst.stderr.match(/COLO: secondary checkpoint failed: (.*)/);
  p.ctx.log(`survives: secondary ${failed ? `failed: ${failed[1]}` : settled ? "went on" : "stalled"}`);
  if (failed) {
    const why = impreciseError(failed[1]);
    if (why) throw new FlowError(`the secondary's error '${failed[1]}' does not say what was wrong: ${why}`);
  }
  await failOver(p, p.src);
  await checkSurvivor(p, p.src);
  await p.dst.qmp.execute("query-status");
}

export async function coloFlow(p: MigrationPair, c: ColoCase): Promise<void> {
  const sc = c.colo;
  const checkpoints = sc.checkpoints ?? 3;
  const bp = p.dst.breakpoints();
  const needs = needsBreakpoints(sc);
  // Without breakpoints, the primary's death at a moment is placed on the wire (the proxy holds there).
  const onWire = isUnavailable(bp) && sc.killPrimaryAt !== undefined && p.ctx.world.wireFaults === true;
  if (needs && isUnavailable(bp) && !onWire) throw new FlowError(`${needs}: ${bp.unavailable}`);
  if (onWire) p.trackColoOnWire();
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

  if (isUnavailable(bp)) {
    await syncCheckpoints(p, c, checkpoints);
    if (onWire && sc.killPrimaryAt) return await killPrimaryOnWire(p, c, sc.killPrimaryAt);
  } else {
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
    if (sc.mangledCheckpoint) return await afterMangledCheckpoint(p, c);
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
