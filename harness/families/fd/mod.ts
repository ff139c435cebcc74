/** The fd family (upstream's fd test in precopy-tests.c): the migration channel handed over as a descriptor. */
import { defineFlow } from "../../family.ts";
import { OUTCOME_FIELDS, outcomeProblems } from "../../validate.ts";
import type { FdCase } from "./case.ts";
import { fdFlow } from "./flow.ts";

export const fd = defineFlow<FdCase>({
  flow: "fd",
  fields: { ...OUTCOME_FIELDS, flow: true, fdName: true, migrateName: true },
  problems: (c, bad) => outcomeProblems(c, bad),
  // Every QEMU that migrates takes fd: URIs and getfd (no probe needed).
  needs: () => ({}),
  run: fdFlow,
});

/** The fd family's flows (one entry of the registry). */
export const FD = [fd] as const;
