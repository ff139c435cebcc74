/**
 * Regression cases: one per bug found, each naming the bug it guards against and failing with it.
 * Bugs that live below the process level have a test file beside this one instead.
 */
import type { MigrationCase } from "../../harness/case.ts";

export const REGRESSION_CASES: MigrationCase[] = [
  {
    // Bug: the destination refused migrate-set-capabilities while its `-incoming URI` listener was in
    // status "setup" ("There's a migration process in progress"). QEMU allows it, and upstream's
    // migrate_start sets capabilities on a destination started with -incoming URI.
    name: "/migration/regressions/dst-caps-while-incoming-setup",
    tier: "full",
    transport: "unix",
    dstCaps: ["return-path", "pause-before-switchover"],
    srcCaps: ["return-path"],
  },
];
