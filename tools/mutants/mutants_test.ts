import assert from "node:assert/strict";
import {
  failedCases,
  mutantLine,
  type MutantOutcome,
  parseMutantsArgs,
  runStages,
  scoreLine,
  selectMutants,
} from "./mutants.ts";
import { BATTERY } from "./battery.ts";

Deno.test("parseMutantsArgs: defaults, values, and bad input as one-line usage errors", () => {
  const d = parseMutantsArgs([]);
  assert.ok(d !== "help");
  assert.equal(d.runs, 3);
  assert.equal(d.jobs, 2);
  assert.equal(d.seed, 1);
  assert.equal(parseMutantsArgs(["--help"]), "help");
  assert.throws(() => parseMutantsArgs(["--runs", "0"]), /--runs must be a positive integer/);
  assert.throws(() => parseMutantsArgs(["--only", "no-such-mutant"]), /no mutant named 'no-such-mutant'/);
  assert.throws(() => parseMutantsArgs(["--subset", "nightly"]), /unknown subset 'nightly'/);
  assert.throws(() => parseMutantsArgs(["--bogus"]), /bogus/);
});

Deno.test("selectMutants: --only and --subset narrow, in battery order", () => {
  const name = BATTERY[3].name;
  assert.deepEqual(selectMutants({ only: [name] }).map((m) => m.name), [name]);
  const ci = selectMutants({ only: [], subset: "ci" });
  assert.ok(ci.length >= 3 && ci.every((m) => m.ci));
});

Deno.test("failedCases reads the matrix's JSON report; anything else is no report", () => {
  const json = JSON.stringify({
    run: {},
    results: [
      { name: "/a", result: "pass" },
      { name: "/b", result: "fail", error: "guest RAM differs\nblock pc.ram" },
      { name: "/c", result: "skip" },
    ],
  });
  assert.deepEqual(failedCases(json), [{ name: "/b", error: "guest RAM differs" }]);
  assert.equal(failedCases(""), null);
  assert.equal(failedCases("{}"), null);
});

Deno.test("scoreLine counts caught, deterministic, and leaves equivalent mutants out", () => {
  const [a, b, c] = BATTERY.filter((m) => !m.equivalent);
  const eq = BATTERY.find((m) => m.equivalent)!;
  const run = (verdict: "caught" | "missed" | "hung", seed: number) => ({
    seed,
    verdict,
    failed: [],
    wallMs: 1,
  });
  const outcomes: MutantOutcome[] = [
    { mutant: a, runs: [run("caught", 1), run("hung", 2)] },
    { mutant: b, runs: [run("caught", 1), run("missed", 2)] },
    { mutant: c, runs: [run("missed", 1), run("missed", 2)] },
    { mutant: eq, runs: [run("missed", 1)] },
  ];
  assert.equal(scoreLine(outcomes), "mutants: 2 caught of 3 (1 deterministically)");
  assert.match(mutantLine(outcomes[1]), /^caught .* 1\/2 runs \(not every run: seed 2 missed\)/);
  assert.match(mutantLine(outcomes[2]), /^MISSED /);
});

Deno.test("runStages: earlier catchers, then the file's families, then the rest: the whole full tier", () => {
  const colo = BATTERY.find((m) => m.file.startsWith("engine/colo/"))!;
  const [, family, rest] = runStages(colo, undefined, ["/migration/colo/x"]);
  assert.deepEqual(runStages(colo, undefined, ["/migration/colo/x"])[0], ["--filter", "/migration/colo/x"]);
  const group = (args: string[]) => new RegExp(args[args.indexOf("--regex") + 1]);
  for (const name of ["/migration/colo/plain", "/migration/regressions/colo-x", "/migration/multifd/tcp"]) {
    // Every case is in exactly one of the two tier stages.
    assert.notEqual(group(family).test(name), group(rest).test(name), name);
  }
  assert.ok(group(family).test("/migration/colo/plain") && !group(family).test("/migration/colorful"));
  assert.equal(runStages(colo, undefined, []).length, 2);
  assert.deepEqual(runStages(colo, "zero-churn", ["/a"]), [["--regex", "zero-churn"]]);
  const unmapped = { ...colo, file: "engine/options.ts" };
  assert.deepEqual(runStages(unmapped, undefined, []), [["--tier", "full"]]);
});
