/** The file family (upstream's file-tests.c): the source saves to a file, the destination loads it. */
import { defineFlow } from "../../family.ts";
import { OUTCOME_FIELDS, outcomeProblems } from "../../validate.ts";
import type { FileCase } from "./case.ts";
import { fileFlow } from "./flow.ts";

export const file = defineFlow<FileCase>({
  flow: "file",
  fields: { ...OUTCOME_FIELDS, flow: true, fileOffset: true, stopSrc: true, fdset: true },
  problems: (c, bad) => outcomeProblems(c, bad),
  needs: () => ({
    qemu: [{ side: "src", kind: "transport", name: "file" }, {
      side: "dst",
      kind: "transport",
      name: "file",
    }],
  }),
  run: fileFlow,
});

/** The file family's flows (one entry of the registry). */
export const FILE = [file] as const;
