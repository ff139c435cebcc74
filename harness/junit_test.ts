import assert from "node:assert/strict";
import { junitXml } from "./junit.ts";

Deno.test("junit: escapes names and messages, counts failures", () => {
  const xml = junitXml("migtest", [
    { name: "/migration/a", ok: true, seed: 1, timeMs: 1500, stats: {} },
    { name: "/migration/<b>", ok: false, seed: 2, timeMs: 10, stats: {}, error: new Error('x "y"\n\u0001z') },
  ]);
  assert.match(xml, /<testsuite name="migtest" tests="2" failures="1" time="1.510">/);
  assert.match(xml, /name="\/migration\/&#60;b&#62;"/);
  assert.match(xml, /<failure message="x &#34;y&#34;">x &#34;y&#34;\nz<\/failure>/);
});
