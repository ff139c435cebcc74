/**
 * The kill-at-phase scenarios: SIGKILL the primary at a named moment of a checkpoint, then the secondary
 * must hold exactly its own state or the whole checkpoint (never a mix), and run on as the survivor.
 */
import { compareDeviceState } from "../../check/device_equal.ts";
import { FlowError, type MigrationPair } from "../../framework.ts";
import { expectRamEqual } from "../../migration_util.ts";
import { type Breakpoints, isUnavailable } from "../../world/world.ts";
import type { ColoCase, ColoPhase } from "./case.ts";
import { checkSurvivor, snapshot } from "./checks.ts";
import { takeOver } from "./takeover.ts";
import { checkpointWaitMs, waitBreakpoint } from "./waits.ts";
import { WaitAbort } from "../../../engine/wait.ts";
import type { ColoWirePlace } from "../../wire_colo.ts";
import type { HoldRelease, WireHold } from "../../wire_proxy.ts";
import type { DigestReply } from "../../check/ram_equal.ts";

const PRIMARY_PHASES: ReadonlySet<ColoPhase> = new Set([
  "colo-request-sent",
  "colo-ram-half-sent",
  "colo-device-buffer-half-sent",
  "colo-after-vmstate-received",
  "colo-after-vmstate-loaded",
]);

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
export async function killPrimary(
  p: MigrationPair,
  bp: Breakpoints,
  phase: ColoPhase,
  n: number,
): Promise<void> {
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
 * Each moment as a place on the wire (harness/wire_colo.ts) and what becomes of the bytes held after it
 * once the primary is dead: lost with it ("drop": it had not sent them), or delivered ("deliver": they
 * were in flight, as socket buffers hold what a process wrote before it died).
 */
const ON_WIRE: Record<ColoPhase, { place: ColoWirePlace; release: HoldRelease }> = {
  "colo-request-sent": { place: "request-sent", release: "drop" },
  "colo-stopped": { place: "send-start", release: "drop" },
  "colo-ram-half-sent": { place: "ram-middle", release: "drop" },
  "colo-ram-half-received": { place: "ram-middle", release: "deliver" },
  "colo-device-buffer-half-sent": { place: "devices-middle", release: "drop" },
  "colo-device-buffer-received": { place: "devices-end", release: "deliver" },
  "colo-after-vmstate-received": { place: "after-received", release: "deliver" },
  "colo-apply-middle": { place: "before-received", release: "drop" },
  "colo-after-vmstate-loaded": { place: "after-loaded", release: "deliver" },
};

/**
 * The same scenario where the sides have no breakpoints (real QEMU): the wire proxy holds the main
 * connection at the moment's place in the next checkpoint, the primary is SIGKILLed there, and the
 * secondary must do what EXPECTED says. Its own state is taken where both sides are stopped and it has
 * none of the checkpoint (VMSTATE_SEND held back): when it gives the checkpoint up it stays stopped, and
 * its RAM must be exactly that state. When it applies the checkpoint it resumes the guest at once (QEMU
 * has no pause there), so the applied RAM cannot be compared page by page; the survivor's check_guests_ram
 * (the a-b pattern, which a mix of two states breaks) checks it instead.
 */
export async function killPrimaryOnWire(p: MigrationPair, c: ColoCase, phase: ColoPhase): Promise<void> {
  const expected = EXPECTED[phase];
  const { place, release } = ON_WIRE[phase];
  const hold = (h: WireHold, what: string) =>
    p.wait(`the wire at ${what} of checkpoint ${h.checkpoint}`, () => {
      // The proxy lost its way in the stream: say where, rather than wait for a place it cannot see.
      const lost = p.wireReport()?.problems;
      if (lost) return Promise.reject(new WaitAbort(`the wire proxy: ${lost.join("; ")}`));
      return Promise.resolve(h.isReached || undefined);
    }, checkpointWaitMs(c));
  let own: DigestReply;
  let at: WireHold;
  // From the secondary's stop for the checkpoint: a RESUME after it is the checkpoint applied (QEMU
  // resumes the guest before it answers VMSTATE_LOADED).
  let since: number;
  if (place === "request-sent") {
    at = p.holdColo(place);
    since = p.dst.qmp.events.length;
    await hold(at, place);
    // The request went through: the secondary stops for it (STOP), and has nothing of it yet.
    await p.waitEvent(p.dst, "STOP", undefined, since);
    since = p.dst.qmp.events.length;
    own = await p.dst.ram().digests();
  } else {
    const stopped = p.holdColo("send-start");
    at = place === "send-start" ? stopped : p.holdColo(place, stopped.checkpoint);
    await hold(stopped, "send-start");
    since = p.dst.qmp.events.length;
    own = await p.dst.ram().digests();
    if (at !== stopped) {
      stopped.release("continue");
      await hold(at, place);
    }
  }
  const n = at.checkpoint;
  p.ctx.log(
    `killing the primary at ${phase} of checkpoint ${n} (the wire held at ${place}, then ${release})`,
  );
  await p.src.sigkill();
  p.srcKilled = true;
  at.release(release);

  // The secondary leaves COLO with an error once its connection ends.
  await p.waitEvent(p.dst, "COLO_EXIT", undefined, since);
  const events = p.dst.qmp.events.slice(since);
  const outcome = events.some((e) => e.event === "RESUME") ? "applied" : "own";
  if (expected !== "either" && outcome !== expected) {
    throw new FlowError(
      `the primary died at ${phase}: the secondary ${
        outcome === "own" ? "gave up on" : "applied"
      } checkpoint ${n}, expected it to ${expected === "own" ? "give up" : "apply it"}`,
    );
  }
  if (outcome === "own") {
    const st = await p.dst.qmp.execute<{ running: boolean; status: string }>("query-status");
    if (st.running) throw new FlowError(`the secondary gave up on checkpoint ${n} but runs (${st.status})`);
    await expectRamEqual(
      { name: "the secondary at its stop", digests: () => Promise.resolve(own) },
      { ...p.dst.ram(), name: "the secondary" },
      `after the primary died at ${phase}: RAM`,
    );
  } else p.ctx.log(`the secondary applied checkpoint ${n} and resumed: the survivor's checks follow`);
  p.ctx.log(
    `the primary died at ${phase}: the secondary ${
      outcome === "applied" ? "applied" : "kept its own state instead of"
    } checkpoint ${n}`,
  );
  await takeOver(p, p.dst);
  await checkSurvivor(p, p.dst);
}
