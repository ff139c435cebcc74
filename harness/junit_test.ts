import assert from "node:assert/strict";
import { junitXml } from "./junit.ts";

Deno.test("junit: escapes names and messages, counts failures", () => {
  const xml = junitXml("migtest", [
    { name: "/migration/a", ok: true, seed: 1, timeMs: 1500, stats: {} },
    { name: "/migration/<b>", ok: false, seed: 2, timeMs: 10, stats: {}, error: new Error('x "y"\n\u0001z') },
  ]);
  assert.match(xml, /<testsuites name="migtest" tests="2" failures="1" skipped="0" time="1.510">/);
  assert.match(xml, /name="\/migration\/&#60;b&#62;"/);
  assert.match(xml, /<failure message="x &#34;y&#34;">x &#34;y&#34;\nz<\/failure>/);
});

Deno.test("junit: one suite per family; a skipped case has <skipped> with its reason, not a pass", () => {
  const xml = junitXml("migtest.qemu.full", [
    { name: "/migration/precopy/unix/plain", ok: true, seed: 1, timeMs: 1000, stats: {} },
    {
      name: "/migration/colo/plain/x",
      ok: true,
      skipped: "COLO on QEMU needs <this>",
      seed: 1,
      timeMs: 0,
      stats: {},
    },
    { name: "/migration/precopy/tcp/plain", ok: true, seed: 1, timeMs: 500, stats: {} },
  ]);
  assert.match(
    xml,
    /<testsuite name="migtest.qemu.full.precopy" tests="2" failures="0" skipped="0" time="1.500">/,
  );
  assert.match(xml, /<testsuite name="migtest.qemu.full.colo" tests="1" failures="0" skipped="1"/);
  assert.match(xml, /<skipped message="COLO on QEMU needs &#60;this&#62;"\/>/);
  assert.equal(xml.match(/<skipped /g)?.length, 1);
});
