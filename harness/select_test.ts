/** Selection: exact names win over substrings, named cases run in any tier, regexes work for any pattern. */
import assert from "node:assert/strict";
import type { PrecopyCase } from "./families/precopy/case.ts";
import { exactNameRegex, familyOf, selectCases } from "./select.ts";

const mk = (name: string, tier: PrecopyCase["tier"]): PrecopyCase => ({
  name,
  tier,
  flow: "precopy",
  why: "x",
});
const CASES = [
  mk("/migration/precopy/unix/plain", "smoke"),
  mk("/migration/precopy/unix/plain/pc-odd", "full"),
  mk("/migration/precopy/unix/xbzrle", "slow"),
  mk("/migration/multifd/tcp/plain/zstd", "full"),
];
const names = (s: Parameters<typeof selectCases>[1]) => selectCases(CASES, s).map((c) => c.name);

Deno.test("select: no filter runs the smoke tier; --tier narrows", () => {
  assert.deepEqual(names({}), ["/migration/precopy/unix/plain"]);
  assert.equal(names({ tier: "full" }).length, 3);
  assert.equal(names({ tier: "slow" }).length, 4);
});

Deno.test("select: an exact name selects that case only, whatever its tier", () => {
  assert.deepEqual(names({ filters: ["/migration/precopy/unix/plain"] }), ["/migration/precopy/unix/plain"]);
  assert.deepEqual(names({ filters: ["/migration/precopy/unix/xbzrle"] }), [
    "/migration/precopy/unix/xbzrle",
  ]);
  // --tier still narrows when given.
  assert.deepEqual(names({ filters: ["/migration/precopy/unix/xbzrle"], tier: "full" }), []);
});

Deno.test("select: a substring selects every match in every tier; a regex any pattern", () => {
  assert.equal(names({ filters: ["/migration/precopy"] }).length, 3);
  assert.deepEqual(names({ regexes: [/^\/migration\/multifd\/.*zstd$/] }), [
    "/migration/multifd/tcp/plain/zstd",
  ]);
  assert.deepEqual(names({ regexes: [/pc-odd$/], filters: ["zstd"] }), [
    "/migration/precopy/unix/plain/pc-odd",
    "/migration/multifd/tcp/plain/zstd",
  ]);
});

Deno.test("select: the exact-name regex for deno test matches one name only", () => {
  const re = exactNameRegex("/migration/precopy/unix/plain");
  assert.ok(re.startsWith("/") && re.endsWith("/"));
  const r = new RegExp(re.slice(1, -1));
  assert.ok(r.test("/migration/precopy/unix/plain"));
  assert.ok(!r.test("/migration/precopy/unix/plain/pc-odd"));
  assert.ok(!new RegExp(exactNameRegex("/a.b").slice(1, -1)).test("/axb"));
});

Deno.test("select: families", () => {
  assert.equal(familyOf("/migration/colo/multifd/x"), "colo");
});
