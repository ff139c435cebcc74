/**
 * The dirty-rate family's records (upstream's test_vcpu_dirty_limit in precopy-tests.c, and what the
 * commands must refuse): one VM measuring and limiting its own dirty page rate, no migration.
 */
import type { CaseBase, SocketCase } from "../../case.ts";

/** A QMP command the source must refuse, and what its error must say. */
export interface Refusal {
  command:
    | "calc-dirty-rate"
    | "set-vcpu-dirty-limit"
    | "cancel-vcpu-dirty-limit"
    | "migrate-set-capabilities";
  args: Record<string, unknown>;
  error: RegExp;
}

/**
 * calc-dirty-rate on the running source, then query-dirty-rate until measured: the rate must be zero
 * (a guest that writes nothing) or not (one that does); and the commands' refusals of bad input.
 */
export interface DirtyRateCase extends CaseBase {
  flow: "dirty-rate";
  measure?: {
    mode?: "page-sampling" | "dirty-ring" | "dirty-bitmap";
    calcTime: number;
    expect: "zero" | "dirty";
  };
  refusals?: Refusal[];
}

/**
 * upstream's test_vcpu_dirty_limit: the vCPU's dirty rate measured from its dirty ring, a limit of half
 * of it set, the rate brought within the limit (+ 25 MB/s), the limit cancelled, the rate back above it.
 */
export interface VcpuDirtyLimitCase extends CaseBase {
  flow: "vcpu-dirty-limit";
}

/**
 * upstream's test_dirty_limit: a migration that cannot converge, with the dirty-limit capability: the
 * source limits the vCPU to vcpu-dirty-limit (its throttle time per round then > 0), a cancel lifts it,
 * a second migration to a new destination limits it again, and with converge settings the remaining
 * RAM fits in the downtime at pre-switchover.
 */
export interface DirtyLimitCase extends CaseBase, SocketCase {
  flow: "dirty-limit";
}
