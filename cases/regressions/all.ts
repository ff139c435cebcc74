/**
 * Regression cases: one per bug found, each naming the bug it guards against and failing with it.
 * Bugs that live below the process level have a test file beside this one instead.
 */
import type { MigrationCase } from "../../harness/case.ts";

export const REGRESSION_CASES: MigrationCase[] = [
  {
    // Defect class: multifd receive channels that do not wait at the barrier after a SYNC packet.
    // Destination channel 0 holds its first packet (pc.ram pages 0-127, with the guest's hot set) for
    // 1.5 s. The completion round re-sends the hot set on channel 2 (packets go round robin: 258 in the
    // first pass). With the barrier, channel 2 waits at its SYNC until channel 0's SYNC, which follows the
    // delayed packet; without it, the stale first-pass copy lands last and the pages are wrong — what
    // QEMU's per-round sync (commit 294e5a4034) and multifd_recv_sync_main prevent.
    name: "/migration/regressions/multifd-sync-barrier",
    tier: "full",
    transport: "tcp",
    defer: true,
    live: true,
    caps: ["multifd"],
    srcParams: { "multifd-channels": 4 },
    dstParams: { "multifd-channels": 4 },
    workload: { kind: "random", seed: 0, hotPages: 32, hotPercent: 100 },
    dstFaults: [{ kind: "multifd-channel-delay", channel: 0, delayMs: 1500 }],
    guards: { side: "dst", defect: "multifd-no-recv-sync" },
  },
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
