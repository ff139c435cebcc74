/**
 * Regression cases: one per bug found, each naming the bug it guards against. A case here must fail
 * with the bug present (see the note on each).
 */
import type { MigrationCase } from "../../harness/case.ts";

export const REGRESSION_CASES: MigrationCase[] = [];
