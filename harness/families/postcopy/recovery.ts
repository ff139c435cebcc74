/**
 * Postcopy recovery (upstream's test_postcopy_recovery_common): migrate-pause, both sides paused, an
 * optional failure of the first recovery, then migrate-recover on the destination and migrate with
 * resume on the source. The peers of the double failures are upstream's socketpairs made as sockets of
 * the side's network (harness/peer.ts): one byte to the destination, a source that resumes towards
 * a peer that never answers, or towards no one.
 */
import { type ReturnPathPlace, WireHold } from "../../wire_proxy.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import type { MigrationStatus } from "../../../engine/migration_status.ts";
import { isUnavailable, type Side } from "../../world/world.ts";
import { silentConnection, silentListener, type SilentPeer } from "../../peer.ts";
import type { PostcopyCase } from "./case.ts";
import { expectCancelRefused } from "./cancel.ts";

/** QEMU_VM_COMMAND: the byte that moves a paused destination into postcopy-recover (upstream's trick). */
const QEMU_VM_COMMAND = 0x08;

/** Both sides paused; while waiting, neither may fail, run precopy again, or complete. */
async function waitPaused(p: MigrationPair, sides: Side[] = [p.src, p.dst]): Promise<void> {
  const ungoals: MigrationStatus[] = ["failed", "active", "completed"];
  for (const side of sides) await p.waitStatus(side, "postcopy-paused", ungoals);
}

/** A MIGRATION event with this status on the side since `since`. */
async function waitMigrationEvent(
  p: MigrationPair,
  side: Side,
  status: string,
  since: number,
): Promise<void> {
  await p.waitEvent(side, "MIGRATION", status, since);
}

/** The destination, sent one byte on its recovery socket, enters postcopy-recover and waits for more. */
async function nudgeTarget(p: MigrationPair, uri: string): Promise<SilentPeer> {
  await p.dst.qmp.execute("migrate-recover", { uri });
  const peer = await silentConnection(p.dst.network(), uri, new Uint8Array([QEMU_VM_COMMAND]));
  await p.waitStatus(p.dst, "postcopy-recover", ["failed", "completed", "active"]);
  return peer;
}

/** The destination back from postcopy-recover to postcopy-paused (migrate-pause on it). */
async function pauseTarget(p: MigrationPair): Promise<void> {
  await p.dst.qmp.execute("migrate-pause");
  await waitPaused(p, [p.dst]);
}

/** upstream's RECOVERY stage: the source's handshake meets a peer that never answers. */
async function failHandshake(p: MigrationPair, c: PostcopyCase): Promise<void> {
  const dstPeer = await nudgeTarget(p, `unix:${p.spareSocket(1)}`);
  const srcPeer = silentListener(p.src.network(), `unix:${p.spareSocket(3)}`);
  try {
    const since = p.src.qmp.events.length;
    await p.src.qmp.execute("migrate", { uri: `unix:${p.spareSocket(3)}`, resume: true });
    await waitMigrationEvent(p, p.src, "postcopy-recover", since);
    await p.waitStatus(p.src, "postcopy-recover", ["failed", "completed", "active"]);
    if (c.cancelIn?.includes("postcopy-recover")) await expectCancelRefused(p, "postcopy-recover");
    await p.src.qmp.execute("migrate-pause");
    await waitPaused(p, [p.src]);
    await pauseTarget(p);
  } finally {
    await srcPeer.close();
    await dstPeer.close();
  }
}

/** upstream's CHANNEL_ESTABLISH stage: the source's new connection cannot be made. */
async function failReconnect(p: MigrationPair): Promise<void> {
  const dstPeer = await nudgeTarget(p, `unix:${p.spareSocket(1)}`);
  try {
    const since = p.src.qmp.events.length;
    await p.src.qmp.execute("migrate", { uri: `unix:${p.spareSocket(4)}`, resume: true });
    await waitMigrationEvent(p, p.src, "postcopy-recover-setup", since);
    await waitMigrationEvent(p, p.src, "postcopy-paused", since);
    await waitPaused(p, [p.src]);
    await pauseTarget(p);
  } finally {
    await dstPeer.close();
  }
}

/** Each step of the recovery's handshake as a place on the wire (the message it happens before). */
const ON_WIRE: Record<NonNullable<PostcopyCase["failAt"]>, ReturnPathPlace> = {
  "postcopy-recv-bitmap": "recv-bitmap",
  "postcopy-bitmaps-reloaded": "postcopy-resume",
  "postcopy-resume-ack": "resume-ack",
};

/**
 * The first recovery's channel fails at one step of its handshake: the side is held there (the model's
 * breakpoint, or, where there are none, the proxy holding the new channel before that step's message),
 * the source is paused, and both must go back to postcopy-paused.
 */
async function failAtStep(p: MigrationPair, c: PostcopyCase, step: NonNullable<PostcopyCase["failAt"]>) {
  const held = step === "postcopy-bitmaps-reloaded" ? p.src : p.dst;
  const bps = held.breakpoints();
  const uri = `unix:${p.spareSocket(1)}`;
  let srcUri = uri;
  let reached: () => Promise<unknown>;
  let release: () => Promise<void>;
  if (!isUnavailable(bps)) {
    await bps.arm(step);
    const since = held.qmp.events.length;
    reached = () =>
      held.qmp.waitEvent("X_TEST_BREAKPOINT", (e) => e.data?.name === step, {
        timeoutMs: p.ctx.waitMs,
        since,
        matching: `breakpoint ${step}`,
        diagnose: () => p.diagnose(),
      });
    release = () => bps.continue(step, { disarm: true });
  } else if (p.ctx.world.wireFaults) {
    const hold = new WireHold(ON_WIRE[step], 0);
    srcUri = p.viaWireHeld(uri, [hold]);
    reached = () =>
      p.wait(`the recovery's channel at ${hold.place}`, () => Promise.resolve(hold.isReached || undefined));
    release = () => Promise.resolve(hold.release("continue"));
  } else throw new FlowError(`${step}: ${bps.unavailable}`);
  await p.dst.qmp.execute("migrate-recover", { uri });
  await p.src.qmp.execute("migrate", { uri: srcUri, resume: true });
  await reached();
  await p.waitStatus(p.src, "postcopy-recover", ["failed", "completed"]);
  if (c.cancelIn?.includes("postcopy-recover")) await expectCancelRefused(p, "postcopy-recover");
  await p.src.qmp.execute("migrate-pause");
  await release();
  await waitPaused(p);
}

/** Pause, the case's failure of a first recovery, then the recovery that completes. */
export async function recover(p: MigrationPair, c: PostcopyCase): Promise<void> {
  await p.src.qmp.execute("migrate-pause");
  await waitPaused(p);
  if (c.cancelIn?.includes("postcopy-paused")) await expectCancelRefused(p, "postcopy-paused");
  if (c.recovery === "double-failure-handshake") await failHandshake(p, c);
  else if (c.recovery === "double-failure-reconnect") await failReconnect(p);
  else if (c.failAt) await failAtStep(p, c, c.failAt);
  const uri = `unix:${p.spareSocket(2)}`;
  await p.dst.qmp.execute("migrate-recover", { uri });
  await p.src.qmp.execute("migrate", { uri, resume: true });
  await p.setParams(p.src, { "max-postcopy-bandwidth": 0 });
}
