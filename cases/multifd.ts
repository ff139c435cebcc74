/**
 * Multifd cases (upstream precopy-tests.c and compression-tests.c), plus what upstream does not cover:
 * unix sockets, each compression × each zero-page mode, channel counts, zero-heavy and incompressible
 * guests, bad input on the channels, and the sync barrier under uneven channel speeds.
 */
import { HARDWARE_COMPRESSION, type HardwareCompression, ZERO_PAGE_DETECTION } from "../engine/options.ts";
import type { MigrationCase } from "../harness/families/mod.ts";
import type { MultifdCancelCase } from "../harness/families/multifd/case.ts";
import type { PrecopyCase } from "../harness/families/precopy/case.ts";

/** MULTIFD_TEST_CHANNELS upstream. */
const CHANNELS = 4;

type Compression = "none" | "zlib" | "zstd" | HardwareCompression;

/** migrate_hook_start_precopy_tcp_multifd_common: the method on both sides, `defer` + migrate-incoming. */
function multifd(
  name: string,
  opts: Partial<PrecopyCase> & { compression?: Compression; channels?: number; level?: number },
): PrecopyCase {
  const { compression = "none", channels = CHANNELS, level, ...rest } = opts;
  const params: PrecopyCase["srcParams"] = {
    "multifd-channels": channels,
    "multifd-compression": compression,
  };
  if (level !== undefined && compression === "zlib") params["multifd-zlib-level"] = level;
  if (level !== undefined && compression === "zstd") params["multifd-zstd-level"] = level;
  const zero = rest.srcParams?.["zero-page-detection"];
  return {
    name,
    tier: "full",
    flow: "precopy",
    why:
      `${rest.live ? "pages re-sent after the guest dirtied them" : "every page"} must arrive exact over ` +
      `${channels} channel(s) with compression ${compression}${level ? ` level ${level}` : ""}` +
      (zero ? ` and zero-page detection ${zero}` : ""),
    transport: "tcp",
    defer: true,
    caps: ["multifd"],
    ...rest,
    srcParams: { ...params, ...rest.srcParams },
    dstParams: { ...params, ...rest.dstParams },
  };
}

/** A bad-input case: the destination must fail with `error` and stay up; the source fails and survives. */
function badInput(name: string, error: RegExp, opts: Partial<PrecopyCase> & { compression?: Compression }) {
  return multifd(`/migration/multifd/bad/${name}`, {
    why: `bad input on the multifd channels (${name}) is refused with a precise error; the source ` +
      "fails and keeps its guest",
    live: true,
    exitOnError: false,
    caps: ["multifd", "return-path"],
    expect: "fail",
    error,
    ...opts,
  });
}

/** test_multifd_tcp_cancel: cancel, the old destination exits, migrate again to a new one. */
const cancel: MultifdCancelCase = {
  name: "/migration/multifd/tcp/plain/cancel",
  tier: "smoke",
  flow: "multifd-cancel",
  transport: "tcp",
  defer: true,
  caps: ["multifd"],
  srcParams: { "multifd-channels": 16, "multifd-compression": "none" },
  dstParams: { "multifd-channels": 16, "multifd-compression": "none" },
  why: "a cancelled multifd migration ends the old destination (status 1) and a new one then completes",
};

const upstream: MigrationCase[] = [
  multifd("/migration/multifd/tcp/uri/plain/none", {
    tier: "smoke",
    live: true,
    why: "live, as upstream: pages are re-sent over the channels after the guest dirtied them",
  }),
  multifd("/migration/multifd/tcp/channels/plain/none", { live: true, migrateChannels: true }),
  multifd("/migration/multifd/tcp/plain/zero-page/legacy", {
    live: true,
    srcParams: { "zero-page-detection": "legacy" },
  }),
  multifd("/migration/multifd/tcp/plain/zero-page/none", {
    live: true,
    srcParams: { "zero-page-detection": "none" },
  }),
  multifd("/migration/multifd/tcp/plain/zlib", { tier: "smoke", compression: "zlib", level: 2 }),
  multifd("/migration/multifd/tcp/plain/zstd", { compression: "zstd", level: 2 }),
  // The same at the default level 1: what QEMU 7.2 can run (it does not apply a level set by QMP).
  // Accelerator methods (compression-tests.c): the model has no such device and says so in --list; a
  // QEMU built with one runs them (upstream's qatzip case also sets multifd-qatzip-level=2, a parameter
  // only such a build has: here the method's default level).
  ...HARDWARE_COMPRESSION.map((compression) =>
    multifd(`/migration/multifd/tcp/plain/${compression}`, { compression })
  ),
  multifd("/migration/multifd/tcp/plain/zlib/default-level", { compression: "zlib" }),
  multifd("/migration/multifd/tcp/plain/zstd/default-level", { compression: "zstd" }),
  cancel,
  // postcopy-ram on, never started: multifd with the capability runs as precopy (compression-tests.c,
  // precopy-tests.c).
  multifd("/migration/multifd+postcopy/tcp/plain/zstd", {
    compression: "zstd",
    level: 2,
    caps: ["multifd", "postcopy-ram"],
    why: "postcopy-ram on (the advise sent, never started) changes nothing of a multifd zstd precopy",
  }),
  {
    ...cancel,
    name: "/migration/multifd+postcopy/tcp/plain/cancel",
    caps: ["multifd", "postcopy-ram"],
    why:
      "a cancelled multifd migration with postcopy-ram on ends the old destination and a new one completes",
  },
];

const COMPRESSIONS: Compression[] = ["none", "zlib", "zstd"];
const ZERO_MODES = ZERO_PAGE_DETECTION;

const beyond: PrecopyCase[] = [
  ...COMPRESSIONS.flatMap((compression) =>
    ZERO_MODES.map((zero) =>
      multifd(`/migration/multifd/unix/${compression}/zero-page/${zero}`, {
        transport: "unix",
        compression,
        srcParams: { "zero-page-detection": zero },
      })
    )
  ),
  ...[1, 2, 8, 16].map((channels) =>
    multifd(`/migration/multifd/tcp/channels/${channels}`, { channels, live: true })
  ),
  ...COMPRESSIONS.map((compression) =>
    multifd(`/migration/multifd/unix/${compression}/zero-heavy`, {
      transport: "unix",
      compression,
      live: true,
      workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 95 },
      why: "most of RAM stays zero: zero pages travel as offsets only",
    })
  ),
  ...COMPRESSIONS.map((compression) =>
    multifd(`/migration/multifd/unix/${compression}/incompressible`, {
      transport: "unix",
      compression,
      workload: { kind: "idle" },
      fillRandom: true,
      why: "RAM full of random bytes: compression cannot shrink the packets",
    })
  ),
  ...(["multifd", "legacy"] as const).map((zero) =>
    multifd(`/migration/multifd/tcp/zero-churn/${zero}`, {
      live: true,
      workload: { kind: "zero-churn", seed: 0, pages: 2048 },
      srcParams: { "zero-page-detection": zero },
      why: `pages that held data turn zero during a multifd migration (zero-page detection ${zero}): the ` +
        "destination must clear a page it received before (the zero_pages field, the receivedmap rule)",
    })
  ),
  multifd("/migration/multifd/tcp/sync-barrier/uneven-channels", {
    live: true,
    workload: { kind: "random", seed: 0, hotPages: 32, hotPercent: 100 },
    dstFaults: [{ kind: "multifd-channel-delay", channel: 0, delayMs: 1500 }],
    why: "destination channel 0 holds its first packet (with the guest's hot set) for 1.5 s while the " +
      "completion round re-sends the hot set on another channel: only the SYNC/MULTIFD_FLUSH barrier " +
      "keeps the stale copy from landing last (cases/regressions proves it fails without the barrier)",
  }),
  multifd("/migration/multifd/tcp/sync-barrier/slow-channel", {
    live: true,
    // Three channels: a round of pages fills packets that land on another channel in the next round.
    channels: 3,
    workload: { kind: "random", seed: 0, hotPages: 2048, hotPercent: 100 },
    dstFaults: [{ kind: "multifd-channel-slow", channel: 0, delayMs: 4 }],
    why: "destination channel 0 is slower than the others on every packet (a congested path, a starved " +
      "receive thread) while the guest rewrites a hot set: the barrier must hold every channel to the " +
      "main channel's round, or a page's previous-round copy on the slow channel lands after its next " +
      "copy on a fast one",
  }),
];

const bad: PrecopyCase[] = [
  badInput("packet-magic", /multifd channel 0: received packet magic 11223345 and expected magic 11223344/, {
    fault: { kind: "corrupt", channel: 0, offset: 64 + 3, xor: 0x01 },
    // QEMU does not say which channel.
    qemuError: /received packet magic 11223345 and expected magic 11223344/,
  }),
  badInput("packet-version", /multifd channel 1: received packet version 3 and expected version 1/, {
    fault: { kind: "corrupt", channel: 1, offset: 64 + 7, xor: 0x02 },
    qemuError: /received packet version 3 and expected version 1/,
  }),
  // The last channel's handshake id (byte 24) turned from 3 into 4, one past the last of 4 channels.
  badInput("channel-id", /received channel id 4 is greater than number of channels 4/, {
    fault: { kind: "corrupt", channel: 3, offset: 24, xor: 0x07 },
  }),
  // The last channel's id turned from 3 into 0: channel 0 twice.
  badInput("channel-id-twice", /multifd: received channel id 0 twice/, {
    fault: { kind: "corrupt", channel: 3, offset: 24, xor: 0x03 },
    qemuError: /multifd: received id '0' already setup/,
  }),
  badInput("uuid", /multifd: received uuid '11111111-.*' and expected uuid '22222222-/, {
    uuid: { src: "11111111-1111-1111-1111-111111111111", dst: "22222222-2222-2222-2222-222222222222" },
  }),
  badInput("compression-flag", /flags received 2 flags expected 4/, {
    srcParams: { "multifd-compression": "zlib" },
    dstParams: { "multifd-compression": "zstd" },
  }),
  // The model's fault (the block's length), or its wire form loaded by the model (the top byte of QEMU's
  // first offset flipped: the qemu-to-engine pair).
  badInput("offset", /multifd channel \d: offset too long (8000000|ff00000000000000) \(block pc.ram\)/, {
    // On the wire: the top byte of the first page offset in channel 0's first packet with pages (a
    // multifd place with no channel named is channel 0's).
    fault: { kind: "multifd-offset", at: { point: "multifd-offset", byte: 0 } },
    qemuError: /multifd: offset too long \d+ \(max [0-9a-f]+\)/,
  }),
  badInput(
    "zlib-corrupt-payload",
    /multifd channel 0: multifd zlib: (packet decompressed to 0 bytes|.*header)/,
    {
      compression: "zlib",
      // Zero pages as data, so channel 0's first data packet follows its setup SYNC: past the handshake,
      // the SYNC packet and that packet's header lies the payload (byte 1: the zlib header's FLG).
      srcParams: { "zero-page-detection": "none" },
      fault: {
        kind: "corrupt",
        channel: 0,
        offset: 64 + 1344 + 1344 + 1,
        xor: 0xff,
        at: { point: "multifd-payload", byte: 1 },
      },
      qemuError: /multifd \d+: inflate returned -?\d+ instead of Z_OK/,
    },
  ),
  // The source drops channel 0 mid-payload, fails, and closes the main channel too: which end the
  // destination reads first is a race (the simulated world runs both orders), and QEMU keeps the first
  // error. Either way the load fails with a precise error and the source keeps its guest.
  badInput(
    "zstd-truncated-payload",
    /while reading compressed payload on multifd channel 0|Unexpected end of stream while reading section type/,
    {
      compression: "zstd",
      srcParams: { "zero-page-detection": "none" },
      fault: {
        kind: "truncate",
        channel: 0,
        offset: 64 + 1344 + 1344 + 16,
        at: { point: "multifd-payload", byte: 16 },
      },
      // QEMU reads the channel's end, or the main channel's, first; or names no cause.
      qemuError:
        /Unexpected end-of-file before all data were read|Read section footer failed|load of migration failed/,
    },
  ),
  badInput("missing-channel", /multifd: only 3 of 4 channels connected within 5000 ms of the main channel/, {
    fault: { kind: "multifd-missing-channel" },
    timeoutMs: 60_000,
  }),
];

/** Live for several passes before converging: a page must be sent as data and later again as zero. */
const passes: MigrationCase[] = (["multifd", "legacy"] as const).map((zero) => ({
  name: `/migration/multifd/tcp/zero-churn/${zero}/passes`,
  tier: "full",
  flow: "converge-after-raise",
  transport: "tcp",
  defer: true,
  caps: ["multifd"],
  iterations: 4,
  // A slow link, so each pass takes time and the guest turns pages zero between them.
  srcParams: { "multifd-channels": CHANNELS, "zero-page-detection": zero, "max-bandwidth": 4_000_000 },
  dstParams: { "multifd-channels": CHANNELS },
  workload: { kind: "zero-churn", seed: 0, pages: 512 },
  why: `pages sent as data in one pass turn zero before the next (zero-page detection ${zero}), over ` +
    "several passes: the destination must clear a page it received before (the receivedmap rule)",
}));

export const MULTIFD_CASES: MigrationCase[] = [...upstream, ...beyond, ...passes, ...bad];
