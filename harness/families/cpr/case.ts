/** The cpr family's record (upstream's cpr-tests.c): cpr-transfer to a target started beside the source. */
import type { CaseBase, Outcome, SocketCase } from "../../case.ts";

/**
 * test_mode_transfer: the target starts with `-incoming cpr,...` beside the source and waits there for
 * the CPR state (the descriptors of guest RAM) before its monitor comes up; the source, in mode
 * cpr-transfer, migrates with a main and a cpr channel. No RAM crosses the main channel.
 */
export interface CprTransferCase extends CaseBase, SocketCase, Outcome {
  flow: "cpr-transfer";
}
