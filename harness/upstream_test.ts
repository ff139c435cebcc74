import assert from "node:assert/strict";
import { UPSTREAM_PATH_COUNT, UPSTREAM_PATHS } from "./upstream.ts";

Deno.test("upstream paths: no path is listed twice", () => {
  const paths = UPSTREAM_PATHS.map((p) => p.path);
  assert.deepEqual(paths.filter((p, i) => paths.indexOf(p) !== i), []);
});

Deno.test("upstream paths: every path is well formed (no shorthand left unexpanded)", () => {
  // Segments of lower-case words joined by - _ +; under /migration/ except upstream's one /dirty_limit.
  const segments = /^(\/[a-z0-9][a-z0-9_+-]*)+$/;
  const bad = UPSTREAM_PATHS.filter((p) =>
    !segments.test(p.path) || !(p.path.startsWith("/migration/") || p.path === "/dirty_limit")
  );
  assert.deepEqual(bad, []);
  for (const p of UPSTREAM_PATHS) assert.ok(p.needs === undefined || p.needs.trim().length > 0, p.path);
});

Deno.test("upstream paths: the count is the stated one, and the smoke set is upstream's", () => {
  // 95 names on master + 8 COLO (harness/upstream.ts); upstream's smoke set on x86_64 is 15, 17 with RDMA.
  assert.equal(UPSTREAM_PATHS.length, UPSTREAM_PATH_COUNT);
  assert.equal(UPSTREAM_PATH_COUNT, 103);
  assert.equal(UPSTREAM_PATHS.filter((p) => p.set === "smoke").length, 17);
  assert.equal(UPSTREAM_PATHS.filter((p) => p.path.startsWith("/migration/colo/")).length, 8);
  assert.equal(UPSTREAM_PATHS.filter((p) => p.path.startsWith("/migration/cancel/src/after/")).length, 8);
});
