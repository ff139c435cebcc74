import assert from "node:assert/strict";
import { p99Bucket } from "./postcopy.ts";

Deno.test("postcopy bench: the p99 bucket bound of a 2^k µs histogram", () => {
  assert.equal(p99Bucket([]), undefined);
  assert.equal(p99Bucket([0, 0, 0]), undefined);
  // 100 faults in [2, 4) µs: the bound is 4.
  assert.equal(p99Bucket([0, 100]), 4);
  // 98 fast ones and 2 in [16, 32): the 99th percentile is among the slow ones.
  assert.equal(p99Bucket([98, 0, 0, 0, 2]), 32);
  // 99 fast, 1 slow: the 99th is still fast.
  assert.equal(p99Bucket([99, 0, 0, 1]), 2);
});
