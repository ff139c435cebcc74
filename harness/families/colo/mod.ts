/**
 * The COLO family (upstream's colo-tests.c, and beyond it): checkpoints checked page by page, then a
 * failover — a yank, a failover during a checkpoint, the primary killed at a named moment of one, a
 * takeover during the apply or while a multifd channel holds a packet.
 */
import { defineFlow } from "../../family.ts";
import { capsOf, SOCKET_FIELDS, socketProblems } from "../../validate.ts";
import type { ColoCase } from "./case.ts";
import { coloFlow } from "./flow.ts";
import { heldMoment } from "./moments.ts";

export const colo = defineFlow<ColoCase>({
  flow: "colo",
  fields: { ...SOCKET_FIELDS, flow: true, colo: true, fillRam: true },
  problems(c, bad) {
    socketProblems(c, bad);
    if (!capsOf(c, "src").includes("x-colo") || !capsOf(c, "dst").includes("x-colo")) {
      bad("caps", "COLO needs x-colo on both sides");
    }
    const sc = c.colo;
    if (sc.checkpoints !== undefined && !(Number.isInteger(sc.checkpoints) && sc.checkpoints >= 1)) {
      bad("colo.checkpoints", "must be a positive integer");
    }
    const moments =
      (["duringCheckpoint", "killPrimaryAt", "failoverDuringApply", "failoverDuringMultifdPacket"] as const)
        .filter((k) => sc[k]);
    if (moments.length > 1) bad("colo", `one failure moment at a time, got ${moments.join(" and ")}`);
    for (const k of ["killPrimaryAt", "failoverDuringApply", "failoverDuringMultifdPacket"] as const) {
      if (sc[k] && sc.survivor !== "secondary") bad(`colo.${k}`, "the secondary is the survivor there");
    }
    if (sc.failoverDuringMultifdPacket && !capsOf(c, "dst").includes("multifd")) {
      bad("colo.failoverDuringMultifdPacket", "needs multifd");
    }
  },
  needs: (c) => ({
    heldAt: heldMoment(c.colo) ?? undefined,
    // The primary's death at a moment can also be placed on the wire, where a proxy holds the stream.
    heldOnWire: c.colo.killPrimaryAt !== undefined,
    coloPair: true,
  }),
  socket: (c) => c,
  finalQueries: ["query-colo-status"],
  run: coloFlow,
});

/** The COLO family's flows (one entry of the registry). */
export const COLO = [colo] as const;
