/** The misc family's record (upstream's misc-tests.c): a destination nobody listens on. */
import type { CaseBase } from "../../case.ts";

/** Migrate to an address nobody listens on. */
export interface BadDestCase extends CaseBase {
  flow: "bad-dest";
}
