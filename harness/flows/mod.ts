/**
 * The flows by name: each case's `flow` picks the function that drives it, with the case narrowed to its
 * own record type. A new family adds its flow file here and its case type to harness/case.ts.
 */
import type { MigrationCase } from "../case.ts";
import type { MigrationPair } from "../framework.ts";
import { analyzeScriptFlow } from "./analyze.ts";
import { cancelFlow } from "./cancel.ts";
import { coloFlow } from "./colo.ts";
import { fileFlow } from "./file.ts";
import { badDestFlow } from "./misc.ts";
import { multifdCancelFlow } from "./multifd.ts";
import { convergeAfterRaiseFlow, precopyFlow } from "./precopy.ts";

export function runFlow(p: MigrationPair, c: MigrationCase): Promise<void> {
  switch (c.flow) {
    case "precopy":
      return precopyFlow(p, c);
    case "converge-after-raise":
      return convergeAfterRaiseFlow(p, c);
    case "file":
      return fileFlow(p, c);
    case "cancel":
      return cancelFlow(p, c);
    case "bad-dest":
      return badDestFlow(p, c);
    case "multifd-cancel":
      return multifdCancelFlow(p, c);
    case "analyze-script":
      return analyzeScriptFlow(p, c);
    case "colo":
      return coloFlow(p, c);
  }
}
