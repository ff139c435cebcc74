import assert from "node:assert/strict";
import { BUFFER_DELAY_MS, slotEnded } from "./rate_limit.ts";

Deno.test("rate limit: a sleep to the slot's end ends the slot, whatever the rounding", () => {
  // A slot that began at `start`; at `now` the loop sleeps `start + 100 - now`; the clock wakes it at
  // now + that, which here lands an ulp short of start + 100 (the simulation's file cases spun on it).
  const start = 210.78043752691988;
  const now = 225.35844245704507;
  const woke = now + (start + BUFFER_DELAY_MS - now);
  assert.ok(woke - start < BUFFER_DELAY_MS, "the rounding this guards against");
  assert.ok(slotEnded(woke, start));
  assert.ok(!slotEnded(start + 99.9, start));
  assert.ok(slotEnded(start + 100, start));
});
