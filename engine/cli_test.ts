/**
 * The shared command line: --help, usage errors in one line, the value parsers.
 */
import assert from "node:assert/strict";
import {
  asUsage,
  type CliIo,
  parseChoice,
  parseCli,
  parseCount,
  parseNonNegative,
  parseSeed,
  readCli,
  UsageError,
} from "./cli.ts";

const USAGE = "usage: deno task demo [options]\n\n  --seed N   the seed\n";
const DEMO = {
  tool: "demo",
  usage: USAGE,
  options: { seed: { type: "string", default: "1" }, fast: { type: "boolean", default: false } },
} as const;

/** The demo tool run in this process: its status and what it printed. */
function demo(argv: string[], positionals = false) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const r = readCli({ ...DEMO, positionals }, argv, ({ values }) => parseSeed(values.seed, "--seed"), io);
  return { r, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("cli: --help and -h print the usage on stdout, status 0, whatever else is given", () => {
  for (const argv of [["--help"], ["-h"], ["--seed", "abc", "--help"]]) {
    const { r, out, err } = demo(argv);
    assert.deepEqual(r, { status: 0 }, argv.join(" "));
    assert.equal(out, USAGE);
    assert.equal(err, "");
  }
});

Deno.test("cli: a bad option or value is one line naming it, then the usage, on stderr, status 2", () => {
  for (
    const [argv, line] of [
      [["--no-such"], "demo: Unknown option '--no-such'"],
      [["-x"], "demo: Unknown option '-x'"],
      [["--seed"], "demo: Option '--seed <value>' argument missing"],
      [["--fast=yes"], "demo: Option '--fast' does not take an argument"],
      [["file"], "demo: Unexpected argument 'file'. This command does not take positional arguments"],
      // A value parser's verdict, thrown from the tool's check.
      [["--seed", "abc"], "demo: --seed must be an integer from 0 to 4294967295, got 'abc'"],
      // A negative number is a value (node:util would call it a forgotten one).
      [["--seed", "-1"], "demo: --seed must be an integer from 0 to 4294967295, got '-1'"],
    ] as const
  ) {
    const { r, out, err } = demo([...argv]);
    assert.deepEqual(r, { status: 2 }, argv.join(" "));
    assert.equal(out, "");
    assert.equal(err, `${line}\n\n${USAGE}`);
  }
  // node:util's three-line complaint about a value that looks like an option is said in one.
  const { err } = demo(["--seed", "--fast"]);
  assert.match(err, /^demo: Option '--seed' argument is ambiguous\. Did you forget .*\n\nusage: /);
});

Deno.test("cli: the parsed values and operands reach the check; anything but a UsageError is a bug", () => {
  assert.deepEqual(demo(["--seed", "7"]).r, { args: 7 });
  const ops = readCli(
    { ...DEMO, positionals: true },
    ["a", "--fast", "b"],
    (a) => [a.values.fast, a.positionals],
  );
  assert.deepEqual(ops, { args: [true, ["a", "b"]] });
  assert.equal(parseCli(DEMO, ["-h"], () => 1), "help");
  assert.throws(() => parseCli(DEMO, [], () => JSON.parse("{")), SyntaxError);
  assert.throws(() => asUsage(() => JSON.parse("{")), UsageError);
});

/** Whether an error is a UsageError saying exactly `message`. */
const usageError = (message: string) => (e: unknown) => e instanceof UsageError && e.message === message;

Deno.test("cli: seeds are 32-bit decimal integers", () => {
  assert.equal(parseSeed("0", "--seed"), 0);
  assert.equal(parseSeed("4294967295", "--seed"), 0xffff_ffff);
  for (const bad of ["-1", "1.5", "0x10", "4294967296", "abc", "", "1e3", " 1", "99999999999"]) {
    assert.throws(
      () => parseSeed(bad, "--seed"),
      usageError(`--seed must be an integer from 0 to 4294967295, got '${bad}'`),
      bad,
    );
  }
});

Deno.test("cli: counts, non-negative integers and choices", () => {
  assert.equal(parseCount("1", "--jobs"), 1);
  assert.equal(parseCount("12", "--jobs"), 12);
  for (const bad of ["0", "-2", "1.5", "01", "x", "", "99999999999999999999"]) {
    assert.throws(
      () => parseCount(bad, "--jobs"),
      usageError(`--jobs must be a positive integer, got '${bad}'`),
      bad,
    );
  }
  assert.equal(parseNonNegative("0", "--offset"), 0);
  assert.throws(
    () => parseNonNegative("-1", "--offset"),
    usageError("--offset must be a non-negative integer, got '-1'"),
  );
  const tier: "smoke" | "full" = parseChoice("full", ["smoke", "full"], "--tier");
  assert.equal(tier, "full");
  assert.throws(
    () => parseChoice("nightly", ["smoke", "full"], "--tier"),
    usageError("--tier must be one of smoke|full, got 'nightly'"),
  );
});
