/**
 * Takeovers while the secondary is busy: in the middle of a checkpoint's apply (it must relaunch after
 * the apply), and while a multifd channel holds a packet of the next checkpoint.
 */
import { FlowError, type MigrationPair } from "../../framework.ts";
import type { Breakpoints } from "../../world/world.ts";
import { checkSurvivor } from "./checks.ts";
import { tookOver } from "./takeover.ts";
import { waitBreakpoint } from "./waits.ts";

/**
 * A multifd channel of the secondary holds a packet of the next checkpoint while the secondary is told to
 * take over: the channel must finish before the cache goes, and the secondary must survive and run.
 */
export async function failoverDuringPacket(p: MigrationPair, bp: Breakpoints): Promise<void> {
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
export async function relaunch(p: MigrationPair, bp: Breakpoints, n: number): Promise<void> {
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
