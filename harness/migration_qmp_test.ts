import assert from "node:assert/strict";
import { passesTimeoutMs } from "./migration_qmp.ts";

Deno.test("passesTimeoutMs: twice the pair's wait, or the case's own longer limit, never shorter", () => {
  assert.equal(passesTimeoutMs(30_000), 60_000);
  // A slow case (four passes at 3 MB/s) waits as long as its limit allows.
  assert.equal(passesTimeoutMs(30_000, 180_000), 180_000);
  // A case with a short limit does not make its pass wait shorter than every other case's.
  assert.equal(passesTimeoutMs(30_000, 10_000), 60_000);
});
