/**
 * Bug: when a pair failed while starting (an engine exiting at start-up, a capability or parameter that
 * did not read back), the engines were reaped but the pair's private directory stayed behind, with its
 * logs and serial files. Nothing may be left after a case, failing or not.
 */
import assert from "node:assert/strict";
import { runCase } from "../../harness/runner.ts";

Deno.test("regression: a case whose pair cannot start leaves no directory behind", async () => {
  const root = await Deno.makeTempDir({ prefix: "migtest-root-" });
  try {
    const r = await runCase(
      {
        name: "/migration/regressions/start-failure",
        tier: "full",
        flow: "precopy",
        why: "a pair that cannot start leaves nothing behind",
        machine: "no-such-machine",
      },
      { seed: 1, artifactsDir: null, tmpRoot: root, waitMs: 10_000 },
    );
    assert.ok(!r.ok);
    assert.match(r.error!.message, /source exited with status 2 during startup/);
    assert.deepEqual([...Deno.readDirSync(root)], [], "the pair's directory was left behind");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
