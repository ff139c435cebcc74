/**
 * QEMU bugs this harness observed, as expected failures: a case that hits one on a version in its range
 * reports XFAIL when it fails with the bug's symptom (any other failure stays a failure) and, when the
 * bug did not strike, XPASS — or, for an intermittent bug, a pass with a note (known_bug.ts).
 *
 * Ranges hold the versions the bug was seen on, checked against the probed version of the side that
 * shows it; a version outside them runs the case plainly, so a bug that spreads or returns fails loudly.
 */
import type { AnyCase } from "../case.ts";
import { compareVersions, describeProbe, parseVersion, type QemuProbe, versionText } from "./qemu_probe.ts";
import type { KnownBug } from "./world.ts";

/** Inclusive on both ends, MAJOR.MINOR[.MICRO]; "7.2" through "7.2" is every 7.2.x. */
export interface VersionRange {
  from: string;
  through: string;
}

export interface QemuBug {
  id: string;
  summary: string;
  /** The cases that show it (by name, or every case a pattern matches). */
  cases: readonly string[] | RegExp;
  /** Whose binary has the bug: its probed version is checked against `range`. */
  /** "either": the bug is in code both roles run (e.g. at exit), and a side in the range shows it. */
  side: "src" | "dst" | "either";
  range: VersionRange;
  /** Only when the other side's version lies here too (a cross-version incompatibility). */
  peer?: VersionRange;
  symptom: RegExp;
  intermittent?: boolean;
  fix?: string;
  /** Only when the pair runs under this accelerator (the one QEMU picks from those asked for). */
  accel?: string;
  /** Only when the pair's machine type matches. */
  machine?: RegExp;
  /** A hang: the case's waits give up after this many ms (KnownBug.hangMs). */
  hangMs?: number;
  /**
   * As a destination it shows only once the destination's guest runs: a QEMU destination of the model's
   * source (whose guest it never runs) cannot show it.
   */
  destinationShowsOnRun?: boolean;
  /**
   * The cases where, as a source, it shows only on the destination's running guest: with the model as
   * that destination (which never runs QEMU's guest) those cannot show it.
   */
  sourceShowsOnTargetRun?: RegExp;
}

/**
 * Every COLO case, and every one over multifd (the regression cases' too): the bugs below strike at COLO's
 * first checkpoint.
 */
const COLO_ANY = /^\/migration\/(colo\/|regressions\/colo-)/;
const COLO_MULTIFD = /^\/migration\/(colo\/multifd\/|regressions\/colo-(multifd-|cache-outlives-multifd))/;

export const QEMU_BUGS: readonly QemuBug[] = [
  {
    id: "qemu-mapped-ram-ignore-shared-write",
    summary: "mapped-ram with x-ignore-shared and a block in shared memory: the source writes a bitmap " +
      "for the block it leaves out, which has none, and fails ('Unable to write to file: Bad address'); " +
      "fixed upstream by 'migration: Fix writing mapped_ram + ignore_shared snapshots' (Dec 2025, for " +
      "11.0: such a block's header has both offsets 0 and no place in the file)",
    cases: ["/migration/multifd/file/mapped-ram/ignore-shared/shmem"],
    side: "src",
    range: { from: "9.0", through: "10.2" },
    symptom: /Unable to write to file: Bad address/,
    fix: "11.0",
  },
  {
    id: "qemu-mapped-ram-ignore-shared-read",
    summary: "mapped-ram with x-ignore-shared: the source puts each block's address before its mapped-ram " +
      "header, the destination reads the header first and takes the address for it ('Error reading " +
      "ramblock pc.ram pages, region has bad alignment'); fixed upstream by 'migration: Fix reading " +
      "mapped_ram + ignore_shared snapshots' (Dec 2025, for 11.0), which added the upstream case",
    cases: [
      "/migration/multifd/file/mapped-ram/ignore-shared",
      "/migration/multifd/file/mapped-ram/ignore-shared/shmem",
    ],
    side: "dst",
    range: { from: "9.0", through: "10.2" },
    symptom: /region has bad alignment|Mapped-ram header|load of migration failed/,
    fix: "11.0",
  },
  {
    id: "qemu-calc-dirty-rate-mode-segfault",
    summary: "calc-dirty-rate with mode dirty-ring, or dirty-bitmap with sample-pages, on a VM without " +
      "KVM's dirty ring (TCG here) kills QEMU with a segfault instead of refusing it ('mode dirty-ring is " +
      "not enabled', 'sample-pages is used only in page-sampling mode'); 10.0 refuses both",
    cases: [
      "/migration/dirty_rate/bad/sample-pages-mode",
      "/migration/dirty_rate/bad/dirty-ring-not-enabled",
    ],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    accel: "tcg",
    symptom: /connection closed by source while waiting for calc-dirty-rate/,
  },
  {
    id: "qemu-suspended-runstate-lost",
    summary: "a guest migrated while suspended (ACPI S3) wakes: the source asked for a wakeup before it " +
      "saved its run state, so the destination runs it; `stop` on a suspended guest neither stops it nor " +
      "says STOP; a destination sent 'suspended' by a newer source takes it without a RESUME on cont (fixed in 9.0 by 'migration: preserve suspended runstate' and 'cpus: stop vm in " +
      "suspended runstate', with the vm_was_suspended flag carried in the global state)",
    // Every machine the suspending guest runs on (pc-odd: its RAM size).
    cases: /^\/migration\/(precopy\/unix\/suspend\/(live|notlive|source-cont)|postcopy\/suspend)(\/pc-odd)?$/,
    side: "either",
    range: { from: "7.2", through: "8.2" },
    // A 7.2 destination of a 10.0 source takes the "suspended" it is sent as is and says no RESUME on cont.
    // Seen as a wait that times out; where it is fixed the wait takes about 2 s.
    hangMs: 10_000,
    // The source's woken guest, seen from the source itself once the destination is not run (mixed pairs).
    symptom: new RegExp(
      "the target resumed into 'running'|waiting for event STOP on source|waiting for event RESUME on " +
        "target|after cont the source is 'running', expected 'suspended'",
    ),
    fix: "9.0",
    destinationShowsOnRun: true,
    sourceShowsOnTargetRun: /\/suspend\/live(\/pc-odd)?$|^\/migration\/postcopy\/suspend$/,
  },
  {
    id: "qemu-cont-after-suspended-migration-aborts",
    summary: "a guest that was suspended when it migrated out leaves the source in postmigrate " +
      "remembering it slept (vm_was_suspended); `cont` there then asks for the transition postmigrate -> " +
      "suspended, which the run state table lacks, and QEMU aborts ('invalid runstate transition')",
    cases: [
      "/migration/precopy/unix/suspend/source-cont",
      "/migration/precopy/unix/suspend/source-cont/pc-odd",
    ],
    side: "src",
    range: { from: "10.0", through: "10.0" },
    symptom: /connection closed by source while waiting for cont|invalid runstate transition/,
  },
  {
    id: "qemu-mapped-ram-params-check-reads-old-value",
    summary: "migrate_params_check refuses compression with mapped-ram by reading the current parameters, " +
      "not the new ones: setting multifd-compression zlib is accepted, and every later " +
      "migrate-set-parameters, however unrelated, fails (the check is in options.c since 9.0)",
    cases: ["/migration/multifd/file/mapped-ram/zlib"],
    side: "src",
    range: { from: "10.0", through: "10.0" },
    // The flow's next set (the convergence parameters) is the one refused.
    symptom:
      /migrate-set-parameters failed: GenericError: Mapped-ram only available for non-compressed non-TLS/,
  },
  {
    id: "qemu-postcopy-cancel-accepted",
    summary: "migrate_cancel in postcopy-active, -paused or -recover is accepted (the source goes " +
      "'cancelling') although the guest already runs on the destination and cannot come back; 10.0 " +
      "refuses it",
    cases: [
      "/migration/postcopy/cancel/active",
      "/migration/postcopy/cancel/paused",
      "/migration/postcopy/cancel/recover",
    ],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    symptom: /migrate_cancel in '[a-z-]+' was accepted/,
  },
  ...(["src", "dst"] as const).map((side): QemuBug => ({
    id: `qemu-postcopy-pause-in-recover-refused-${side}`,
    summary: "a recovery whose handshake hangs cannot be interrupted: migrate-pause in postcopy-recover " +
      "fails ('only supported during postcopy-active state'), so the second recovery of upstream's " +
      "double-failure tests never comes; 10.0 pauses it",
    cases: [
      "/migration/postcopy/recovery/double-failures/handshake",
      "/migration/postcopy/recovery/double-failures/reconnect",
      "/migration/postcopy/cancel/recover",
      // A recovery held at a step of its handshake on the wire, then paused: on the source only.
      ...(side === "src"
        ? [
          "/migration/postcopy/recovery/fail-at/recv-bitmap",
          "/migration/postcopy/recovery/fail-at/bitmaps-reloaded",
          "/migration/postcopy/recovery/fail-at/resume-ack",
        ]
        : []),
    ],
    side,
    range: { from: "7.2", through: "7.2" },
    symptom: new RegExp(
      `${side === "src" ? "source" : "target"}: migrate-pause failed: .*only supported during ` +
        "postcopy-active state",
    ),
  })),
  {
    id: "qemu-xbzrle-tcg-pages-lost",
    summary: "XBZRLE under TCG with a guest program that keeps rewriting a hot set: the destination ends " +
      "with stale copies of hot pages (xbzrle/small-cache: the program's own stack and data pages, written " +
      "every iteration, differ after every run), or the hot set stops showing dirty and the migration " +
      "converges early (xbzrle/zero-churn: 'completed' after 4 syncs at 1 MB/s; on a CI runner, small-cache " +
      "too, 'completed' where 'active' was expected). The same guests migrate " +
      "exactly without XBZRLE on 7.2 TCG, with XBZRLE under KVM, and on 10.0.2 under TCG. Root cause not " +
      "identified",
    cases: ["/migration/precopy/unix/xbzrle/small-cache", "/migration/precopy/unix/xbzrle/zero-churn"],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    accel: "tcg",
    symptom:
      /guest RAM differs in \d+ page\(s\) between source and target|the source reached 'completed' after \d+ sync\(s\), before the \d+ awaited|expected 'active' after \d+ passes, got completed/,
  },
  {
    id: "qemu-tcg-passes-pages-lost",
    summary:
      "7.2 under TCG, without XBZRLE too: a live migration that takes passes at 3 MB/s (then raised) " +
      "under the seeded random writer on the 16 MiB machine ends with a few pages stale on the destination " +
      "(low pages 5-6, the program's stack and data, and some of its random pages; 3 of 3 runs, with or " +
      "without control-plane probes). 10.0.2 under TCG migrates the same exactly. Root cause not identified",
    cases: [
      "/migration/regressions/incoming-once",
      "/migration/regressions/caps-refused-while-running",
      "/migration/regressions/continue-checks-state",
    ],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    accel: "tcg",
    symptom: /guest RAM differs in \d+ page\(s\) between source and target/,
    // Every run here (6 of 6) lost pages; how many depends on timing, and a run that loses none passes.
    intermittent: true,
  },
  {
    id: "qemu-xbzrle-tcg-pages-lost-odd",
    summary: "7.2 under TCG, some runs only: XBZRLE with the zero-churn program on the odd-sized machine " +
      "leaves the destination with stale pages (.ci/run 2026-12-08, 7.2 -> 10.0: 5 pages, one that had " +
      "turned zero arrived with its old data; the same case 7.2 -> 7.2 passed in that run). The class of " +
      "qemu-xbzrle-tcg-pages-lost, whose pc cases fail every run. Root cause not identified",
    cases: ["/migration/precopy/unix/xbzrle/zero-churn/pc-odd"],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    accel: "tcg",
    symptom: /guest RAM differs in \d+ page\(s\) between source and target/,
    intermittent: true,
  },
  {
    id: "qemu-xbzrle-tcg-pages-lost-10.0",
    summary:
      "the same class on 10.0.2 under TCG, some runs only: XBZRLE with the zero-churn program on the " +
      "odd-sized machine leaves the destination with stale copies of pages the program rewrote (2 of 12 " +
      "runs QEMU 10.0 -> 10.0, 1 of 6 QEMU 10.0 -> the model, whose destination decodes the same stream " +
      "exactly otherwise: the lost update is the source's). Root cause not identified",
    cases: ["/migration/precopy/unix/xbzrle/zero-churn/pc-odd"],
    side: "src",
    range: { from: "10.0", through: "10.0" },
    accel: "tcg",
    symptom: /guest RAM differs in \d+ page\(s\) between source and target/,
    intermittent: true,
  },
  {
    id: "qemu-postcopy-recovery-bitmap-interrupted-segv",
    summary: "7.2 as a postcopy destination: a recovery whose channel breaks while it sends its received " +
      "bitmap (the proxy holds RP_RECV_BITMAP, a 10.0 source pauses) dies of SIGSEGV after 'Detected IO " +
      "failure for postcopy. Migration paused.' (seen 10.0 -> 7.2, .ci/run-style run of 2026-12-07; a 7.2 " +
      "source cannot pause there, see qemu-postcopy-pause-in-recover-refused-src)",
    cases: ["/migration/postcopy/recovery/fail-at/recv-bitmap"],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    symptom: /target died with exit status 139, SIGSEGV/,
  },
  {
    id: "qemu-multifd-offset-error-hangs-destination",
    summary:
      "7.2: a multifd packet whose page offset lies past its block, or whose zlib payload is corrupt " +
      "(put on the wire by the proxy), stops the destination as a refused packet magic does " +
      "(qemu-multifd-recv-error-hangs-destination): its monitor stops answering and it never reports the " +
      "error; 10.0 reports it ('multifd: offset too long', 'inflate returned -3')",
    cases: ["/migration/multifd/bad/offset", "/migration/multifd/bad/zlib-corrupt-payload"],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    hangMs: 10_000,
    symptom: /waiting for the target to report the error/,
  },
  {
    id: "qemu-multifd-channel-id-off-by-one",
    summary: "a multifd handshake whose channel id equals the number of channels passes the destination's " +
      "range check (multifd_recv_initial_packet refuses only id > channels) and indexes one past the end " +
      "of the receive channels' array. What follows depends on the heap: on 10.0.2 the destination " +
      "either reads the stale memory as a channel already set up (\"multifd: received id '4' already " +
      "setup'\"), dies of SIGSEGV or, now and then, takes it silently (a model source, 2026-12-07); on 7.2 " +
      "it takes the connection as a fifth channel and never reports an error. The check is the same from " +
      "7.2 to master",
    cases: ["/migration/multifd/bad/channel-id"],
    side: "dst",
    range: { from: "7.2", through: "10.0" },
    hangMs: 10_000,
    symptom:
      /multifd: received id '4' already setup'|target died with exit status 139|waiting for the target to report the error|waiting for target migration status 'failed'/,
  },
  {
    id: "qemu-multifd-recv-error-hangs-destination",
    summary: "a multifd receive channel that refuses a packet (a corrupted packet magic or version, put on " +
      "the wire by the harness's proxy) leaves the destination's main thread waiting in qemu_sem_wait for " +
      "ever, holding the BQL (gdb on 7.2: the failing channel's thread gone, the others and the main " +
      "thread in qemu_sem_wait): its monitor stops answering, so it never reports 'failed'; the source " +
      "fails at once (broken pipe) and keeps its guest",
    cases: ["/migration/multifd/bad/packet-magic", "/migration/multifd/bad/packet-version"],
    side: "dst",
    range: { from: "7.2", through: "10.0" },
    hangMs: 10_000,
    symptom: /waiting for target migration status 'failed'|waiting for the target to report the error/,
  },
  {
    id: "qemu-multifd-postcopy-yank-abort",
    summary: "multifd with postcopy-ram (which 10.0 refuses outright): at the switch the destination " +
      "aborts in yank_unregister_instance (Assertion `QLIST_EMPTY(&entry->yankfns)' failed)",
    cases: [
      "/migration/multifd+postcopy/plain",
      "/migration/multifd+postcopy/tcp/tls/psk/match",
      "/migration/multifd+postcopy/faults/versions",
    ],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    symptom: /yank_unregister_instance: Assertion/,
  },
  {
    id: "qemu-multifd-postcopy-preempt-hang",
    summary: "multifd with postcopy-preempt: the destination takes the preempt channel for an extra " +
      "multifd one ('Extra incoming migration connection; ignoring'); its multifd channel 0 sees " +
      "end-of-file and either its QMP stops answering (the precopy phase never reaches the guest's " +
      "marker) or it dies after the switch (.ci/run 2026-12-06)",
    cases: [
      "/migration/multifd+postcopy/preempt/plain",
      "/migration/multifd+postcopy/preempt/recovery/tls/psk",
    ],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    // Seen as a wait that times out; where it is fixed the wait takes about 2 s.
    hangMs: 10_000,
    symptom:
      /waiting for the dirty-memory marker on the target|target stderr: [^\n]*Extra incoming migration connection; ignoring/,
  },
  {
    id: "qemu-multifd-postcopy-recovery-repauses",
    summary: "multifd with postcopy-ram over TLS: the recovery's handshake completes, then the destination " +
      "reports 'Detected IO failure for postcopy. Migration paused.' again ('Cannot read from TLS " +
      "channel: Input/output error') and the source never completes",
    cases: ["/migration/multifd+postcopy/recovery/tls/psk"],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    // Seen as a wait that times out; where it is fixed the wait takes about 2 s.
    hangMs: 10_000,
    symptom: /waiting for source migration status 'completed'/,
  },
  {
    id: "qemu-multifd-refused-channels-abort",
    summary: "when the destination refuses the multifd channels (uuid mismatch, a channel id twice), the " +
      "source sometimes " +
      "aborts: qemu_mutex_lock_impl: Assertion `mutex->initialized' failed (status 134); when it does " +
      "not, the case passes",
    cases: ["/migration/multifd/bad/uuid", "/migration/multifd/bad/channel-id-twice"],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    // The runner reports the abort as the exit status; the assertion is in the source's log.
    symptom: /source exited with status 134/,
    intermittent: true,
  },
  {
    id: "qemu-multifd-tls-refused-segv",
    summary: "a 7.2 source whose multifd TLS channels the destination refuses (an anonymous client) " +
      "sometimes dies of SIGSEGV as it exits, after 'TLS handshake failed: The TLS connection was " +
      "non-properly terminated.' (1 of 10 runs 7.2 -> the model, 2026-12-08); when it does not, the case passes",
    cases: ["/migration/multifd/tcp/tls/x509/reject-anon-client"],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    symptom: /source exited with status 139, SIGSEGV: .*TLS handshake failed/,
    intermittent: true,
  },
  {
    id: "qemu-return-path-error-not-fatal",
    summary: "garbage on the return path (an unknown message, a wrong length) is recorded in the source's " +
      "error-desc, but the source stays 'active' and never fails: with switchover-ack it iterates for ever " +
      "waiting for the ack the garbage replaced (10.0.2: 500 passes in 30 s), the destination waits too; " +
      "found by deno task fuzz",
    cases: [
      "/migration/bad_stream/return-path/unknown-message",
      "/migration/bad_stream/return-path/long-message",
    ],
    side: "src",
    range: { from: "10.0", through: "10.0" },
    hangMs: 10_000,
    symptom:
      /waiting for target migration status 'failed'[\s\S]*"status":"active"[^\n]*"error-desc":"Received /,
  },
  {
    id: "qemu-multifd-compression-flag-silent",
    summary: "the destination reports a multifd compression-flag mismatch nowhere: no stderr, " +
      "query-migrate stays 'active' without error-desc, the source sees a broken pipe",
    cases: ["/migration/multifd/bad/compression-flag"],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    // The case waits for an error that never comes.
    // Seen as a wait that times out; where it is fixed the wait takes about 2 s.
    hangMs: 10_000,
    symptom: /waiting for the target to report the error \(stderr or query-migrate\)/,
  },
  {
    id: "qemu-multifd-zero-pages-unknown-to-older-destination",
    summary: "zero-page-detection=multifd (9.0 on) lists a packet's zero pages in words that were reserved " +
      "before (zero_pages, then their offsets after the normal pages), and MULTIFD_VERSION stays 1: a " +
      "destination before 9.0 takes them for padding, so a page that held data and turned zero keeps its " +
      "old content there, and nothing refuses the pair (machine types up to 8.2 default to legacy " +
      "detection; set explicitly, multifd is accepted). Seen 10.0.2 -> 7.2 with the zero-churn guest: " +
      "hundreds of stale pages, every run",
    cases: ["/migration/multifd/tcp/zero-churn/multifd", "/migration/multifd/tcp/zero-churn/multifd/passes"],
    side: "src",
    range: { from: "9.0", through: "10.0" },
    peer: { from: "7.2", through: "8.2" },
    symptom: /guest RAM differs in \d+ page\(s\) between source and target/,
  },
  {
    id: "qemu-multifd-channel-error-incoming-stays-active",
    summary: "a 10.0 destination refusing a 7.2 source's multifd channel (compression flags) records the " +
      "error in error-desc ('multifd 1: flags received 2 flags expected 4') but its incoming migration " +
      "stays 'active' after the source failed (broken pipe); with a 10.0 source it ends 'failed'. The same " +
      "for a page offset past its block ('multifd: offset too long', .ci/run 2026-12-07)",
    cases: ["/migration/multifd/bad/compression-flag", "/migration/multifd/bad/offset"],
    side: "dst",
    range: { from: "10.0", through: "10.0" },
    peer: { from: "7.2", through: "7.2" },
    // Seen as a wait that times out; where it is fixed the wait takes about 2 s.
    hangMs: 10_000,
    symptom: /waiting for target migration status 'failed'/,
  },
  {
    id: "qemu-colo-precopy-completes",
    summary: "with x-colo on, the primary's migration goes 'device' -> 'completed' and never enters " +
      "'colo' (the secondary never becomes one)",
    cases: COLO_ANY,
    side: "src",
    // Up to, not including, 10.2.
    range: { from: "10.0", through: "10.1" },
    symptom: /source reached status 'completed' while waiting for 'colo'/,
    fix: "10.2: migration: Fix transition to COLO state from precopy",
  },
  {
    id: "qemu-colo-tcg-bql-deadlock",
    summary: "COLO under TCG: the primary deadlocks on the BQL after the first checkpoint (it sends the " +
      "RAM state without holding the BQL), so the next checkpoint never comes",
    cases: COLO_ANY,
    side: "src",
    range: { from: "7.2", through: "7.2" },
    accel: "tcg",
    // Before the multifd one: under TCG the primary deadlocks before the secondary's load can fail.
    // The flow's bounded wait for the primary's RESUME ends it; the diagnosis then finds the primary's
    // QMP unanswered (the main loop waits for the BQL too). The timeout's first line ends with what the
    // wait saw last; the diagnosis follows on the next lines. When the deadlock falls between two of the
    // flow's own queries of the primary in COLO state, that query's timeout is the symptom (.ci/run saw
    // query-colo-status time out on the multifd/zlib case).
    // Without KVM at all (a fresh machine, 2026-12-07) the multifd cases load their first checkpoint (no
    // kvm-tpr-opt), and the hang came after checkpoint 2, or with the secondary's monitor the one that no
    // longer answered while checkpoint 1 was due: when it strikes varies, so a run may pass.
    symptom:
      /waiting for the primary's RESUME after checkpoint \d+(?:;[^\n]*)?\n\s*source: \(query-migrate failed: [^\n]*timed out|waiting for checkpoint \d+ to be applied \(the secondary's RESUME\)(?:;[^\n]*)?\n(?:[^\n]*\n){0,3}\s*target: \(query-migrate failed: [^\n]*timed out|^source: timed out after \d+ms waiting for reply to query-(?:colo-status|migrate)$/m,
    intermittent: true,
    fix: "colo: Hold the BQL while sending ram state",
  },
  {
    id: "qemu-colo-multifd-device-load",
    summary: "COLO over multifd with a 7.2 primary: the secondary fails to load the device state at the " +
      "first checkpoint (kvm-tpr-opt) and COLO ends",
    cases: COLO_MULTIFD,
    // Keyed on the primary: seen with a 7.2 secondary and with a 10.0 one (7.2 -> 10.0, .ci/run); a 10.0
    // primary never reaches colo (qemu-colo-precopy-completes), so it cannot be told apart there.
    side: "src",
    range: { from: "7.2", through: "7.2" },
    // The flow's checkpoint wait fails at the secondary's COLO_EXIT, quoting its stderr.
    symptom: /target left COLO with an error \(.*device 'kvm-tpr-opt'/,
  },
  {
    id: "qemu-colo-q35-device-load-crash",
    summary: "COLO on q35: the secondary aborts at the first checkpoint " +
      "(memory_region_add_subregion_common: Assertion '!subregion->container' failed): it loads device " +
      "state into a running machine without a reset",
    cases: COLO_ANY,
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    machine: /q35/,
    // The secondary aborts (SIGABRT: status 134); the flow's checkpoint wait quotes its stderr.
    symptom: /target exited \(status 134: .*subregion->container' failed/,
    fix: "colo: Fix crash during device vmstate load",
  },
  {
    // Last: a case's own, narrower bug matches first.
    id: "qemu-exit-abort-after-migration",
    summary: "a side sometimes aborts as it exits after a migration (SIGTERM at teardown): " +
      "qemu_mutex_lock_impl: Assertion `mutex->initialized' failed (status 134); seen on the source after " +
      "a completed multifd migration (.ci/run: multifd/tcp/channels/2) and a file: one, and on the " +
      "destination of a 7.2 -> 10.0 precopy/unix/plain (.ci/run 2026-12-06). The core dumps show a " +
      "query-migrate (the harness samples it every 100 ms) run from aio_bh_poll while the exit tears the " +
      "migration state down: qmp_query_migrate locks its destroyed mutex; when it reads the freed state " +
      "instead, the side dies of SIGSEGV without a word (the destination of multifd/file/mapped-ram/" +
      "zero-churn, .ci/run 2026-12-07); when it does not strike, the case passes",
    cases: /^\/migration\//,
    side: "either",
    range: { from: "10.0", through: "10.0" },
    symptom: /(source|target) exited with status (134, SIGABRT: .*mutex->initialized' failed|139, SIGSEGV$)/,
    intermittent: true,
  },
];

/** "7.2" or "7.2–9.2". */
export function rangeText(r: VersionRange): string {
  return r.from === r.through ? r.from : `${r.from}–${r.through}`;
}

/** Whether v lies in r: a bound without MICRO covers every micro release of that MAJOR.MINOR. */
export function inRange(v: QemuProbe["version"], r: VersionRange): boolean {
  const from = parseVersion(r.from);
  const through = parseVersion(r.through);
  const throughAll = /^\d+\.\d+$/.test(r.through) ? { ...through, micro: Number.MAX_SAFE_INTEGER } : through;
  return compareVersions(v, from) >= 0 && compareVersions(v, throughAll) <= 0;
}

/** The known bug the case hits with these binaries, or null. */
export function knownQemuBug(
  c: AnyCase,
  probes: {
    src: QemuProbe;
    dst: QemuProbe;
    /** The accelerator the case runs under, when known. */
    accel?: string | null;
    /** The pair's machine type, when known. */
    machine?: string;
  },
  table: readonly QemuBug[] = QEMU_BUGS,
): KnownBug | null {
  for (const b of table) {
    const side = (b.side === "either" ? (["src", "dst"] as const) : [b.side]).find((s) =>
      inRange(probes[s].version, b.range)
    );
    const named = b.cases instanceof RegExp ? b.cases.test(c.name) : b.cases.includes(c.name);
    if (!named || !side) continue;
    const p = probes[side];
    const peer = probes[side === "src" ? "dst" : "src"];
    if (b.peer && !inRange(peer.version, b.peer)) continue;
    if (b.accel && probes.accel !== b.accel) continue;
    if (b.machine && !b.machine.test(probes.machine ?? "")) continue;
    const role = (side: "src" | "dst") => side === "src" ? "source" : "destination";
    return {
      id: b.id,
      summary: b.summary,
      versions: `QEMU ${rangeText(b.range)}${b.peer ? ` with a ${rangeText(b.peer)} peer` : ""}` +
        `${b.accel ? ` under ${b.accel}` : ""}${b.machine ? ` on machine ${probes.machine}` : ""}; the ` +
        `${role(side)} is ${describeProbe(p).replace(/^QEMU /, "")}` +
        (b.peer ? `, the ${role(side === "src" ? "dst" : "src")} ${versionText(peer.version)}` : ""),
      symptom: b.symptom,
      ...(b.intermittent ? { intermittent: true } : {}),
      ...(b.hangMs ? { hangMs: b.hangMs } : {}),
      ...(b.fix ? { fix: b.fix } : {}),
    };
  }
  return null;
}
