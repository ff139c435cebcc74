/**
 * mapped-ram file cases (upstream file-tests.c): the source saves to a file whose RAM pages sit at fixed
 * offsets, with or without multifd, stopped or live; the destination loads it. Plus what upstream does
 * not cover: the capability on one side only, and the combinations QEMU refuses before anything is
 * written. (The plain file: cases are with the precopy ones.)
 */
import type { MigrationCase } from "../harness/families/mod.ts";

/** MULTIFD_TEST_CHANNELS upstream. */
const CHANNELS = 4;
const MULTIFD = { "multifd-channels": CHANNELS };

const upstream: MigrationCase[] = [
  {
    name: "/migration/precopy/file/mapped-ram",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram"],
    stopSrc: true,
    why: "every page lands at its fixed offset and its bitmap bit says whether it is there: a page " +
      "written at the wrong offset, a bit left unset or a zero page not cleared loads a different guest",
  },
  {
    name: "/migration/precopy/file/mapped-ram/live",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram"],
    stopSrc: false,
    why: "a running guest: a page dirtied after it was written is written again over its old copy, and " +
      "a page that turned zero must lose its bit, or the load gives the older page",
  },
  {
    name: "/migration/multifd/file/mapped-ram/ignore-shared",
    tier: "full",
    flow: "file",
    // As upstream: no shared memory and no multifd despite the path; the capability alone changes the
    // block list (each block's address before its mapped-ram header).
    caps: ["mapped-ram", "x-ignore-shared"],
    stopSrc: true,
    why: "x-ignore-shared puts each block's address before its mapped-ram header: a loader that reads " +
      "the header first takes the address for it and refuses the file",
  },
  {
    name: "/migration/multifd/file/mapped-ram/ignore-shared/shmem",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "x-ignore-shared"],
    memType: "shmem",
    stopSrc: true,
    why: "a block in shared memory has a header with no place in the file (both offsets 0) and no " +
      "bitmap: a source that reserves or writes one, or a loader that reads pages for it, fails",
  },
  {
    name: "/migration/multifd/file/mapped-ram",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: MULTIFD,
    dstParams: MULTIFD,
    stopSrc: true,
    why: "multifd channels write their pages in parallel at their own offsets (no packets) and read " +
      "them back in parallel: a channel's write at a wrong offset or a bit set before its write fails",
  },
  {
    name: "/migration/multifd/file/mapped-ram/dio",
    tier: "smoke",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: { ...MULTIFD, "direct-io": true },
    dstParams: { ...MULTIFD, "direct-io": true },
    stopSrc: true,
    why: "direct-io opens the channels' handles with O_DIRECT: every page write and read must be block " +
      "aligned (the model refuses an unaligned one with EINVAL), the main channel's unaligned stream " +
      "stays on a handle of its own",
  },
  {
    name: "/migration/multifd/file/mapped-ram/live",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: MULTIFD,
    dstParams: MULTIFD,
    stopSrc: false,
    why: "multifd channels rewriting pages a running guest dirties again, synced at each round's end " +
      "without a flag on the main channel",
  },
];

const beyond: MigrationCase[] = [
  ...([["precopy", ["mapped-ram"], {}], ["multifd", ["mapped-ram", "multifd"], MULTIFD]] as const).map((
    [kind, caps, params],
  ): MigrationCase => ({
    name: `/migration/${kind}/file/mapped-ram/zero-churn`,
    tier: "full",
    flow: "file",
    caps: [...caps],
    srcParams: params,
    dstParams: params,
    stopSrc: false,
    workload: { kind: "zero-churn", seed: 0, pages: 512 },
    // In the simulation the guest writes during the pass at every seed (a seed may draw a slow vCPU).
    simInterleavePercent: 100,
    why: "a live guest turns pages zero after they were written: each must lose its bitmap bit (the " +
      `${
        kind === "multifd" ? "channel's zero-page detection" : "main thread's save_zero_page"
      } clears it), ` +
      "or the load reads the older copy still in the file",
  })),
  {
    name: "/migration/precopy/file/mapped-ram/dst-without",
    tier: "full",
    flow: "file",
    srcCaps: ["mapped-ram"],
    stopSrc: true,
    expect: "fail",
    error: /Capability mapped-ram is off, but received capability is on/,
    why: "a destination without mapped-ram must refuse the file from its configuration section, " +
      "not read page offsets as a stream, and stay usable",
  },
  {
    name: "/migration/precopy/file/mapped-ram/offset",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: MULTIFD,
    dstParams: MULTIFD,
    fileOffset: 4096,
    stopSrc: true,
    why: "with file:...,offset=N the header's bitmap and page offsets are absolute file offsets past N, " +
      "and the bytes before N stay untouched",
  },
  {
    name: "/migration/multifd/file/mapped-ram/zlib",
    tier: "full",
    flow: "file",
    caps: ["mapped-ram", "multifd"],
    srcParams: { ...MULTIFD, "multifd-compression": "zlib" },
    stopSrc: true,
    expect: "qmp-error",
    error: /Cannot use compression with mapped-ram/,
    why: "mapped-ram writes raw pages at fixed offsets: migrate refuses multifd compression with it",
  },
  {
    name: "/migration/multifd/file/plain",
    tier: "full",
    flow: "file",
    caps: ["multifd"],
    stopSrc: true,
    expect: "qmp-error",
    error: /Migration requires multi-channel URIs \(e\.g\. tcp\)/,
    why: "multifd on a file needs mapped-ram: migrate refuses it rather than writing one stream",
  },
];

export const FILE_CASES: MigrationCase[] = [...upstream, ...beyond];
