/** The analyze family's record: a saved stream the analyzer must parse. */
import type { CaseBase } from "../../case.ts";

/** /migration/analyze-script: save to a file, then the stream analyzer must parse it. */
export interface AnalyzeCase extends CaseBase {
  flow: "analyze-script";
}
