/**
 * Regression cases: one per bug found, each naming the bug it guards against and failing with it.
 * Bugs that live below the process level have a unit test beside the module they are in instead.
 */
import type { ColoCase } from "../../harness/families/colo/case.ts";
import type { MigrationCase } from "../../harness/families/mod.ts";
import type { ConvergeAfterRaiseCase } from "../../harness/families/precopy/case.ts";

const COLO_BASE: Pick<ColoCase, "tier" | "flow" | "transport" | "machine"> = {
  tier: "full",
  flow: "colo",
  transport: "tcp",
  machine: "tiny",
};

/**
 * Control-plane regressions: a migration that passes (3 MB/s, then raised) with commands sent beside it
 * at moments before, during and after it, each judged by the state machine's oracle.
 */
const CONTROL_BASE: Pick<
  ConvergeAfterRaiseCase,
  "tier" | "flow" | "transport" | "machine" | "iterations" | "workload" | "srcParams"
> = {
  tier: "full",
  flow: "converge-after-raise",
  transport: "unix",
  machine: "small",
  iterations: 2,
  workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 90 },
  srcParams: { "max-bandwidth": 3_000_000 },
};

export const REGRESSION_CASES: MigrationCase[] = [
  {
    // Defect class: the COLO cache released before the multifd receive channels stop ("Call
    // colo_release_ram_cache() after multifd threads terminate", 2026 series). A channel holds a packet of
    // checkpoint pages when the secondary is told to take over; it then writes into a freed cache and
    // the secondary dies (the engine aborts as a use-after-free would).
    ...COLO_BASE,
    name: "/migration/regressions/colo-cache-outlives-multifd-channels",
    why: "the COLO cache must outlive the multifd receive channels (a takeover while one holds a packet)",
    defer: true,
    caps: ["x-colo", "multifd"],
    srcParams: { "multifd-channels": 4 },
    dstParams: { "multifd-channels": 4 },
    workload: { kind: "random", seed: 0, hotPages: 512, hotPercent: 80 },
    colo: { survivor: "secondary", checkpoints: 2, checkpointDelayMs: 50, failoverDuringMultifdPacket: true },
    guards: { side: "dst", defect: "colo-cache-early-release" },
  },
  {
    // Defect class: multifd pages bypassing the COLO cache (QEMU before dd67c149e2 "multifd: Add COLO
    // support"): in COLO state they went straight into the secondary's RAM and were never recorded, so a
    // checkpoint was neither atomic nor flushed: the per-checkpoint check sees the cache and RAM differ.
    ...COLO_BASE,
    name: "/migration/regressions/colo-multifd-pages-go-to-cache",
    why: "multifd pages in COLO state must go to the cache and be recorded, not to the secondary's RAM",
    defer: true,
    caps: ["x-colo", "multifd"],
    srcParams: { "multifd-channels": 4 },
    dstParams: { "multifd-channels": 4 },
    workload: { kind: "random", seed: 0, hotPages: 1024, hotPercent: 80 },
    colo: { survivor: "secondary", checkpoints: 3, checkpointDelayMs: 50 },
    guards: { side: "dst", defect: "multifd-colo-bypass-cache" },
  },
  {
    // Defect class: multifd zero pages not recorded in the COLO bitmap (fixed in v3 of the 2026 series):
    // a page that turns zero on the primary stays non-zero on the secondary after the flush.
    ...COLO_BASE,
    name: "/migration/regressions/colo-multifd-zero-pages-recorded",
    why: "multifd zero pages in COLO state must be recorded in the COLO bitmap so the flush zeroes them",
    defer: true,
    caps: ["x-colo", "multifd"],
    srcParams: { "multifd-channels": 4 },
    dstParams: { "multifd-channels": 4 },
    workload: { kind: "zero-churn", seed: 0, pages: 2048 },
    // The secondary runs its guest 20 times slower, so it touches few of the pages the primary zeroed:
    // only the bitmap makes the flush bring those zeros over.
    dstVcpu: { runMs: 1, sleepMs: 20 },
    colo: { survivor: "secondary", checkpoints: 5, checkpointDelayMs: 50 },
    guards: { side: "dst", defect: "colo-zero-not-recorded" },
  },
  {
    // Defect class: loading a checkpoint's devices over the secondary's running devices without a reset
    // ("colo: Fix crash during device vmstate load", the Q35 crash): the queue device refuses the load.
    ...COLO_BASE,
    name: "/migration/regressions/colo-devices-reset-before-load",
    why: "the secondary must reset its devices before loading a checkpoint's device state over them",
    caps: ["x-colo"],
    workload: { kind: "random", seed: 0, hotPages: 256, hotPercent: 80 },
    colo: { survivor: "secondary", checkpoints: 2, checkpointDelayMs: 50 },
    guards: { side: "dst", defect: "colo-no-device-reset" },
  },
  {
    // Defect class: multifd receive channels that do not wait at the barrier after a SYNC packet.
    // Destination channel 0 holds its first packet (pc.ram pages 0-127, with the guest's hot set) for
    // 1.5 s. The completion round re-sends the hot set on channel 2 (packets go round robin: 258 in the
    // first pass). With the barrier, channel 2 waits at its SYNC until channel 0's SYNC, which follows the
    // delayed packet; without it, the stale first-pass copy lands last and the pages are wrong — what
    // QEMU's per-round sync (commit 294e5a4034) and multifd_recv_sync_main prevent.
    name: "/migration/regressions/multifd-sync-barrier",
    tier: "full",
    flow: "precopy",
    why: "multifd receive channels must wait at the sync barrier, or a stale copy of a page lands last",
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
    flow: "precopy",
    why: "a destination started with -incoming URI must accept migrate-set-capabilities while in setup",
    transport: "unix",
    dstCaps: ["return-path", "pause-before-switchover"],
    srcCaps: ["return-path"],
  },
  {
    // Bug: the destination refused migrate-set-capabilities and multifd parameters while its incoming
    // migration was active ("There's a migration process in progress"); QEMU 10.0 accepts both there
    // (measured: it checks the outgoing migration only). Found by cpr-transfer, whose target's monitor
    // comes up while it is already loading.
    name: "/migration/regressions/dst-caps-while-loading",
    tier: "full",
    flow: "precopy",
    live: true,
    setDstWhileLoading: true,
    why: "a destination that is loading must accept migrate-set-capabilities and -parameters, as QEMU does",
    transport: "unix",
  },
  {
    // Bug (found by the swarm: suspend/source-cont with a connection reset): after a failed migration the
    // check wanted the source's guest running, but a guest that had put itself in S3 rightly goes back to
    // 'suspended' (QEMU restores the run state it had); the case failed a source that was right.
    name: "/migration/regressions/suspended-source-survives-failure",
    tier: "full",
    flow: "precopy",
    why: "a suspended guest whose migration fails stays suspended on the source: alive, not running",
    transport: "unix",
    live: true,
    defer: true,
    exitOnError: false,
    caps: ["return-path"],
    workload: { kind: "a-b", suspendMe: true },
    // The main channel cut past the first megabyte (the guest is in S3 by then: it suspends at its 'B').
    fault: { kind: "truncate", offset: 1 << 20 },
    expect: "fail",
    error: /(Unexpected end of stream|Connection reset by peer \(os error 104\)) while reading/,
    qemuError:
      /error while loading state section id \d+\(\w+\)|load of migration failed: Input\/output error/,
  },
  {
    // Bug (found by the control-plane probes): a destination started with `-incoming URI` answered a
    // second migrate-incoming with "'-incoming' was not specified on the command line"; QEMU 7.2 and 10.0
    // answer "The incoming migration has already been started" (its one start was spent at boot). The
    // defect class: the once check missing (QEMU 5.0 fixed a check that set an error without failing).
    ...CONTROL_BASE,
    name: "/migration/regressions/incoming-once",
    why: "a second migrate-incoming is refused as already started, on a destination started with -incoming " +
      "URI, in setup and while it loads",
    probes: [0, 200, 1000].map((atMs) => ({ atMs, side: "dst", kind: "incoming-again" })),
    guards: { side: "dst", defect: "incoming-once-not-enforced" },
  },
  {
    // Defect class: capabilities changed while the migration thread runs (migration_is_running unchecked).
    ...CONTROL_BASE,
    name: "/migration/regressions/caps-refused-while-running",
    why: "migrate-set-capabilities is refused while a migration runs (a capability the migration thread " +
      "read at the start must not change under it), and taken before it starts and after it ends",
    probes: [0, 200, 1000, 2000].map((atMs) => ({ atMs, side: "src", kind: "caps-same" })),
    guards: { side: "src", defect: "caps-while-running" },
  },
  {
    // Defect class: migrate-continue answering as if it had continued a migration that never paused.
    ...CONTROL_BASE,
    name: "/migration/regressions/continue-checks-state",
    why: "migrate-continue outside the state it names is refused with the migration's actual status",
    probes: [0, 200, 1000].map((atMs) => ({ atMs, side: "src", kind: "continue" })),
    guards: { side: "src", defect: "continue-any-state" },
  },
];
