/** Precopy cases (upstream precopy-tests.c and file-tests.c), plus machine-fixture variants. */
import type { MigrationCase } from "../harness/families/mod.ts";

const base: MigrationCase[] = [
  {
    name: "/migration/precopy/unix/plain",
    tier: "smoke",
    flow: "precopy",
    transport: "unix",
    live: true,
    why: "pages dirtied after they were sent must be sent again (the marker proves a second pass happened)",
  },
  {
    name: "/migration/dirty_ring",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    dirtyRingSize: 4096,
    why: "the vCPU logs its writes on KVM's dirty ring, not the bitmap: each sync must reap the ring first " +
      "(a page still on the ring is dirty too), and a full ring stalls the vCPU until it is reaped",
  },
  {
    name: "/migration/dirty_ring/random",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    dirtyRingSize: 1024,
    workload: { kind: "random", seed: 0, hotPercent: 0 },
    why:
      "beyond upstream: random writes over all of RAM on a small dirty ring: at each sync many pages sit " +
      "on the ring, written once and not yet reaped — a sync that does not reap it first never sends them " +
      "(caught between engine processes; the simulated links send in zero virtual time, so no write falls " +
      "between a page's send and the stop)",
  },
  {
    name: "/migration/precopy/unix/suspend/live",
    tier: "smoke",
    flow: "precopy",
    transport: "unix",
    live: true,
    workload: { kind: "a-b", suspendMe: true },
    why: "a guest asleep in ACPI S3, migrated live: the destination must resume it into 'suspended' (not " +
      "running: the run state travels in the global state), and system_wakeup must then boot it again",
  },
  {
    name: "/migration/precopy/unix/suspend/notlive",
    tier: "smoke",
    flow: "precopy",
    transport: "unix",
    workload: { kind: "a-b", suspendMe: true },
    why: "a suspended guest stopped before migrating: stop makes it 'paused' remembering it slept " +
      "(vm_was_suspended); the destination stays paused, and cont puts it back to sleep, not to run",
  },
  {
    name: "/migration/precopy/unix/suspend/source-cont",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    workload: { kind: "a-b", suspendMe: true },
    contSourceAfter: true,
    why: "beyond upstream: a suspended guest migrated out, then `cont` on the source (a management layer " +
      "taking the guest back when the destination cannot start): it must return to 'suspended' — found " +
      "aborting QEMU 10.0 (no run state transition from postmigrate to suspended)",
  },
  {
    name: "/migration/precopy/tcp/plain",
    tier: "smoke",
    flow: "precopy",
    transport: "tcp",
    why: "the whole stream over TCP with port 0: the port read back from query-migrate, every page exact",
  },
  {
    name: "/migration/precopy/rdma/plain",
    tier: "smoke",
    flow: "precopy",
    transport: "rdma",
    why: "the whole stream over RDMA (the rdma: transport's own framing, pages written into registered " +
      "guest memory): every page exact",
  },
  {
    name: "/migration/precopy/rdma/plain/ipv6",
    tier: "smoke",
    flow: "precopy",
    transport: "rdma",
    ipv6: true,
    why: "RDMA over the link's IPv6 address: the address parsing and the connection set up for IPv6",
  },
  {
    name: "/migration/precopy/file",
    tier: "smoke",
    flow: "file",
    stopSrc: true,
    why: "a stream saved to a file and loaded from it gives the same guest (no return path, no peer)",
  },
  {
    name: "/migration/auto_converge",
    tier: "full",
    flow: "auto-converge",
    transport: "unix",
    caps: ["auto-converge", "pause-before-switchover"],
    why: "a guest that dirties faster than the link sends: the source must throttle the vCPU, from " +
      "cpu-throttle-initial up by cpu-throttle-increment, never past max-cpu-throttle, keep syncing while " +
      "throttled, and still reach the switchover once the settings allow it",
  },
  {
    name: "/migration/precopy/tcp/plain/switchover-ack",
    tier: "full",
    flow: "precopy",
    transport: "tcp",
    live: true,
    caps: ["return-path", "switchover-ack"],
    why: "switchover-ack on both sides: the destination acks over the return path as soon as it opens " +
      "(no device here needs to approve), and the live source switches over only once the ack came",
  },
  {
    name: "/migration/precopy/tcp/plain/switchover-ack/held",
    tier: "full",
    flow: "precopy",
    transport: "tcp",
    live: true,
    caps: ["return-path", "switchover-ack"],
    holdSwitchoverAck: true,
    why: "beyond upstream: the destination's ack held back (as a device not ready would hold it): the " +
      "source converges but must keep iterating, 'active', until the ack comes, then complete",
  },
  {
    name: "/migration/precopy/file/offset",
    tier: "full",
    flow: "file",
    fileOffset: 4096,
    stopSrc: false,
    why: "file:...,offset=N writes the stream at N, leaves the bytes before it alone, and loads from N",
  },
  {
    name: "/migration/precopy/file/offset/bad",
    tier: "full",
    flow: "file",
    fileOffset: "0x20M",
    expect: "qmp-error",
    error: /file URI has bad offset 0x20M/,
    why: "a malformed file offset is refused by migrate with a precise error, before anything is written",
  },
  {
    name: "/migration/precopy/unix/non-converge/raise-bandwidth",
    tier: "full",
    flow: "converge-after-raise",
    transport: "unix",
    iterations: 3,
    why: "at 3 MB/s and 1 ms downtime the a-b guest dirties memory faster than it can be sent; " +
      "the migration must keep iterating, then complete once bandwidth and downtime are raised",
  },
  {
    name: "/migration/precopy/unix/non-converge/dirty-pages-rate",
    tier: "full",
    flow: "converge-after-raise",
    transport: "unix",
    srcParams: { "max-bandwidth": 60_000_000 },
    iterations: 2,
    expectDirtyPagesRate: true,
    why: "at 60 MB/s an a-b pass takes ~1.8 s: dirty-pages-rate must be reported after a sync and " +
      "still be reported between syncs, as QEMU keeps it until the next sync",
  },
  {
    name: "/migration/precopy/unix/pause-before-switchover",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    caps: ["pause-before-switchover"],
    why: "the source must stop in pre-switchover and finish only after migrate-continue",
  },
  {
    name: "/migration/precopy/unix/xbzrle",
    tier: "slow",
    flow: "precopy",
    transport: "unix",
    live: true,
    iterations: 2,
    caps: ["xbzrle"],
    srcParams: { "xbzrle-cache-size": 33554432 },
    expectXbzrlePages: true,
    // The pass wait honours this limit: the first pass alone is ~44 s at 3 MB/s, the case ~84 s here.
    timeoutMs: 180_000,
    why: "upstream's case: live at 3 MB/s with two extra passes (about 30 s a pass, hence slow)",
  },
  {
    name: "/migration/precopy/unix/xbzrle/passes",
    tier: "full",
    flow: "converge-after-raise",
    transport: "unix",
    iterations: 4,
    caps: ["xbzrle"],
    srcParams: { "xbzrle-cache-size": 33554432 },
    expectXbzrlePages: true,
    why: "the same at 200 MB/s: four passes of the a-b guest, whose pages change one byte per pass, " +
      "so every page after the first two rounds goes as a small delta",
  },
  {
    name: "/migration/precopy/unix/xbzrle/small-cache",
    tier: "full",
    flow: "converge-after-raise",
    transport: "unix",
    iterations: 4,
    caps: ["xbzrle"],
    srcParams: { "xbzrle-cache-size": 1048576 },
    workload: { kind: "random", seed: 0, hotPages: 2048, hotPercent: 90 },
    why: "a 256-slot cache for a 2048-page hot set: misses, the aging rule and overflows all happen",
  },
  {
    name: "/migration/precopy/unix/xbzrle/zero-churn",
    tier: "full",
    flow: "converge-after-raise",
    transport: "unix",
    iterations: 5,
    caps: ["xbzrle"],
    // A slow link: the first pass takes long enough for a bandwidth to be measured, so a pass that
    // sends a few small deltas does not count as converged before the passes were seen.
    srcParams: { "xbzrle-cache-size": 33554432, "max-bandwidth": 1_000_000 },
    workload: { kind: "zero-churn", seed: 0, pages: 256, restore: true },
    expectXbzrlePages: true,
    simInterleavePercent: 50,
    why: "a hot set that turns zero and back to data it held before, rewritten while XBZRLE runs: the " +
      "cache must hold exactly what the destination has (a page sent ZERO, a page written while it is " +
      "copied or sent), or a later delta against it, or no delta at all, leaves the destination stale",
  },
  {
    name: "/migration/precopy/unix/zero-churn",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    workload: { kind: "zero-churn", seed: 0, pages: 2048 },
    why: "pages that held data turn zero while the migration runs: their ZERO record must clear the " +
      "destination's copy (ram_handle_zero), as a destination's RAM is not zero once a page arrived",
  },

  {
    name: "/migration/precopy/unix/write-once",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    machine: "small",
    workload: { kind: "idle" },
    writeOnce: true,
    // 16 MiB at 50 MB/s: a pass takes ~0.3 s, and 100 ms of downtime (5 MB) does not hold the RAM.
    srcParams: { "max-bandwidth": 50_000_000, "downtime-limit": 100 },
    why: "a guest that wrote all its RAM once as the migration started, then went idle: it must converge " +
      "in a few passes, each page sent about twice at most; a page not dirtied since the last sync must " +
      "not be sent again (the dirty log read without being cleared, a KVM dirty-log or dirty-ring reset bug)",
  },
  {
    name: "/migration/precopy/unix/random",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    workload: { kind: "random", seed: 0, hotPages: 512, hotPercent: 90 },
    why: "under a seeded random writer with a hot set many pages are re-sent: none may arrive stale",
  },
  {
    name: "/migration/precopy/unix/random/dirty-bit-order",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    machine: "small",
    // A slow writer spread over all of RAM: a page is written rarely, so a write lost stays lost.
    workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 50 },
    vcpu: { runMs: 1, sleepMs: 50 },
    // In the simulated world every guest write may stop half-way: its data or its dirty bit held back
    // while migration runs (dirty logging starts, a sync, the page's send).
    simInterleavePercent: 100,
    why: "a page write and its dirty bit land one after the other and migration may run in between: the " +
      "bit must follow the data, or a write that lands after its bit was taken (the log started or synced, " +
      "the page sent) is never sent again",
  },
];

/** Every precopy case that does not depend on the default layout also runs on the odd-sized machine. */
const onOddMachine: MigrationCase[] = base
  .filter((c) =>
    !("expect" in c && c.expect !== undefined) && !c.name.includes("non-converge") &&
    c.machine === undefined &&
    // The model cannot run an RDMA case, and QEMU has only the pc machine: a variant nothing runs.
    !("transport" in c && c.transport === "rdma")
  )
  .map((c) => ({
    ...c,
    name: `${c.name}/pc-odd`,
    machine: "pc-odd",
    tier: c.tier === "slow" ? c.tier : "full",
    why: `${c.why}; on three odd-sized blocks (block boundaries, idstr and CONTINUE records)`,
  }));

export const PRECOPY_CASES: MigrationCase[] = [...base, ...onOddMachine];
