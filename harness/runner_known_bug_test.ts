/**
 * Known bugs as expected failures: a case that fails the way its known bug makes it fail is XFAIL (not a
 * pass, not a failure); one that passes is XPASS (a failure to look at); another failure stays a failure.
 * The case is the canary: one byte of a page corrupted in flight, deterministically caught.
 */
import assert from "node:assert/strict";
import type { PrecopyCase } from "./families/precopy/case.ts";
import { junitXml } from "./junit.ts";
import { runCase } from "./runner.ts";
import type { KnownBug } from "./world/world.ts";

const corrupted: PrecopyCase = {
  name: "/migration/test/known-bug",
  tier: "smoke",
  flow: "precopy",
  why: "a stand-in for a case that hits a known bug",
  transport: "unix",
  srcParams: { "zero-page-detection": "none" },
  fault: { kind: "corrupt", offset: 120 + 40 * (8 + 4096) + 0x64, xor: 0x5a },
};

const bug: KnownBug = {
  id: "test-corrupt-page",
  summary: "a page arrives with one byte changed",
  versions: "test",
  symptom: /guest RAM differs in 1 page/,
};

Deno.test("known bug: the failure it causes is XFAIL, shown as such in JUnit", async () => {
  const r = await runCase(corrupted, { seed: 1, artifactsDir: null, knownBug: bug });
  assert.equal(r.ok, true);
  assert.equal(r.xfail?.id, "test-corrupt-page");
  assert.match(
    junitXml("t", [r]),
    /<skipped type="xfail" message="XFAIL: known bug test-corrupt-page \(test\)/,
  );
});

Deno.test("known bug: a case that passes is XPASS, a failure", async () => {
  const r = await runCase({ ...corrupted, fault: undefined }, { seed: 1, artifactsDir: null, knownBug: bug });
  assert.equal(r.ok, false);
  assert.equal(r.xpass?.id, "test-corrupt-page");
  assert.match(r.error!.message, /XPASS: known bug test-corrupt-page \(test\) did not happen/);
});

Deno.test("known bug: a different failure is a plain failure", async () => {
  const other = { ...bug, symptom: /Unknown savevm section/ };
  const r = await runCase(corrupted, { seed: 1, artifactsDir: null, knownBug: other });
  assert.equal(r.ok, false);
  assert.equal(r.xfail, undefined);
  assert.match(r.error!.message, /guest RAM differs/);
});

Deno.test("known bug: a known hang ends its waits after hangMs, with the same failure, as XFAIL", async () => {
  const hung: PrecopyCase = {
    ...corrupted,
    name: "/migration/test/known-hang",
    caps: ["multifd"],
    srcParams: { "multifd-channels": 2 },
    dstParams: { "multifd-channels": 2 },
    fault: undefined,
    // The destination's channel 0 holds its first packet for ten minutes: the migration never completes.
    dstFaults: [{ kind: "multifd-channel-delay", channel: 0, delayMs: 600_000 }],
  };
  const hang: KnownBug = {
    id: "test-hang",
    summary: "a multifd channel that never delivers",
    versions: "test",
    symptom: /timed out after 1500 ms waiting for source migration status 'completed'/,
    hangMs: 1500,
  };
  const t0 = performance.now();
  const r = await runCase(hung, { seed: 1, artifactsDir: null, knownBug: hang });
  assert.equal(r.xfail?.id, "test-hang", r.error?.message);
  assert.ok(performance.now() - t0 < 20_000, "the waits took the usual 30 s");
});
