/** A failover as upstream triggers it, and the takeover as query-colo-status must then tell it. */
import type { MigrationPair } from "../../framework.ts";
import type { Side } from "../../world/world.ts";
import { expectColoStatus } from "./checks.ts";

/** yank (out of band) then x-colo-lost-heartbeat, as upstream triggers a failover. */
export async function failOver(p: MigrationPair, side: Side): Promise<void> {
  await side.qmp.executeOob("yank", { instances: [{ type: "migration" }] }).catch(() => {});
  await takeOver(p, side);
}

/**
 * x-colo-lost-heartbeat, then status `completed` on `side`: the time between is the failover time. Then
 * the takeover as query-colo-status tells it (see tookOver).
 */
export async function takeOver(p: MigrationPair, side: Side): Promise<void> {
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
export async function tookOver(p: MigrationPair, side: Side): Promise<void> {
  await p.waitEvent(side, "COLO_EXIT");
  const role = side === p.src ? "primary" : "secondary";
  await expectColoStatus(side, { mode: "none", "last-mode": role, reason: "request" }, "after the takeover");
}
