/**
 * The differences between the model and real QEMU that are understood, each with its reason: the
 * fidelity task reports them as "known". A difference not in this table is a disagreement to look at
 * (a model bug to fix in engine/, or a new row here with why it is not one).
 */
import type { KnownDifference } from "./trace.ts";

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [
  {
    cases: /./,
    aspect: "source.statuses",
    versions: ["7.2"],
    detail: /^model \[[a-z,-]*device[a-z,-]*\], qemu \[[a-z,-]*\]$/,
    why: "QEMU 7.2 passes through 'device' only with pause-before-switchover; 10.0 always does, and the " +
      "model follows current upstream",
  },
  {
    cases: /./,
    aspect: "source.error-desc",
    detail: /Broken pipe|Failed to connect/,
    why: "OS-level errors are worded by Deno in the model ('Broken pipe (os error 32)', 'Failed to " +
      "connect: ...') and by QEMU's channel layer ('Unable to write to socket: Broken pipe', " +
      "'Failed to connect to ...'); the status and the failing side agree",
  },
  {
    cases: /^\/migration\/(cancel|multifd\/bad)\//,
    aspect: "target.error-desc",
    versions: ["7.2"],
    detail: /qemu none$/,
    why: "QEMU 7.2's destination keeps no error-desc for a failed load in query-migrate (it prints it " +
      "on stderr); the model's destination reports it, as later QEMU does",
  },
  {
    cases: /^\/migration\/multifd\/bad\//,
    aspect: "verdict",
    versions: ["7.2"],
    why: "a known QEMU 7.2 bug the case hits (harness/world/qemu_bugs.ts): XFAIL on QEMU, PASS on the model",
  },
  {
    cases: /^\/migration\/multifd\/bad\//,
    aspect: "target.statuses",
    versions: ["7.2"],
    why: "QEMU 7.2's destination refusing a multifd channel stays in its status (the bug in qemu_bugs.ts)",
  },
  {
    cases: /^\/migration\/multifd\/bad\/uuid$/,
    aspect: "source.statuses",
    versions: ["7.2"],
    why: "7.2 aborts the multifd uuid refusal late (qemu_bugs.ts): its source has gone active first",
  },
  {
    cases: /^\/migration\/multifd\/bad\/uuid$/,
    aspect: "source.events",
    versions: ["7.2"],
    why: "the same: 7.2's source reaches its first pass (MIGRATION_PASS) before failing",
  },
  {
    cases: /./,
    aspect: "source.events",
    detail: /^model only \[\], qemu only \[RESUME\]$/,
    why: "a race of startup, seen once in two runs: QEMU sends RESUME when its vCPUs start, which the " +
      "harness sees only if its QMP connection came first; the model runs before its greeting",
  },
  {
    cases: /^\/migration\/cancel\/src\/after\/setup$/,
    aspect: "source.statuses",
    detail: /^model \[setup,active,cancelling,cancelled\], qemu \[setup,cancelling,cancelled\]$/,
    why: "timing, not behaviour: the model's setup takes under a millisecond, so the cancel sent on " +
      "seeing 'setup' lands once it is active; QEMU's setup (TCG, 150 MiB) is still running",
  },
  {
    cases: /^\/migration\/cancel\//,
    aspect: "target.error-desc",
    detail: /qemu load of migration failed: (Input\/output error|Invalid argument)$/,
    why: "wording: the model's destination names what ended the stream and where ('Unexpected end of " +
      "stream while reading section type (at stream offset N)'); QEMU's reports the channel's errno " +
      "('Input/output error', 'Invalid argument'); both end 'failed' when the source cancels",
  },
  {
    cases: /^\/migration\/cancel\//,
    aspect: "source.error-desc",
    detail: /^model none, qemu (ram_save_setup failed|Channel error): Input\/output error$/,
    why: "QEMU keeps the channel error the cancel itself caused as the cancelled source's error-desc; the " +
      "model reports none for a cancelled migration (the status 'cancelled' is the outcome both report)",
  },
  {
    cases: /^\/migration\/multifd\/bad\/compression-flag$/,
    aspect: "target.error-desc",
    detail: /qemu multifd \d+: flags received 2 flags expected 4$/,
    why: "the same refusal in other words: QEMU names its receive thread ('multifd N', whichever channel " +
      "reads first); the model names the channel, the method and the offset",
  },
  {
    cases: /^\/migration\/multifd\/bad\/uuid$/,
    aspect: "target.error-desc",
    detail: /multifd: received uuid '[0-9a-f-]+' and expected uuid '[0-9a-f-]+' for channel 0$/,
    why: "the same message; the model adds QEMU's 'load of migration failed: ' prefix and the offset",
  },
  {
    cases: /^\/migration\/multifd\/bad\/uuid$/,
    aspect: "source.statuses",
    versions: ["10.0"],
    detail: /^model \[setup,failed\], qemu \[setup,active,failed\]$/,
    why: "ordering: QEMU's multifd channels connect in the background, so its source is active before the " +
      "destination refuses one; the model's source waits for its channels in setup and fails from there. " +
      "Both fail and keep the guest running",
  },
  {
    cases: /^\/migration\/multifd\/bad\/uuid$/,
    aspect: "source.events",
    versions: ["10.0"],
    detail: /^model only \[\], qemu only \[MIGRATION_PASS\]$/,
    why: "the same ordering: QEMU's source starts its first pass before the refusal arrives",
  },
  {
    cases: /./,
    aspect: "target.events",
    detail: /^model only \[\], qemu only \[STOP\]$/,
    why: "the harness's check that a QEMU guest program runs on the destination reads its heartbeat, then " +
      "stops it (STOP) to see it stand still (migration_util.ts checkProgramRuns); the model's guest keeps no " +
      "heartbeat, so its destination is not stopped there. Not a migration event",
  },
  {
    cases: /\/suspend(\/|$)/,
    aspect: "target.events",
    detail: /^model only \[\], qemu only \[RESET\]$/,
    why: "QEMU's wakeup from S3 resets the machine (RESET; the BIOS then resumes the guest), and the " +
      "suspend cases wake the destination; the model's suspended guest wakes without a reset",
  },
  {
    cases: /\/suspend\/source-cont/,
    aspect: "verdict",
    versions: ["10.0"],
    why: "a known QEMU 10.0 bug the case hits (harness/world/qemu_bugs.ts: cont on a migrated-out source " +
      "that slept aborts): XFAIL on QEMU, PASS on the model",
  },
  {
    cases: /^\/migration\/postcopy\/recovery\/fail-at\/bitmaps-reloaded$/,
    aspect: "target.statuses",
    detail: /postcopy-recover,postcopy-paused,postcopy-recover,postcopy-active,completed\]/,
    why: "the second failure's moment: the model fails the recovery at its breakpoint once the bitmaps are " +
      "reloaded, before the destination leaves postcopy-recover; on QEMU the proxy cuts the wire there, and " +
      "by the time the cut lands QEMU's destination is postcopy-active again (then paused, recovered)",
  },
  {
    cases: /^\/migration\/cancel\/src\/after\/setup$/,
    aspect: "source.events",
    detail: /^model only \[\], qemu only \[MIGRATION_PASS\]$/,
    why: "timing: QEMU's migration thread runs its setup (the first bitmap sync, MIGRATION_PASS 1) before " +
      "the cancel lands; the model's source is cancelled while it still connects in setup. Both end cancelled",
  },
  {
    cases:
      /^\/migration\/multifd\/bad\/(channel-id-twice|offset|zlib-corrupt-payload|zstd-truncated-payload)$/,
    aspect: "target.error-desc",
    versions: ["10.0"],
    why:
      "QEMU's words for the same refusal, which the case states as its qemuError (cases/multifd.ts): the " +
      "model names the channel, the block and the stream offset, QEMU its own check's values",
  },
  {
    cases: /^\/migration\/precopy\/file\/mapped-ram\/dst-without$/,
    aspect: "target.error-desc",
    versions: ["10.0"],
    detail: /qemu load of migration failed: Invalid argument$/,
    why:
      "QEMU 10.0 keeps the cause out of error-desc (it prints it on stderr); the model names the capability",
  },
  {
    cases: /\/tls\/x509\/(hostile-client|foreign-ca-client|reject-anon-client)$/,
    aspect: "source.statuses",
    detail: /^model \[setup,failed\], qemu \[setup,active,failed\]$/,
    why: "the model's server speaks TLS 1.2 (research/tls.md), whose refusal of the client's certificate " +
      "lands inside the handshake, so the source fails in setup; QEMU's TLS 1.3 server refuses after the " +
      "client finished its handshake, by when QEMU's source is active",
  },
  {
    cases: /\/tls\/x509\/(hostile-client|foreign-ca-client|reject-anon-client)$/,
    aspect: "source.events",
    detail: /^model only \[\], qemu only \[MIGRATION_PASS\]$/,
    why: "the same: QEMU's source starts its first pass before the TLS 1.3 refusal reaches it",
  },
  {
    cases: /^\/migration\/(bad_stream|postcopy\/bad-peer)\//,
    aspect: "target.error-desc",
    versions: ["10.0"],
    detail: /qemu load of migration failed: (Invalid argument|Operation not supported|Input\/output error)$/,
    why: "QEMU 10.0 keeps a failed load's cause out of error-desc and prints it on stderr, where the cases " +
      "check it (qemuError); the model's error-desc names the cause and the stream offset",
  },
  {
    cases: /^\/migration\/bad_stream\/truncated$/,
    aspect: "source.statuses",
    why: "the cut is the model source's own hook in the model world (its source fails in setup, having cut " +
      "its own stream) and the wire proxy's on QEMU (QEMU's source goes on, active, until the proxy's close)",
  },
  {
    cases: /^\/migration\/bad_stream\/truncated$/,
    aspect: "source.error-desc",
    why: "the same: the model's source names its own fault, QEMU's source the channel error the cut caused",
  },
];
