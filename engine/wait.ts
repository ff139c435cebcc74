/**
 * Waiting with a deadline. Every wait of the harness for a condition (a polled probe) or for an event (in
 * a feed such as a QMP client's) goes through `waitFor`, so a hang always ends in one shape of error (a
 * QMP reply's own bound is the client's):
 *
 *   timed out after N ms waiting for <what>; last seen: <what the wait saw last>
 *   last probe error: <the last probe's error, when it failed>
 *   <the diagnosis, when the wait has one: what both sides were doing>
 */
import { type Clock, hostClock } from "./clock.ts";
import { errorMessage } from "./error.ts";

export class WaitTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WaitTimeoutError";
  }
}

/** Thrown by a probe (or an event wait's check) to end the wait at once: the awaited can no longer happen. */
export class WaitAbort extends Error {}

export interface WaitOptions {
  timeoutMs: number;
  /** How often a condition is probed, or an event wait's `check` run (default 10 ms). */
  intervalMs?: number;
  /** Extra context appended to a timeout error (last statuses and events of both sides). */
  diagnose?: () => Promise<string> | string;
  /** Whose time the deadline and the polling interval are in (default: the host's). */
  clock?: Clock;
  /** Makes the timeout error from its message (default a WaitTimeoutError): a client keeps its own class. */
  timeoutError?: (message: string) => WaitTimeoutError;
}

/**
 * A condition: the probe's answer other than undefined/false ends the wait and is its value. `see` tells
 * the wait what the probe found, for a timeout's "last seen" (e.g. "status 'active'").
 */
export type Probe<T> = (
  see: (text: string) => void,
) => Promise<T | undefined | false> | T | undefined | false;

/** Events a wait can watch: a list that only grows, and word of each arrival. */
export interface EventFeed<E> {
  /** Everything received so far, in order of arrival (an event's index is its position). */
  readonly events: readonly E[];
  /**
   * Calls `arrived` with every event received from now on (already in `events`, at `index`), and `ended`
   * once none can come (the feed closed; the error names `what`). Returns the unsubscribe. A feed that has
   * already ended calls `ended` at once. While watched, the feed counts as awaited: the simulated world
   * moves only while the flow awaits something.
   */
  watch(what: string, arrived: (e: E, index: number) => void, ended: (e: Error) => void): () => void;
  /** One event on a line, for a timeout's "last seen". */
  describe(e: E): string;
}

/** An event: the first in `feed` at index >= `since` that `match` accepts, whether already there or to come. */
export interface EventWait<E> {
  feed: EventFeed<E>;
  /** Only events at index >= since count (default 0: every event received so far counts). */
  since?: number;
  /** Which event ends the wait; if it throws, the wait fails with its error. */
  match: (e: E) => boolean;
  /**
   * Run at once and then every `intervalMs` while waiting, for what no event tells (a side that exited):
   * it throws WaitAbort to end the wait (other errors are retried, the last one reported on a timeout).
   * Without it nothing is polled: only an arrival wakes the wait.
   */
  check?: () => void;
}

/**
 * Waits for a condition (`on` a probe, polled every `intervalMs`) or for an event (`on` an EventWait,
 * woken by each arrival), until `opts.timeoutMs` on `opts.clock`. A WaitAbort thrown by the probe or
 * the check ends the wait at once; other probe errors are retried and the last one is reported.
 */
export function waitFor<T>(what: string, on: Probe<T> | EventWait<T>, opts: WaitOptions): Promise<T> {
  return typeof on === "function" ? poll(what, on, opts) : watchFor(what, on, opts);
}

async function poll<T>(what: string, probe: Probe<T>, opts: WaitOptions): Promise<T> {
  const clock = opts.clock ?? hostClock;
  const deadline = clock.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 10;
  let seen: string | undefined;
  const see = (text: string) => (seen = text);
  let failed: { error: unknown } | null = null;
  for (let probes = 1;; probes++) {
    try {
      const v = await probe(see);
      if (v !== undefined && v !== false) return v;
      failed = null;
    } catch (e) {
      if (e instanceof WaitAbort) throw e;
      failed = { error: e };
    }
    if (clock.now() >= deadline) {
      throw await timedOut(
        what,
        seen ?? `no answer that satisfies it, in ${count(probes, "probe")}`,
        failed,
        opts,
      );
    }
    await clock.sleep(interval);
  }
}

function watchFor<E>(what: string, on: EventWait<E>, opts: WaitOptions): Promise<E> {
  const clock = opts.clock ?? hostClock;
  const { feed, match, check } = on;
  const since = on.since ?? 0;
  return new Promise<E>((resolve, reject) => {
    let done = false;
    let unwatch = () => {};
    let cancelDeadline = () => {};
    let cancelPoll = () => {};
    let failed: { error: unknown } | null = null;
    // Settles once; nothing (subscription, timer) outlives the wait.
    const finish = (settle: () => void) => {
      if (done) return;
      done = true;
      unwatch();
      cancelDeadline();
      cancelPoll();
      settle();
    };
    const consider = (e: E, index: number) => {
      if (done || index < since) return;
      try {
        if (match(e)) finish(() => resolve(e));
      } catch (err) {
        finish(() => reject(err));
      }
    };
    const runCheck = () => {
      if (!check || done) return;
      try {
        check();
        failed = null;
      } catch (e) {
        if (e instanceof WaitAbort) finish(() => reject(e));
        else failed = { error: e };
      }
    };
    for (let i = since; i < feed.events.length && !done; i++) consider(feed.events[i], i);
    runCheck();
    if (done) return;
    const stop = feed.watch(what, consider, (err) => finish(() => reject(err)));
    if (done) return stop();
    unwatch = stop;
    cancelDeadline = clock.timer(() => {
      const n = feed.events.length;
      const last = feed.events.slice(-5).map((e, i) => `#${n - Math.min(n, 5) + i} ${feed.describe(e)}`);
      const seen = n === 0 ? "no events" : `${count(n, "event")}, the last: ${last.join("; ")}`;
      const f = failed;
      finish(() => timedOut(what, seen, f, opts).then(reject, reject));
    }, opts.timeoutMs);
    if (check) {
      const tick = () => {
        runCheck();
        if (!done) cancelPoll = clock.timer(tick, opts.intervalMs ?? 10);
      };
      cancelPoll = clock.timer(tick, opts.intervalMs ?? 10);
    }
  });
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The one timeout error: what was awaited, what was seen last, the last probe error, the diagnosis. */
async function timedOut(
  what: string,
  seen: string,
  failed: { error: unknown } | null,
  opts: WaitOptions,
): Promise<WaitTimeoutError> {
  let msg = `timed out after ${opts.timeoutMs} ms waiting for ${what}; last seen: ${seen}`;
  if (failed) msg += `\nlast probe error: ${errorMessage(failed.error)}`;
  if (opts.diagnose) {
    // A diagnosis that fails must not take the timeout's place.
    const diagnosis = await Promise.resolve().then(opts.diagnose).catch((e) =>
      `(diagnosis failed: ${errorMessage(e)})`
    );
    msg += `\n${diagnosis}`;
  }
  return opts.timeoutError ? opts.timeoutError(msg) : new WaitTimeoutError(msg);
}

/**
 * `waitFor` on a plain predicate polled every 2 ms: for tests that drive engines in this process. The
 * bound is generous: `deno task test` runs its files in parallel on a busy CI machine, where a few rounds
 * of an in-process migration took over 10 s (.ci/run, 2026-12-06); only a failing test waits it out.
 */
export async function until(what: string, pred: () => boolean, timeoutMs = 60_000): Promise<void> {
  await waitFor(what, pred, { timeoutMs, intervalMs: 2 });
}
