/**
 * Postcopy cases (upstream's postcopy-tests.c), plus what upstream does not cover: a guest that checks
 * every read it makes on the destination (the versions program), a channel failure at each step of a
 * recovery, migrate_cancel in every postcopy status, and a destination that cannot do postcopy.
 */
import type { MigrationCase } from "../harness/families/mod.ts";
import type { PostcopyCase } from "../harness/families/postcopy/case.ts";

/** test_postcopy_common's set-up: the destination listens on TCP port 0 after migrate-incoming. */
function postcopy(name: string, why: string, opts: Partial<PostcopyCase> = {}): PostcopyCase {
  return { name, tier: "full", flow: "postcopy", why, transport: "tcp", defer: true, ...opts };
}

/** A guest that checks each read against its own journal, on a destination slow enough to fault. */
const VERSIONS: Partial<PostcopyCase> = {
  workload: { kind: "versions", seed: 0, pages: 8192 },
  // Two precopy passes of its 32 MiB in about a second; postcopy's background stream slow enough to fault.
  srcParams: { "max-bandwidth": 64_000_000 },
  postcopyBandwidth: 2_000_000,
  expectFaults: true,
};

const upstream: PostcopyCase[] = [
  postcopy(
    "/migration/postcopy/plain",
    "the destination runs before its RAM has arrived: every page it faults on or receives in the background " +
      "is the source's last version, none lost, none twice",
    { tier: "smoke" },
  ),
  postcopy(
    "/migration/postcopy/suspend",
    "a guest asleep in ACPI S3 when postcopy starts: the destination runs with pages missing, so it must " +
      "resume into 'suspended' (not running), and woken it boots again, faulting the pages it touches",
    { workload: { kind: "a-b", suspendMe: true } },
  ),
  postcopy(
    "/migration/postcopy/recovery/plain",
    "a paused postcopy resumes on a new channel: the received bitmaps decide what is sent again, nothing " +
      "lost or duplicated across the break",
    { recovery: "plain" },
  ),
  postcopy(
    "/migration/postcopy/preempt/plain",
    "requested pages overtake the background stream on the preempt channel without racing it",
    { preempt: true },
  ),
  postcopy(
    "/migration/postcopy/preempt/recovery/plain",
    "a recovery re-establishes the preempt channel as well as the main one",
    { preempt: true, recovery: "plain" },
  ),
  postcopy(
    "/migration/postcopy/recovery/double-failures/handshake",
    "a recovery whose handshake fails (the source paused in postcopy-recover) can be recovered again",
    { recovery: "double-failure-handshake" },
  ),
  postcopy(
    "/migration/postcopy/recovery/double-failures/reconnect",
    "a recovery whose connection cannot be made returns to postcopy-paused and can be recovered again",
    { recovery: "double-failure-reconnect" },
  ),
  postcopy(
    "/migration/multifd+postcopy/plain",
    "every multifd page has landed before the destination listens: none overwrites a page placed later",
    { caps: ["multifd"] },
  ),
  postcopy(
    "/migration/multifd+postcopy/preempt/plain",
    "multifd before the switch, then requested pages on the preempt channel",
    { caps: ["multifd"], preempt: true },
  ),
];

/** Upstream's postcopy TLS paths: every channel (main, preempt, the recovery's new ones) a PSK session. */
const PSK = { tls: { psk: "match" as const } };
const tls: PostcopyCase[] = [
  postcopy("/migration/postcopy/tls/psk", "postcopy with every channel a TLS session (PSK)", PSK),
  postcopy(
    "/migration/postcopy/recovery/tls/psk",
    "a recovery's new channel is a TLS session too, and the stream resumes inside it",
    { ...PSK, recovery: "plain" },
  ),
  postcopy(
    "/migration/postcopy/preempt/tls/psk",
    "the preempt channel is a TLS session of its own, its pages decrypted apart from the main stream",
    { ...PSK, preempt: true },
  ),
  postcopy(
    "/migration/postcopy/preempt/recovery/tls/psk",
    "a recovery re-establishes both the main and the preempt channel as TLS sessions",
    { ...PSK, preempt: true, recovery: "plain" },
  ),
  postcopy(
    "/migration/multifd+postcopy/tcp/tls/psk/match",
    "multifd channels and then postcopy, every channel a TLS session",
    { ...PSK, caps: ["multifd"] },
  ),
  postcopy(
    "/migration/multifd+postcopy/recovery/tls/psk",
    "multifd before the switch, then a recovery of the postcopy channel, all over TLS",
    { ...PSK, caps: ["multifd"], recovery: "plain" },
  ),
  postcopy(
    "/migration/multifd+postcopy/preempt/recovery/tls/psk",
    "multifd, the preempt channel and a recovery of both, all over TLS",
    { ...PSK, caps: ["multifd"], preempt: true, recovery: "plain" },
  ),
];

const beyond: PostcopyCase[] = [
  postcopy(
    "/migration/postcopy/unix/plain",
    "postcopy over a unix socket (the return path shares the connection)",
    { transport: "unix" },
  ),
  postcopy(
    "/migration/postcopy/faults/versions",
    "a page read on the destination before it was placed, or placed from a stale copy, is a version the " +
      "guest did not last write (it panics)",
    VERSIONS,
  ),
  postcopy(
    "/migration/postcopy/preempt/faults/versions",
    "urgent pages on the preempt channel and background pages on the main one never deliver a stale copy",
    { ...VERSIONS, preempt: true },
  ),
  postcopy(
    "/migration/multifd+postcopy/faults/versions",
    "pages sent by multifd before the switch and faulted after it are all the source's last version",
    { ...VERSIONS, caps: ["multifd"] },
  ),
  postcopy(
    "/migration/postcopy/faults/request-crosses-page",
    "the guest faults on a page the source has already sent: the request crosses its page on the way, the " +
      "source must not send it again (a second placement) and the arriving page must wake the guest",
    // In the simulation, the guest runs at a third of the points where a page has arrived, unmapped.
    { ...VERSIONS, windows: ["request-crosses-page"], simInterleavePercent: 30 },
  ),
  postcopy(
    "/migration/postcopy/faults/discarded-page",
    "the guest faults on a page whose precopy copy the switch discarded: the request must bring the " +
      "source's newer copy, never the dropped one",
    { ...VERSIONS, windows: ["fault-on-discarded"] },
  ),
  postcopy(
    "/migration/postcopy/recovery/versions",
    "pages requested before the break are asked again after it, and a page in flight when it broke is sent " +
      "again (the received bitmap) — the guest never reads a stale or missing page",
    { ...VERSIONS, recovery: "plain" },
  ),
  ...(["postcopy-recv-bitmap", "postcopy-bitmaps-reloaded", "postcopy-resume-ack"] as const).map((step) =>
    postcopy(
      `/migration/postcopy/recovery/fail-at/${step.replace("postcopy-", "")}`,
      `a channel failure at ${step} in the recovery's handshake returns both sides to postcopy-paused, ` +
        "and the next recovery completes with nothing lost",
      { recovery: "plain", failAt: step },
    )
  ),
  postcopy(
    "/migration/postcopy/cancel/active",
    "migrate_cancel in postcopy-active is refused: the guest runs on the destination and cannot come back",
    { cancelIn: ["postcopy-active"], postcopyBandwidth: 4096 },
  ),
  postcopy(
    "/migration/postcopy/cancel/paused",
    "migrate_cancel in postcopy-paused is refused, and the recovery still completes",
    { recovery: "plain", cancelIn: ["postcopy-active", "postcopy-paused"] },
  ),
  postcopy(
    "/migration/postcopy/cancel/recover",
    "migrate_cancel in postcopy-recover is refused, and the next recovery still completes",
    { recovery: "double-failure-handshake", cancelIn: ["postcopy-recover"] },
  ),
  postcopy(
    "/migration/postcopy/bad-peer/no-postcopy-ram",
    "a destination without postcopy-ram refuses the advise at once, before any page, and the source " +
      "survives with its guest running",
    {
      dstWithoutPostcopy: true,
      exitOnError: false,
      expect: "fail",
      error: /RAM postcopy is disabled but have 16 byte advise/,
    },
  ),
];

export const POSTCOPY_CASES: MigrationCase[] = [...upstream, ...tls, ...beyond];
