import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  applyPatch,
  checkBattery,
  countOccurrences,
  type Mutant,
  mutatedCopy,
  PatchError,
  unifiedDiff,
} from "./apply.ts";
import { BATTERY, SUBSETS } from "./battery.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const m = (find: string, replace: string): Mutant => ({
  name: "t",
  file: "f.ts",
  find,
  replace,
  why: "test",
});

Deno.test("applyPatch replaces a find text that occurs exactly once", () => {
  assert.equal(applyPatch("a\nb = 1;\nc\n", m("b = 1;", "b = 2;")), "a\nb = 2;\nc\n");
});

Deno.test("applyPatch refuses a find text that is missing, repeated or empty, naming the mutant and file", () => {
  assert.throws(() => applyPatch("x = 1;", m("y = 1;", "y = 2;")), (e: Error) => {
    return e instanceof PatchError && /mutant t: .* 0 time\(s\) in f\.ts/.test(e.message);
  });
  assert.throws(() => applyPatch("x; x;", m("x;", "y;")), /2 time\(s\)/);
  assert.throws(() => applyPatch("x", m("", "y")), /\(empty\)/);
  assert.throws(() => applyPatch("x;", m("x;", "x;")), /find and replace are the same/);
});

Deno.test("applyPatch keeps $ sequences of the replacement literal", () => {
  assert.equal(applyPatch("a = b;", m("b", "`${$&}`")), "a = `${$&}`;");
});

Deno.test("countOccurrences does not count overlapping matches", () => {
  assert.equal(countOccurrences("aaaa", "aa"), 2);
  assert.equal(countOccurrences("abc", "d"), 0);
});

Deno.test("unifiedDiff is one hunk with three lines of context and correct ranges", () => {
  const before = ["1", "2", "3", "4", "5", "6", "7", "8"].join("\n") + "\n";
  const after = applyPatch(before, m("5\n", "five\nfive-b\n"));
  assert.equal(
    unifiedDiff("f.ts", before, after),
    "--- a/f.ts\n+++ b/f.ts\n@@ -2,7 +2,8 @@\n 2\n 3\n 4\n-5\n+five\n+five-b\n 6\n 7\n 8\n",
  );
  // A pure deletion at the start: no context before it, the old range starts at line 1.
  const del = unifiedDiff("f.ts", "a\nb\nc\n", "b\nc\n");
  assert.equal(del, "--- a/f.ts\n+++ b/f.ts\n@@ -1,4 +1,3 @@\n-a\n b\n c\n \n");
  assert.equal(unifiedDiff("f.ts", "same\n", "same\n"), "");
});

Deno.test("the battery applies to this tree: every find text occurs exactly once, names are unique", async () => {
  assert.deepEqual(await checkBattery(ROOT, BATTERY), []);
  const counted = BATTERY.filter((x) => !x.equivalent);
  assert.ok(counted.length >= 40, `only ${counted.length} counted mutants`);
  assert.ok(
    BATTERY.filter(SUBSETS.ci).every((x) => !x.equivalent),
    "the CI subset runs counted mutants only",
  );
});

Deno.test("checkBattery reports a mutant whose code moved and a name used twice", async () => {
  const moved = { ...BATTERY[0], find: BATTERY[0].find + "\n// not in the engine" };
  const problems = await checkBattery(ROOT, [moved, BATTERY[1], BATTERY[1]]);
  assert.equal(problems.length, 2);
  assert.match(problems[0], new RegExp(`mutant ${moved.name}: the find text occurs 0 time`));
  assert.match(problems[1], /name used twice/);
});

Deno.test("mutatedCopy patches a copy and leaves the real tree alone", async () => {
  const mutant = BATTERY.find((x) => x.file === "engine/ram.ts")!;
  const real = await readFile(join(ROOT, mutant.file), "utf8");
  const dir = await mutatedCopy(ROOT, mutant);
  try {
    const copied = await readFile(join(dir, mutant.file), "utf8");
    assert.equal(copied, applyPatch(real, mutant));
    assert.equal(await readFile(join(ROOT, mutant.file), "utf8"), real);
    assert.ok((await Deno.stat(join(dir, "deno.json"))).isFile);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
