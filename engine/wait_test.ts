/**
 * The one wait (harness/wait.ts): a condition and an event time out in the same shape, saying what was
 * seen last; an event already received counts from `since`; WaitAbort ends a wait at once; a virtual
 * clock is the only time a wait reads.
 */
import assert from "node:assert/strict";
import type { Clock } from "./clock.ts";
import { type EventFeed, WaitAbort, waitFor, WaitTimeoutError } from "./wait.ts";

/** Time that moves only when `settle` jumps it to the next timer, as the simulated world's does. */
class ManualClock implements Clock {
  #now = 0;
  #seq = 0;
  #timers: { at: number; seq: number; fn: () => void }[] = [];

  now(): number {
    return this.#now;
  }

  timer(fn: () => void, ms: number): () => void {
    const t = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(t);
    this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
    return () => {
      this.#timers = this.#timers.filter((x) => x !== t);
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.timer(r, ms));
  }

  yield(): Promise<void> {
    return this.sleep(0);
  }

  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Fires timers in order, jumping time to each, until `p` settles; its outcome. */
  async settle<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown }> {
    let out: { value: T } | { error: unknown } | undefined;
    p.then((value) => (out = { value }), (error) => (out = { error }));
    while (true) {
      // A macrotask turn: the wait's promise chains run to their next timer.
      await new Promise((r) => setTimeout(r, 0));
      if (out) return out;
      const t = this.#timers.shift();
      if (!t) throw new Error("the wait is stuck: no timer left and not settled");
      this.#now = t.at;
      t.fn();
    }
  }
}

interface Ev {
  name: string;
}

/** A feed like QmpClient.feed: events pushed by the test, watchers told of each. */
class FakeFeed implements EventFeed<Ev> {
  readonly events: Ev[] = [];
  readonly watchers = new Set<{ arrived: (e: Ev, i: number) => void; ended: (e: Error) => void }>();
  #ended: Error | null = null;

  watch(what: string, arrived: (e: Ev, i: number) => void, ended: (e: Error) => void): () => void {
    if (this.#ended) {
      ended(new Error(`${this.#ended.message} while waiting for ${what}`));
      return () => {};
    }
    const w = { arrived, ended };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  describe(e: Ev): string {
    return e.name;
  }

  push(...names: string[]): void {
    for (const name of names) {
      const e = { name };
      this.events.push(e);
      for (const w of [...this.watchers]) w.arrived(e, this.events.length - 1);
    }
  }

  end(why: string): void {
    this.#ended = new Error(why);
    for (const w of [...this.watchers]) w.ended(new Error(why));
    this.watchers.clear();
  }
}

function timeoutOf(r: { value: unknown } | { error: unknown }): WaitTimeoutError {
  assert.ok("error" in r && r.error instanceof WaitTimeoutError, `not a timeout: ${JSON.stringify(r)}`);
  return r.error;
}

Deno.test("a condition times out in the one shape: what, what it saw last, the probe error, the diagnosis", async () => {
  const clock = new ManualClock();
  let n = 0;
  const r = await clock.settle(waitFor("status 'completed'", (see) => {
    see(`status 'active' (probe ${++n})`);
    if (n === 3) throw new Error("query-migrate: no answer");
    return false;
  }, { timeoutMs: 100, intervalMs: 50, clock, diagnose: () => "  source: active\n  target: active" }));
  // Probed at 0, 50 and 100 virtual ms: the third is the last, it failed after saying what it saw.
  assert.equal(
    timeoutOf(r).message,
    "timed out after 100 ms waiting for status 'completed'; last seen: status 'active' (probe 3)\n" +
      "last probe error: query-migrate: no answer\n" +
      "  source: active\n  target: active",
  );
  assert.equal(clock.pending, 0);
});

Deno.test("a condition that says nothing is reported by its probe count; a failing diagnosis keeps the timeout", async () => {
  const clock = new ManualClock();
  const r = await clock.settle(waitFor("x", () => undefined, {
    timeoutMs: 20,
    intervalMs: 10,
    clock,
    diagnose: () => Promise.reject(new Error("side gone")),
  }));
  assert.equal(
    timeoutOf(r).message,
    "timed out after 20 ms waiting for x; last seen: no answer that satisfies it, in 3 probes\n" +
      "(diagnosis failed: side gone)",
  );
});

Deno.test("an event times out in the same shape, with the last events seen", async () => {
  const clock = new ManualClock();
  const feed = new FakeFeed();
  feed.push("A", "B", "C", "D", "E", "F");
  const wait = waitFor("event G", { feed, since: 2, match: (e) => e.name === "G" }, {
    timeoutMs: 500,
    clock,
    diagnose: () => "  source: active",
    timeoutError: (msg) => new SideTimeout(msg),
  });
  // Woken by arrivals only: the one timer is the deadline.
  assert.equal(clock.pending, 1);
  assert.equal(feed.watchers.size, 1);
  const r = await clock.settle(wait);
  const e = timeoutOf(r);
  assert.ok(e instanceof SideTimeout, "the caller's timeout class");
  assert.equal(
    e.message,
    "timed out after 500 ms waiting for event G; last seen: 6 events, the last: #1 B; #2 C; #3 D; #4 E; #5 F\n" +
      "  source: active",
  );
  assert.equal(clock.now(), 500);
  assert.equal(feed.watchers.size, 0, "the watch outlived the wait");
  const none = await clock.settle(waitFor("event G", { feed: new FakeFeed(), match: () => true }, {
    timeoutMs: 5,
    clock,
  }));
  assert.equal(timeoutOf(none).message, "timed out after 5 ms waiting for event G; last seen: no events");
});

class SideTimeout extends WaitTimeoutError {}

Deno.test("an event received before the wait counts from `since`; a later one wakes it at its arrival", async () => {
  const clock = new ManualClock();
  const feed = new FakeFeed();
  feed.push("STOP", "RESUME", "STOP");
  const opts = { timeoutMs: 1000, clock };
  const stop = (e: Ev) => e.name === "STOP";
  // Already there at index >= since: found without a timer or a watch.
  assert.equal(await waitFor("STOP", { feed, since: 1, match: stop }, opts), feed.events[2]);
  assert.equal(await waitFor("STOP", { feed, match: stop }, opts), feed.events[0]);
  assert.equal(clock.pending, 0);
  // From index 3 on nothing matches yet: the arrival ends it, at virtual time 0.
  const later = waitFor("STOP", { feed, since: 3, match: stop }, opts);
  feed.push("RESUME", "STOP");
  assert.equal(await later, feed.events[4]);
  assert.equal(clock.now(), 0);
  assert.equal(clock.pending, 0, "the deadline outlived the wait");
  assert.equal(feed.watchers.size, 0);
});

Deno.test("an event wait fails with a throwing match or a feed that ends", async () => {
  const clock = new ManualClock();
  const feed = new FakeFeed();
  const bad = waitFor("X", {
    feed,
    match: () => {
      throw new Error("bad predicate");
    },
  }, { timeoutMs: 1000, clock });
  feed.push("A");
  await assert.rejects(bad, /^Error: bad predicate$/);
  const ending = waitFor("event X", { feed, since: 1, match: () => false }, { timeoutMs: 1000, clock });
  feed.end("connection closed");
  await assert.rejects(ending, /^Error: connection closed$/);
  // An ended feed ends a later wait at once.
  await assert.rejects(
    waitFor("event X", { feed, since: 1, match: () => false }, { timeoutMs: 1000, clock }),
    /connection closed while waiting for event X/,
  );
  assert.equal(clock.pending, 0);
});

Deno.test("WaitAbort from a probe or an event wait's check ends the wait at once; other errors are retried", async () => {
  // On the host's clock with a minute to go: a wait that ran on, or a timer left behind, fails the test.
  const t0 = performance.now();
  await assert.rejects(
    waitFor("completed", () => {
      throw new WaitAbort("status 'failed'");
    }, { timeoutMs: 60_000 }),
    (e: unknown) => e instanceof WaitAbort && e.message === "status 'failed'",
  );
  const feed = new FakeFeed();
  let checks = 0;
  await assert.rejects(
    waitFor("event RESUME", {
      feed,
      match: (e) => e.name === "RESUME",
      check: () => {
        if (++checks < 3) throw new Error("not sure yet");
        if (checks === 5) throw new WaitAbort("target exited");
      },
    }, { timeoutMs: 60_000, intervalMs: 1 }),
    /^Error: target exited$/,
  );
  assert.equal(checks, 5);
  assert.equal(feed.watchers.size, 0);
  assert.ok(performance.now() - t0 < 5000, "a WaitAbort did not end the wait");
});

Deno.test("a virtual clock is the only time a wait reads: a minute passes at once, probed on its schedule", async () => {
  const clock = new ManualClock();
  let probes = 0;
  const t0 = performance.now();
  const r = await clock.settle(waitFor("never", () => {
    probes++;
    return false;
  }, { timeoutMs: 60_000, intervalMs: 1000, clock }));
  assert.match(timeoutOf(r).message, /^timed out after 60000 ms waiting for never; last seen: .* 61 probes$/);
  assert.equal(probes, 61, "probed at 0, 1 s, ..., 60 s of the virtual clock");
  assert.equal(clock.now(), 60_000);
  assert.ok(performance.now() - t0 < 5000);
  // An event wait's deadline and its check's interval are the clock's too.
  const feed = new FakeFeed();
  const seenAt: number[] = [];
  const ev = waitFor("event X", {
    feed,
    match: (e) => e.name === "X",
    check: () => void seenAt.push(clock.now()),
  }, { timeoutMs: 30, intervalMs: 10, clock });
  const timedOut = await clock.settle(ev);
  assert.match(timeoutOf(timedOut).message, /^timed out after 30 ms waiting for event X/);
  assert.deepEqual(seenAt, [60_000, 60_010, 60_020]);
  assert.equal(clock.now(), 60_030);
  assert.equal(clock.pending, 0);
});

Deno.test("colo's waitEventAt expressed as an event wait: from an index, bounded, ended by a broken side", async () => {
  const clock = new ManualClock();
  const feed = new FakeFeed();
  feed.push("RESUME", "STOP");
  let exited = false;
  // waitEventAt(p, side, "RESUME", since, what, bound, broke) is p.wait(what, this, bound), then `.index`.
  const at = (since: number) => ({
    feed,
    since,
    match: (e: Ev) => e.name === "RESUME",
    check: () => {
      if (exited) throw new WaitAbort("target exited (status 134: abort) before checkpoint 1");
    },
  });
  assert.equal(await waitFor("RESUME", at(0), { timeoutMs: 100, intervalMs: 5, clock }), feed.events[0]);
  const broken = waitFor("RESUME", at(1), { timeoutMs: 100, intervalMs: 5, clock });
  const r = clock.settle(broken);
  exited = true;
  const out = await r;
  assert.ok("error" in out && out.error instanceof WaitAbort && /status 134/.test(out.error.message));
  assert.equal(clock.now(), 5, "ended at the next check, not at the bound");
  assert.equal(clock.pending, 0);
});
