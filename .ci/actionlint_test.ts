import assert from "node:assert/strict";
import { formatProblem, lintWorkflow } from "./actionlint.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("actionlint: flags a broken workflow (an undefined matrix key, a non-number timeout)", async () => {
  const broken = [
    "name: broken",
    "on: push",
    "jobs:",
    "  t:",
    "    runs-on: ubuntu-latest",
    "    timeout-minutes: soon",
    "    steps:",
    "      - run: echo ${{ matrix.nope }}",
  ].join("\n");
  const found = await lintWorkflow(broken, "broken.yml");
  const lines = found.map(formatProblem);
  assert.ok(
    lines.some((l) => /^broken\.yml:8:\d+: property "nope" is not defined/.test(l)),
    lines.join("\n"),
  );
  assert.ok(found.some((p) => p.line === 6), lines.join("\n"));
});

Deno.test("actionlint: the repository's workflows are clean", async () => {
  for await (const e of Deno.readDir(new URL(".github/workflows/", ROOT))) {
    const path = `.github/workflows/${e.name}`;
    const found = await lintWorkflow(await Deno.readTextFile(new URL(path, ROOT)), path);
    assert.deepEqual(found.map(formatProblem), []);
  }
});
