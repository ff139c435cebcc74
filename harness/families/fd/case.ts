/** The fd family's record: a migration over a socket handed to both sides as a descriptor. */
import type { CaseBase, Outcome } from "../../case.ts";

/**
 * Upstream's test_migrate_precopy_fd_socket: a socketpair, one end given to each side with getfd under
 * one name, `migrate-incoming fd:NAME` and `migrate fd:NAME` on the connection that named it.
 */
export interface FdCase extends CaseBase, Outcome {
  flow: "fd";
  /** The name getfd gives the descriptor on both sides (upstream: fd-mig). */
  fdName?: string;
  /** The name the source's migrate asks for, if not the one it was given (a bad name). */
  migrateName?: string;
}
