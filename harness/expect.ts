/**
 * One place for how a migration must end (upstream's MIG_TEST_SUCCEED / MIG_TEST_FAIL /
 * MIG_TEST_FAIL_DEST_QUIT_ERR / MIG_TEST_QMP_ERROR): what each side's status, exit and error must be.
 */
import type { Outcome } from "./case.ts";
import { FlowError, type MigrationPair, type QmpStatus } from "./framework.ts";
import { expectError, worldOutcome } from "./migration_qmp.ts";
import { checkMigratedGuest, suspendsGuest } from "./migration_util.ts";
import { RUNNING_STATUSES } from "./control_plane.ts";
import { WaitTimeoutError } from "../engine/wait.ts";

async function expectExitFailure(p: MigrationPair): Promise<void> {
  const st = await p.dst.waitExit(p.ctx.waitMs);
  p.dstExited = true;
  if (st.code !== 1) throw new FlowError(`target exited with status ${st.code}, expected 1 (EXIT_FAILURE)`);
}

/** The destination failed its load: status failed, or (no exit-on-error in this world) exit status 1. */
export async function expectTargetFailed(p: MigrationPair): Promise<void> {
  if (!p.dstExitsOnError) {
    await p.waitStatus(p.dst, "failed", ["completed"]);
    return;
  }
  await expectExitFailure(p);
}

/** The source must have failed and kept its guest running (wait_for_migration_fail). */
export async function expectSourceFailedAndAlive(p: MigrationPair, wasRunning: boolean): Promise<void> {
  await p.waitStatus(p.src, "failed", ["completed", "cancelled"]);
  const st = await p.src.qmp.execute<{ running: boolean; status: string }>("query-status");
  // A guest that put itself in S3 goes back to 'suspended' (found by the swarm: a connection reset on
  // suspend/source-cont failed the case for a source that was right).
  if (wasRunning && !st.running && !(suspendsGuest(p) && st.status === "suspended")) {
    throw new FlowError(`source guest is not running after the failed migration (runstate ${st.status})`);
  }
}

/** The source's error-desc says what `srcError` wants (the check the source itself failed). */
async function expectSourceError(p: MigrationPair, outcome: Outcome): Promise<void> {
  if (!outcome.srcError) return;
  const st = await p.src.qmp.execute<Record<string, unknown>>("query-migrate");
  const desc = String(st["error-desc"] ?? "");
  if (!outcome.srcError.test(desc)) {
    throw new FlowError(`source error-desc '${desc}' does not match ${outcome.srcError}`);
  }
}

/** Where the target ends: completed, failed, or exited (with exit-on-error). */
async function targetEnd(p: MigrationPair): Promise<"completed" | "failed" | "exited"> {
  return await p.wait("the target to complete, fail or exit", async () => {
    if (p.dst.exitStatus) return "exited" as const;
    const st = await p.dst.qmp.execute<Record<string, unknown>>("query-migrate").catch(() => ({}));
    const s = (st as Record<string, unknown>).status;
    return s === "completed" || s === "failed" ? s : undefined;
  });
}

/**
 * A fault that may or may not strike: either both sides complete and the guest is exact, or the source
 * fails and keeps its guest while the target fails (stays up in `failed`, or exits with status 1). The
 * source may complete while the target fails only without a return path (nothing tells it); it may fail
 * at its very end (waiting for SHUT) while the paused (-S) target completed: the source keeps its guest.
 */
async function completeOrFail(p: MigrationPair, srcWasRunning: boolean): Promise<void> {
  const src = await p.wait("the source to complete or fail", async () => {
    const s = (await p.status(p.src)).status;
    return s === "completed" || s === "failed" ? s : undefined;
  });
  const dst = await targetEnd(p);
  p.ctx.log(`complete-or-fail: source ${src}, target ${dst}`);
  if (dst === "exited") {
    p.dstExited = true;
    const code = p.dst.exitStatus?.code;
    if (code !== 1) throw new FlowError(`target exited with status ${code}, expected 1 (EXIT_FAILURE)`);
  }
  if (src === "completed") {
    if (dst === "completed") {
      await p.recordStats();
      await checkMigratedGuest(p);
      return;
    }
    if ((p.c.caps ?? []).includes("return-path")) {
      throw new FlowError(`the source completed over a return path while the target ${dst}`);
    }
    return;
  }
  await expectSourceFailedAndAlive(p, srcWasRunning);
}

/**
 * Why an error message is not one a user can act on, or null: it is empty, or it is the model's own
 * failure (a JavaScript exception's words) rather than a refusal of the bytes it was given.
 */
export function impreciseError(desc: string): string | null {
  if (desc.trim() === "") return "it is empty";
  const internal = desc.match(
    /\b(TypeError|RangeError|ReferenceError|SyntaxError|AssertionError)\b|is not a function|Cannot read properties|is not iterable|\bundefined\b|\bNaN\b|outside the bounds|out of bounds|Invalid typed array length|Array buffer allocation failed|Maximum call stack/,
  );
  return internal
    ? `it is an internal error of the model ('${internal[0]}'), not a refusal of the bytes`
    : null;
}

function expectPrecise(desc: string, who: string): void {
  const why = impreciseError(desc);
  if (why) throw new FlowError(`${who}'s error '${desc}' does not say what was wrong: ${why}`);
}

/**
 * A mangled stream: the target completes (whatever it holds) or fails with a precise error, or exits with
 * status 1 saying one; the source completes or fails with its guest kept, and both still answer QMP.
 */
async function survives(p: MigrationPair, srcWasRunning: boolean): Promise<void> {
  const src = await p.wait("the source to complete or fail", async () => {
    const s = await p.status(p.src);
    return s.status === "completed" || s.status === "failed" ? s : undefined;
  }).catch(async (e) => {
    // Still migrating: it waits for what the mangled stream will never bring (a message cut short on the
    // return path, a switchover-ack), as QEMU's would. Management's answer is a cancel, which must work.
    const s = await p.status(p.src);
    if (!(e instanceof WaitTimeoutError) || !RUNNING_STATUSES.has(String(s.status))) throw e;
    p.ctx.log(`survives: source stuck in '${s.status}', cancelled`);
    await p.src.qmp.execute("migrate_cancel");
    await p.waitStatus(p.src, "cancelled", ["completed", "failed"]);
    const st = await p.src.qmp.execute<{ running: boolean; status: string }>("query-status");
    if (srcWasRunning && !st.running) {
      throw new FlowError(`source guest is not running after the cancel (runstate ${st.status})`);
    }
    const cancelled: QmpStatus = { status: "cancelled" };
    return cancelled;
  });
  const dst = await targetEnd(p);
  p.ctx.log(`survives: source ${src.status}, target ${dst}`);
  if (dst === "exited") {
    p.dstExited = true;
    const code = p.dst.exitStatus?.code;
    if (code !== 1) throw new FlowError(`target exited with status ${code}, expected 1 (EXIT_FAILURE)`);
    const lines = p.dst.stderr.trim().split("\n");
    expectPrecise(lines[lines.length - 1] ?? "", "target (stderr)");
  } else if (dst === "failed") {
    const st = await p.dst.qmp.execute<Record<string, unknown>>("query-migrate");
    p.ctx.log(`survives: target error: ${st["error-desc"]}`);
    expectPrecise(String(st["error-desc"] ?? ""), "target");
    await p.dst.qmp.execute("query-status");
  } else await p.dst.qmp.execute("query-status");
  if (src.status === "failed") {
    expectPrecise(String(src["error-desc"] ?? ""), "source");
    await expectSourceFailedAndAlive(p, srcWasRunning);
  } else if (src.status === "completed" && dst !== "completed" && (p.c.caps ?? []).includes("return-path")) {
    throw new FlowError(`the source completed over a return path while the target ${dst}`);
  }
}

/**
 * A plausibility check of the source's completed migration: RAM records of at most `times` the guest's
 * RAM. `why` says what the guest did that bounds it, for the failure message.
 */
export async function expectRamSentAtMost(p: MigrationPair, times: number, why: string): Promise<void> {
  const ram = (await p.status(p.src)).ram as Record<string, number> | undefined;
  if (!ram) throw new FlowError("the source's query-migrate has no 'ram' member");
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const ratio = ram.transferred / ram.total;
  p.ctx.log(`ram transferred ${mib(ram.transferred)} of ${mib(ram.total)} (${ratio.toFixed(2)}×)`);
  if (ratio > times) {
    throw new FlowError(
      `the source sent ${mib(ram.transferred)} of RAM records for ${mib(ram.total)} of RAM ` +
        `(${ratio.toFixed(2)}×, at most ${times}× expected) over ${ram["dirty-sync-count"]} dirty-sync ` +
        `passes, ${ram.normal} pages in full: ${why}`,
    );
  }
}

/** The source's ram.transferred under `mib` MiB; `why` says what it means when it is not. */
export async function expectRamSentUnder(p: MigrationPair, mib: number, why: string): Promise<void> {
  const ram = (await p.status(p.src)).ram as Record<string, number> | undefined;
  if (!ram) throw new FlowError("the source's query-migrate has no 'ram' member");
  const sent = ram.transferred / (1 << 20);
  p.ctx.log(`ram transferred ${sent.toFixed(2)} MiB (${ram.normal} pages in full)`);
  if (!(sent < mib)) {
    throw new FlowError(
      `the source sent ${sent.toFixed(2)} MiB of RAM (${ram.normal} pages in full), under ${mib} MiB ` +
        `expected: ${why}`,
    );
  }
}

/**
 * Waits for the source to complete within `passes` dirty-sync passes; fails, naming the figures, once it
 * has run more without completing. `why` says what the guest did that bounds it.
 */
export async function expectConvergesWithin(p: MigrationPair, passes: number, why: string): Promise<void> {
  await p.wait(`the source to complete within ${passes} dirty-sync passes`, async () => {
    const s = await p.status(p.src);
    if (s.status === "completed") return true;
    if (s.status === "failed") throw new FlowError(`source failed: ${s["error-desc"]}`);
    const ram = s.ram as Record<string, number> | undefined;
    const count = ram?.["dirty-sync-count"] ?? 0;
    if (count > passes) {
      throw new FlowError(
        `the source is still '${s.status}' after ${count} dirty-sync passes (at most ${passes} expected), ` +
          `${((ram?.transferred ?? 0) / (1 << 20)).toFixed(1)} MiB sent for ` +
          `${((ram?.total ?? 0) / (1 << 20)).toFixed(1)} MiB of RAM, ` +
          `${((ram?.remaining ?? 0) / (1 << 20)).toFixed(1)} MiB still dirty: ${why}`,
      );
    }
    return false;
  });
}

/** The end of a migration, by expected outcome (with pause-before-switchover, migrate-continue first). */
export async function finishByExpectation(
  p: MigrationPair,
  outcome: Outcome,
  srcWasRunning: boolean,
): Promise<void> {
  outcome = worldOutcome(p, outcome);
  switch (outcome.expect ?? "succeed") {
    case "succeed": {
      if ((p.c.caps ?? []).includes("pause-before-switchover")) {
        await p.waitStatus(p.src, "pre-switchover");
        await p.src.qmp.execute("migrate-continue", { state: "pre-switchover" });
      }
      await p.waitStatus(p.src, "completed");
      await p.waitStatus(p.dst, "completed");
      await p.recordStats();
      await checkMigratedGuest(p);
      return;
    }
    case "fail": {
      if (p.dstExitsOnError) {
        // No exit-on-error (QEMU < 9.1): its stderr carries the error; after a failed load it exits with
        // status 1, while a multifd channel error leaves it waiting for channels (upstream's MIG_TEST_FAIL).
        // The error shows on stderr, or (multifd channel errors in 7.2) only in the target's query-migrate.
        await p.wait("the target to report the error (stderr or query-migrate)", async () => {
          if (!outcome.error || outcome.error.test(p.dst.stderr)) return true;
          if (p.dst.exitStatus) return false;
          const s = await p.dst.qmp.execute<Record<string, unknown>>("query-migrate").catch(() => ({}));
          return outcome.error.test(String((s as Record<string, unknown>)["error-desc"] ?? ""));
        });
        await expectSourceFailedAndAlive(p, srcWasRunning);
        await expectSourceError(p, outcome);
        // It exits after a failed load, or stays waiting: a QMP connection that goes while asking is
        // the exit under way.
        const up = p.dst.exitStatus === null &&
          await p.dst.qmp.execute("query-status").then(() => true, () => false);
        if (!up) await expectExitFailure(p);
        return;
      }
      const s = await p.waitStatus(p.dst, "failed", ["completed"]);
      // QEMU 10.0 keeps some causes out of error-desc ("load of migration failed: Invalid argument") and
      // prints them on stderr ("RAM postcopy is disabled but have 16 byte advise"): either says it.
      const desc = String(s["error-desc"] ?? "");
      if (!outcome.error?.test(p.dst.stderr)) expectError(outcome, desc, "target");
      await expectSourceFailedAndAlive(p, srcWasRunning);
      await expectSourceError(p, outcome);
      // The destination stays usable: it still answers QMP.
      await p.dst.qmp.execute("query-status");
      return;
    }
    case "fail-dest-exits": {
      await expectExitFailure(p);
      expectError(outcome, p.dst.stderr, "target stderr");
      await expectSourceFailedAndAlive(p, srcWasRunning);
      await expectSourceError(p, outcome);
      return;
    }
    case "refused": {
      // The source fails; the destination dropped the connection and listens on, having loaded nothing.
      await expectSourceFailedAndAlive(p, srcWasRunning);
      await expectSourceError(p, outcome);
      await p.wait("the target to say why it refused the connection", () => {
        if (p.dst.exitStatus) {
          throw new FlowError(`target exited (status ${p.dst.exitStatus.code}) after refusing`);
        }
        return !outcome.error || outcome.error.test(p.dst.stderr);
      });
      const st = await p.dst.qmp.execute<Record<string, unknown>>("query-migrate");
      const status = String(st.status ?? "none");
      if (status !== "setup" && status !== "none") {
        throw new FlowError(
          `target is '${status}' after refusing the connection, expected 'setup' (still listening)`,
        );
      }
      return;
    }
    case "qmp-error":
      throw new FlowError("qmp-error cases end at the migrate command");
    case "complete-or-fail":
      return await completeOrFail(p, srcWasRunning);
    case "survives":
      return await survives(p, srcWasRunning);
  }
}

/**
 * A migration refused before it started (the channel could not be had): QEMU's source records it as
 * failed, with the same reason, and its guest runs on.
 */
export async function expectFailedToStart(p: MigrationPair, outcome: Outcome): Promise<void> {
  const s = await p.status(p.src);
  if (s.status !== "failed" || !s["error-desc"]) {
    throw new FlowError(`source: after the refused migrate, query-migrate says ${JSON.stringify(s)}`);
  }
  // migrate_fd_error records the very error migrate returned: the same words, no class in front.
  expectError(worldOutcome(p, outcome), String(s["error-desc"]), "source's error-desc:");
  const st = await p.src.qmp.execute<{ status: string }>("query-status");
  if (st.status !== "running") throw new FlowError(`source: the guest is '${st.status}' after the refusal`);
}
