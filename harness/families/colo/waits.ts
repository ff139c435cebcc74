/**
 * The COLO flow's waits on events: a breakpoint reached, the nth event of a kind since an index, a side
 * that left COLO with an error (which ends a wait at once), and the bound of one checkpoint.
 */
import { FlowError, type MigrationPair } from "../../framework.ts";
import type { QmpEvent } from "../../../engine/qmp/client.ts";
import type { Side } from "../../world/world.ts";
import type { ColoCase } from "./case.ts";

/**
 * Waits for the engine to pause at breakpoint `name` (of checkpoint `n` when given). A COLO_EXIT with
 * reason error on that side first is a failure: it gave up on the checkpoint (its stderr says why).
 */
export async function waitBreakpoint(
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

/**
 * How long one checkpoint may take to start or to finish once the previous one did: the delay between
 * checkpoints plus the transfer of what the guest dirtied (the a-b guest rewrites ~100 MiB per pass; on
 * loopback that is well under a second). A primary that deadlocks mid-checkpoint ends here, not at the
 * case's 120 s bound.
 */
export function checkpointWaitMs(c: ColoCase): number {
  return 5_000 + 10 * (c.colo.checkpointDelayMs ?? 300);
}

/**
 * The index of the first `event` on `side` at or after `since`, within `timeoutMs`, for `what`. A side
 * that exits, or that `broke` says left COLO with an error, fails the wait at once.
 */
export async function waitEventAt(
  p: MigrationPair,
  side: Side,
  event: string,
  since: number,
  what: string,
  timeoutMs: number,
  broke: () => string | null = () => null,
): Promise<number> {
  const e = await p.wait(what, {
    feed: side.qmp.feed,
    since,
    match: (e) => e.event === event,
    // What no event tells: the side exited, or left COLO with an error (the wait cannot end well).
    check: () => {
      const why = side.exitStatus
        ? `${side.name} exited (status ${side.exitStatus.code}: ${stderrTail(side)})`
        : broke();
      if (why) throw new FlowError(`${why} before ${what}`);
    },
  }, timeoutMs);
  return e.index;
}

/**
 * A side that left COLO with an error (COLO_EXIT reason error) since event index `since[side]`, told with
 * its last lines of stderr (where QEMU says why), or null.
 */
export function leftColo(since: Map<Side, number>): string | null {
  for (const [side, from] of since) {
    if (side.qmp.events.some((e, j) => j >= from && e.event === "COLO_EXIT" && e.data?.reason === "error")) {
      return `${side.name} left COLO with an error (${stderrTail(side)})`;
    }
  }
  return null;
}

/** The last lines of a side's stderr, where QEMU says why it gave up (its warnings left out). */
export function stderrTail(side: Side): string {
  const lines = side.stderr.trim().split("\n").filter((l) => l && !/warning:/.test(l));
  return lines.slice(-3).join(" | ") || "nothing on stderr";
}

/** A QMP event's time in ms (the two sides share the host's clock). */
export function eventMs(e: QmpEvent): number {
  return e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;
}
