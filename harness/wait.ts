/**
 * Waiting with a deadline. Every wait in the harness goes through `waitFor`, so a hang becomes an error
 * that says what was awaited and what both engines were doing.
 */
import { type Clock, hostClock } from "../engine/clock.ts";
import { errorMessage } from "../engine/error.ts";

export class WaitTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WaitTimeoutError";
  }
}

/** Thrown by a probe to end the wait at once (the awaited thing can no longer happen). */
export class WaitAbort extends Error {}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** Extra context appended to a timeout error (last statuses and events of both sides). */
  diagnose?: () => Promise<string> | string;
  /** Whose time the deadline and the polling interval are in (default: the host's). */
  clock?: Clock;
}

/** Polls `probe` until it returns a value other than undefined/false; that value is returned. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions,
): Promise<T> {
  const clock = opts.clock ?? hostClock;
  const deadline = clock.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 10;
  let lastError: unknown = undefined;
  while (true) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
      lastError = undefined;
    } catch (e) {
      if (e instanceof WaitAbort) throw e;
      lastError = e;
    }
    if (clock.now() >= deadline) {
      let msg = `timed out after ${opts.timeoutMs} ms waiting for ${what}`;
      if (lastError) {
        msg += `\nlast probe error: ${errorMessage(lastError)}`;
      }
      if (opts.diagnose) msg += `\n${await opts.diagnose()}`;
      throw new WaitTimeoutError(msg);
    }
    await clock.sleep(interval);
  }
}

/** `waitFor` on a plain predicate polled every 2 ms: for tests that drive engines in this process. */
export async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  await waitFor(what, pred, { timeoutMs, intervalMs: 2 });
}
