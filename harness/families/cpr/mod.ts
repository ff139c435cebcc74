/** The cpr family (upstream's cpr-tests.c): cpr-transfer; cpr-reboot runs through the file flow. */
import { defineFlow } from "../../family.ts";
import { OUTCOME_FIELDS, outcomeProblems, SOCKET_FIELDS, socketProblems } from "../../validate.ts";
import type { CprTransferCase } from "./case.ts";
import { cprTransferFlow } from "./flow.ts";

export const cprTransfer = defineFlow<CprTransferCase>({
  flow: "cpr-transfer",
  fields: { ...SOCKET_FIELDS, ...OUTCOME_FIELDS, flow: true },
  problems(c, bad) {
    socketProblems(c, bad);
    outcomeProblems(c, bad);
    if (c.srcParams?.mode !== "cpr-transfer") bad("srcParams", "needs mode cpr-transfer on the source");
    if (c.memType !== "memfd" || !c.auxRamShare) {
      bad("memType", "cpr-transfer passes RAM as descriptors: memType memfd and auxRamShare");
    }
    if (c.transport === "tcp" || c.tls) bad("transport", "the main channel here is upstream's unix socket");
  },
  needs: () => ({
    // The target too must know the modes (it takes cpr-transfer from the CPR state): QEMU 8.2 on has
    // the parameter, 10.0 on cpr-transfer itself.
    qemu: [{ side: "dst", kind: "parameter", name: "mode" }],
  }),
  socket: (c) => c,
  targetLater: true,
  run: cprTransferFlow,
});

/** The cpr family's flows (one entry of the registry). */
export const CPR = [cprTransfer] as const;
