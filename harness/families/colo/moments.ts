/**
 * The named moments a COLO scenario strikes at, as the worlds and the flow say them: a scenario that
 * needs a side held at one needs breakpoints (the model's), which real QEMU does not have.
 */
import type { ColoScenario } from "./case.ts";

/** The moment a scenario needs a side held at, or null (upstream's scenarios need none). */
export function heldMoment(sc: ColoScenario): string | null {
  if (sc.killPrimaryAt) return `killing the primary at ${sc.killPrimaryAt}`;
  if (sc.failoverDuringApply) return "a failover during the apply";
  if (sc.failoverDuringMultifdPacket) return "a failover during a multifd packet";
  return null;
}

/** What a scenario needs the secondary held at named moments for, or null (upstream's scenarios). */
export function needsBreakpoints(sc: ColoScenario): string | null {
  if (sc.killPrimaryAt) {
    return `killing the primary at ${sc.killPrimaryAt} needs the side held at that moment`;
  }
  if (sc.failoverDuringApply) return "a failover during the apply needs the secondary held mid-apply";
  if (sc.failoverDuringMultifdPacket) return "a failover during a multifd packet needs a channel held";
  if (sc.mangledCheckpoint) return "a mangled checkpoint is checked from the last applied one, held";
  return null;
}
