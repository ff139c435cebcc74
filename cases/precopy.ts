/** Precopy cases (upstream precopy-tests.c and file-tests.c), plus machine-fixture variants. */
import type { MigrationCase } from "../harness/case.ts";

const base: MigrationCase[] = [
  {
    name: "/migration/precopy/unix/plain",
    tier: "smoke",
    transport: "unix",
    live: true,
    why: "live: the marker technique proves a page sent in pass 1 is re-sent after the guest dirtied it",
  },
  { name: "/migration/precopy/tcp/plain", tier: "smoke", transport: "tcp" },
  { name: "/migration/precopy/file", tier: "smoke", transport: "file", stopSrc: true },
  {
    name: "/migration/precopy/file/offset",
    tier: "full",
    transport: "file",
    fileOffset: 4096,
    stopSrc: false,
  },
  {
    name: "/migration/precopy/file/offset/bad",
    tier: "full",
    transport: "file",
    fileOffset: "0x20M",
    expect: "qmp-error",
    error: /file URI has bad offset 0x20M/,
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
    transport: "unix",
    caps: ["pause-before-switchover"],
    why: "not upstream as such: the pre-switchover pause with migrate-continue",
  },
  {
    name: "/migration/precopy/unix/xbzrle",
    tier: "slow",
    transport: "unix",
    live: true,
    iterations: 2,
    caps: ["xbzrle"],
    srcParams: { "xbzrle-cache-size": 33554432 },
    expectXbzrlePages: true,
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
    name: "/migration/precopy/unix/random",
    tier: "full",
    transport: "unix",
    live: true,
    workload: { kind: "random", seed: 0, hotPages: 512, hotPercent: 90 },
    why: "live under a seeded random writer with a hot set: many pages are re-sent",
  },
];

/** Every precopy case that does not depend on the default layout also runs on the odd-sized machine. */
const onOddMachine: MigrationCase[] = base
  .filter((c) => c.expect === undefined && !c.name.includes("non-converge"))
  .map((c) => ({
    ...c,
    name: `${c.name}/pc-odd`,
    machine: "pc-odd",
    tier: c.tier === "slow" ? c.tier : "full",
  }));

export const PRECOPY_CASES: MigrationCase[] = [...base, ...onOddMachine];
