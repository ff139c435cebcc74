/** The cancel family (upstream's test_cancel_src_after_status): cancel the source at a given status. */
import { isWireFault } from "../../wire_proxy.ts";
import { defineFlow } from "../../family.ts";
import { faultProblems } from "../../validate.ts";
import { CANCEL_PHASES, type CancelCase } from "./case.ts";
import { cancelFlow } from "./flow.ts";

export const cancel = defineFlow<CancelCase>({
  flow: "cancel",
  fields: { flow: true, cancelAfter: true, dstFaults: true, whenBlocked: true },
  problems(c, bad) {
    for (const f of c.dstFaults ?? []) faultProblems(c, f, "dstFaults", "dst", bad);
    if (c.whenBlocked && c.cancelAfter !== "active") {
      bad("whenBlocked", "only a cancel while 'active' waits");
    }
    if (!CANCEL_PHASES.includes(c.cancelAfter)) bad("cancelAfter", `unknown status '${c.cancelAfter}'`);
  },
  // A destination channel's delay can go on the wire (real QEMU's way); others are the model's.
  needs: (c) => {
    const kinds = (c.dstFaults ?? []).filter((f) => !isWireFault(f, "dst")).map((f) => f.kind);
    return { faults: kinds, dstFaults: kinds };
  },
  run: cancelFlow,
});

/** The cancel family's flows (one entry of the registry). */
export const CANCEL = [cancel] as const;
