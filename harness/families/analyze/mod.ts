/** The analyze family (upstream's /migration/analyze-script): a saved stream the analyzer must parse. */
import { defineFlow } from "../../family.ts";
import type { AnalyzeCase } from "./case.ts";
import { analyzeScriptFlow } from "./flow.ts";

export const analyzeScript = defineFlow<AnalyzeCase>({
  flow: "analyze-script",
  fields: { flow: true },
  needs: () => ({
    qemu: [{ side: "src", kind: "transport", name: "file" }, {
      side: "dst",
      kind: "transport",
      name: "file",
    }],
    notSimulated: "the stream analyzer runs as a process, outside the simulation",
  }),
  run: analyzeScriptFlow,
});

/** The analyze family's flows (one entry of the registry). */
export const ANALYZE = [analyzeScript] as const;
