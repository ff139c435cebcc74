/** The dirty-rate family: one VM measuring (calc-dirty-rate) and limiting (set-vcpu-dirty-limit) itself. */
import { defineFlow } from "../../family.ts";
import { SOCKET_FIELDS, socketProblems } from "../../validate.ts";
import type { DirtyLimitCase, DirtyRateCase, VcpuDirtyLimitCase } from "./case.ts";
import { dirtyLimitFlow, dirtyRateFlow, vcpuDirtyLimitFlow } from "./flow.ts";

function refusedCapabilities(c: DirtyRateCase): string[] {
  return (c.refusals ?? []).flatMap((r) => {
    const list = r.command === "migrate-set-capabilities" ? r.args.capabilities : undefined;
    const entries: unknown[] = Array.isArray(list) ? list : [];
    return entries.flatMap((x) =>
      typeof x === "object" && x !== null && "capability" in x && typeof x.capability === "string"
        ? [x.capability]
        : []
    );
  });
}

/** Why the engine world does not run a verdict that is a rate in host time. */
const TIMED = "the verdict is a dirty rate measured in host time, so it would hang on the machine's load";

export const dirtyRate = defineFlow<DirtyRateCase>({
  flow: "dirty-rate",
  fields: { flow: true, measure: true, refusals: true },
  problems(c, bad) {
    if (!c.measure && !c.refusals?.length) bad("measure", "a case measures, or refuses, something");
    if (c.measure?.mode === "dirty-ring" && !c.dirtyRingSize) {
      bad("measure", "mode dirty-ring needs dirtyRingSize");
    }
  },
  needs: (c) => ({
    ...(c.measure?.expect === "dirty" ? { timed: TIMED } : {}),
    // A capability the side must refuse for its reason must exist there first.
    qemu: refusedCapabilities(c).map((name) => ({ side: "src" as const, kind: "capability" as const, name })),
  }),
  run: dirtyRateFlow,
});

export const vcpuDirtyLimit = defineFlow<VcpuDirtyLimitCase>({
  flow: "vcpu-dirty-limit",
  fields: { flow: true },
  problems(c, bad) {
    if (!c.dirtyRingSize) bad("dirtyRingSize", "the limit works from the vCPU's dirty ring: it needs one");
  },
  needs: () => ({ timed: TIMED }),
  run: vcpuDirtyLimitFlow,
});

export const dirtyLimit = defineFlow<DirtyLimitCase>({
  flow: "dirty-limit",
  fields: { ...SOCKET_FIELDS, flow: true },
  problems(c, bad) {
    socketProblems(c, bad);
    if (!c.dirtyRingSize) {
      bad("dirtyRingSize", "dirty-limit throttles by the vCPU's dirty ring: it needs one");
    }
    if (!(c.srcCaps ?? []).includes("dirty-limit")) {
      bad("srcCaps", "the flow is the dirty-limit capability's");
    }
  },
  needs: () => ({ timed: TIMED }),
  socket: (c) => c,
  run: dirtyLimitFlow,
});

/** The dirty-rate family's flows (one entry of the registry). */
export const DIRTYRATE = [dirtyRate, vcpuDirtyLimit, dirtyLimit] as const;
