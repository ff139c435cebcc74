/**
 * The postcopy family (upstream's postcopy-tests.c): the destination runs before its RAM has arrived,
 * faults pages in over the return path; preempt, recovery after a channel failure (and a second failure
 * during it), multifd before the switch; migrate_cancel refused in every postcopy status.
 */
import { defineFlow } from "../../family.ts";
import { OUTCOME_FIELDS, outcomeProblems, SOCKET_FIELDS, socketProblems } from "../../validate.ts";
import type { Capability } from "../../../engine/options.ts";
import type { QemuNeed } from "../../world/world.ts";
import type { PostcopyCase } from "./case.ts";
import { postcopyFlow } from "./flow.ts";

/** The capabilities every postcopy case has on a side (upstream's framework adds postcopy-blocktime). */
export function postcopyCaps(c: PostcopyCase, side: "src" | "dst"): Capability[] {
  if (side === "dst" && c.dstWithoutPostcopy) return [];
  return ["postcopy-ram", "postcopy-blocktime", ...(c.preempt ? ["postcopy-preempt" as const] : [])];
}

export const postcopy = defineFlow<PostcopyCase>({
  flow: "postcopy",
  fields: {
    ...SOCKET_FIELDS,
    ...OUTCOME_FIELDS,
    flow: true,
    preempt: true,
    recovery: true,
    failAt: true,
    cancelIn: true,
    postcopyBandwidth: true,
    expectFaults: true,
    dstWithoutPostcopy: true,
    windows: true,
  },
  problems(c, bad) {
    socketProblems(c, bad);
    outcomeProblems(c, bad);
    if (c.failAt && !c.recovery) bad("failAt", "a recovery step fails only in a recovery");
    if (c.failAt && c.recovery !== "plain") bad("failAt", "one failure at a time: with recovery 'plain'");
    for (const s of c.cancelIn ?? []) {
      if (s !== "postcopy-active" && !c.recovery) bad("cancelIn", `'${s}' comes only in a recovery`);
      if (s === "postcopy-recover" && c.recovery !== "double-failure-handshake" && !c.failAt) {
        bad("cancelIn", "postcopy-recover lasts only while a recovery is held (handshake, or failAt)");
      }
    }
    if (c.expectFaults && !c.postcopyBandwidth && !c.recovery) {
      bad("expectFaults", "a guest faults for sure only while the background is slow: postcopyBandwidth");
    }
    if (c.windows?.length && !c.expectFaults) {
      bad("windows", "a window of the page-request path opens only where the guest faults: expectFaults");
    }
    if (c.dstWithoutPostcopy && (c.expect ?? "succeed") === "succeed") {
      bad("dstWithoutPostcopy", "a destination without postcopy-ram refuses the stream: expect a failure");
    }
    for (const cap of ["postcopy-ram", "postcopy-blocktime", "postcopy-preempt"] as const) {
      if ([...(c.caps ?? []), ...(c.srcCaps ?? []), ...(c.dstCaps ?? [])].includes(cap)) {
        bad("caps", `${cap} is the family's to set (preempt: true for postcopy-preempt)`);
      }
    }
  },
  needs: (c) => ({
    heldAt: c.failAt ? `a channel failure at ${c.failAt}` : undefined,
    // Each step of the recovery's handshake has a place on the new channel, where the proxy holds it.
    heldOnWire: c.failAt !== undefined,
    modelCounters: c.windows?.length ? `proving the windows ${c.windows.join(", ")} open` : undefined,
    // A guest that faults in a window is a matter of timing: the simulation makes it happen every run.
    scheduled: c.windows?.length ? `the guest faulting in ${c.windows.join(", ")}` : undefined,
    qemu: [
      ...(["src", "dst"] as const).flatMap((side) =>
        postcopyCaps(c, side).map((name): QemuNeed => ({ side, kind: "capability", name }))
      ),
      // The state a failed connection of a resume passes through (QEMU 9.1 on; before, it stays paused).
      ...(c.recovery === "double-failure-reconnect"
        ? [{ side: "src", kind: "status", name: "postcopy-recover-setup" } as const]
        : []),
    ],
  }),
  socket: (c) => c,
  async setupSource(p, c) {
    await p.setCaps(p.src, postcopyCaps(c, "src"));
  },
  async setupTarget(p, c) {
    await p.setCaps(p.dst, postcopyCaps(c, "dst"));
  },
  run: postcopyFlow,
});

/** The postcopy family's flows (one entry of the registry). */
export const POSTCOPY = [postcopy] as const;
