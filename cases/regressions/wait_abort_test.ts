/**
 * Bug: waitFor treated every error thrown by a probe as "not yet" and kept polling, so a flow that saw
 * the awaited status become impossible (e.g. 'failed' while waiting for 'completed') only reported it
 * after the full timeout, 30 s later, and as a timeout. A FlowError from a probe must end the wait at once.
 */
import assert from "node:assert/strict";
import { FlowError } from "../../harness/framework.ts";
import { waitFor } from "../../engine/wait.ts";

Deno.test("regression: a FlowError thrown by a probe ends the wait at once", async () => {
  const t0 = performance.now();
  await assert.rejects(
    waitFor("completed", () => {
      throw new FlowError("source reached status 'failed' while waiting for 'completed'");
    }, { timeoutMs: 5000 }),
    (e: unknown) => e instanceof FlowError && /reached status 'failed'/.test(e.message),
  );
  assert.ok(performance.now() - t0 < 1000, "the wait ran on after the probe failed");
});

Deno.test("regression: other probe errors are retried until the timeout, then reported", async () => {
  let calls = 0;
  await assert.rejects(
    waitFor("x", () => {
      calls++;
      throw new Error("not yet");
    }, { timeoutMs: 50, intervalMs: 5 }),
    /timed out after 50 ms waiting for x; last seen: [^\n]*\nlast probe error: not yet$/,
  );
  assert.ok(calls > 2);
});
