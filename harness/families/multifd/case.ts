/** The multifd family's own record (the other multifd cases are precopy cases with the capability). */
import type { CaseBase, SocketCase } from "../../case.ts";

/** test_multifd_tcp_cancel: cancel, the old destination exits, migrate again to a new one. */
export interface MultifdCancelCase extends CaseBase, SocketCase {
  flow: "multifd-cancel";
}
