import assert from "node:assert/strict";
import { fmt, gb, mean, median, pct } from "./stats.ts";

Deno.test("bench stats: quantiles by rank, median, mean, formatting", () => {
  const xs = [5, 1, 4, 2, 3];
  assert.equal(median(xs), 3);
  assert.equal(pct(xs, 0.5), 3);
  assert.equal(pct(xs, 0.99), 5);
  assert.equal(pct(xs, 0), 1);
  assert.equal(mean(xs), 3);
  assert.deepEqual(xs, [5, 1, 4, 2, 3], "inputs are not sorted in place");
  assert.equal(gb(1.5e9), "1.50 GB/s");
  assert.equal(fmt([1, 2]), "p50 2.00 ms, p99 2.00 ms, max 2.00 ms (n=2)");
});
