import assert from "node:assert/strict";
import { AutoConverge, type ThrottleParams } from "./cpu_throttle.ts";

const P: ThrottleParams = {
  "throttle-trigger-threshold": 50,
  "cpu-throttle-initial": 5,
  "cpu-throttle-increment": 25,
  "cpu-throttle-tailslow": false,
  "max-cpu-throttle": 95,
};

Deno.test("auto-converge: two high periods in a row start the throttle, each further pair raises it, capped", () => {
  const set: number[] = [];
  const a = new AutoConverge((pct) => set.push(pct));
  let sent = 0;
  const period = (dirtied: number, bytes: number) => a.period(dirtied, sent += bytes, P);
  period(100, 1000); // dirtied 10 % of what was sent: calm
  period(600, 1000); // high once
  assert.deepEqual(set, []);
  period(600, 1000); // high twice: initial
  assert.deepEqual(set, [5]);
  period(600, 1000);
  period(100, 1000); // a calm period in between does not reset the count (as QEMU's)
  assert.deepEqual(set, [5]);
  period(600, 1000);
  assert.deepEqual(set, [5, 30]);
  for (let i = 0; i < 10; i++) period(600, 1000);
  assert.deepEqual(set, [5, 30, 55, 80, 95, 95, 95], "never past max-cpu-throttle");
  a.stop();
  assert.equal(a.percentage, 0);
  assert.equal(set.at(-1), 0, "the end of the migration lifts it");
});

Deno.test("auto-converge: tailslow raises by no more than the dirty rate needs", () => {
  const set: number[] = [];
  const a = new AutoConverge((pct) => set.push(pct));
  const p = { ...P, "cpu-throttle-tailslow": true, "cpu-throttle-initial": 20 };
  let sent = 0;
  const period = (dirtied: number) => a.period(dirtied, sent += 1000, p);
  period(600);
  period(600);
  assert.deepEqual(set, [20]);
  // Dirtied 550 against a threshold of 500: the ideal CPU share is 80 % × 500/550 ≈ 72.7 %: +7, not +25.
  period(550);
  period(550);
  assert.deepEqual(set, [20, 27]);
});
