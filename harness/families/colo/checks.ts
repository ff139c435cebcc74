/**
 * What the COLO flow checks: a checkpoint page by page (secondary == stopped primary, cache == secondary,
 * devices), a snapshot of a side to compare with later, the survivor running after a failover, and
 * query-colo-status on each side; plus the checkpoint statistics recorded into the pair's stats.
 */
import type { DigestReply, RamSource } from "../../check/ram_equal.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { checkGuestRuns, expectDevicesEqual, expectRamEqual } from "../../migration_util.ts";
import { type DeviceState, isUnavailable, type Side } from "../../world/world.ts";

/** A snapshot of a side's RAM digests and devices, to compare with what it holds later. */
export interface Snapshot {
  ram: RamSource;
  devices: DeviceState;
}

export async function snapshot(side: Side, label: string): Promise<Snapshot> {
  const digests: DigestReply = await side.ram().digests();
  const devices = await side.deviceState();
  if (isUnavailable(devices)) throw new FlowError(`${side.name}'s device state: ${devices.unavailable}`);
  // Only digests are kept (the pages themselves are gone by the time they are compared).
  return { ram: { name: label, digests: () => Promise.resolve(digests) }, devices };
}

/** Checkpoint `n` is applied and the secondary paused before resuming; the primary waits for LOADED. */
export async function checkCheckpoint(p: MigrationPair, n: number): Promise<void> {
  await expectRamEqual(p.src.ram(), p.dst.ram(), `checkpoint ${n}: guest RAM`);
  const cache = p.dst.coloCache();
  if (isUnavailable(cache)) p.ctx.log(`COLO cache not compared: ${cache.unavailable}`);
  else await expectRamEqual(p.dst.ram(), cache, `checkpoint ${n}: the secondary's COLO cache`);
  await expectDevicesEqual(p, p.src, p.dst, ["primary", "secondary"], `checkpoint ${n}: `);
}

/** The survivor runs: its a-b pattern advances; stopped, it passes check_guests_ram; then it runs on. */
export async function checkSurvivor(p: MigrationPair, side: Side): Promise<void> {
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

/**
 * The side that lost its peer without being told (no x-colo-lost-heartbeat), after its COLO_EXIT: QEMU
 * keeps it in COLO state waiting for a failover request, so query-colo-status still reads its mode, no
 * last mode (that is set when COLO ends) and reason none (no failover was asked for).
 */
export async function expectLostStatus(side: Side, role: "primary" | "secondary"): Promise<void> {
  await expectColoStatus(side, { mode: role, "last-mode": "none", reason: "none" }, "after losing its peer");
}

/**
 * The primary's checkpoints so far and each one's latency (request → vmstate-loaded) into the pair's
 * stats. Only the engine answers x-test-colo-info; elsewhere there are no checkpoint statistics.
 */
export async function recordCheckpoints(p: MigrationPair): Promise<void> {
  type Info = { primary: { checkpoints: number; stats: { latency: number }[] } | null };
  const info = await p.src.qmp.execute<Info>("x-test-colo-info", {}, { timeoutMs: 5000 }).catch(() => null);
  if (!info?.primary) return;
  const latencyMs = info.primary.stats.map((s) => s.latency);
  p.stats.colo = { ...p.stats.colo, checkpoints: info.primary.checkpoints, latencyMs };
}

export interface ColoStatus {
  mode: string;
  "last-mode": string;
  reason: string;
}

/** query-colo-status on `side` must read `want` (QEMU's qmp_query_colo_status; the model mirrors it). */
export async function expectColoStatus(side: Side, want: ColoStatus, when: string): Promise<void> {
  const got = await side.qmp.execute<ColoStatus>("query-colo-status", {}, { timeoutMs: 5000 });
  const brief = (s: ColoStatus) => `mode ${s.mode}, last-mode ${s["last-mode"]}, reason ${s.reason}`;
  if (got.mode !== want.mode || got["last-mode"] !== want["last-mode"] || got.reason !== want.reason) {
    throw new FlowError(
      `${when}: ${side.name}'s query-colo-status reads ${brief(got)}, expected ${brief(want)}`,
    );
  }
}
