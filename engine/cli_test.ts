/**
 * The shared command line: --help, usage errors in one line, the value parsers; then every `deno task`
 * tool as a process, so that none of them answers --help or a bad option in its own way.
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

/**
 * Every tool `deno task` runs, by task name: the first line of its usage (and the name its messages start
 * with, where that is not the task's). A new tool is one line here; the test fails until it has one.
 */
const TOOLS: Record<string, { usage: string; says?: string }> = {
  matrix: { usage: "usage: deno task matrix [options]" },
  bench: { usage: "usage: deno task bench [--only sim|postcopy|file|tls] [--html FILE]" },
  swarm: { usage: "usage: deno task swarm [options]" },
  fuzz: { usage: "usage: deno task fuzz [options]" },
  engine: { usage: "usage: deno task engine --qmp unix:PATH [options]", says: "migtest-engine" },
  analyze: { usage: "usage: deno task analyze FILE [--offset N] [--dump state|desc] [--ram]" },
  fidelity: {
    usage:
      "usage: deno task fidelity [--qemu PATH]... [--filter TEXT]... [--tier smoke|full|slow] [--seed N]",
  },
  mutants: { usage: "usage: deno task mutants [options]" },
  actionlint: { usage: "usage: deno task actionlint [FILE...]" },
  upstream: { usage: "usage: deno task upstream [--qemu NAME=PATH]... [--write FILE | --check FILE]" },
  "qemu-build": { usage: "usage: deno task qemu-build SOURCE [--name NAME] [--jobs N]" },
};

const ROOT = new URL("../", import.meta.url);

/** The tasks that run a tool, from deno.json: name → the words after `deno run`. */
function toolTasks(): Map<string, string[]> {
  const { tasks } = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const out = new Map<string, string[]>();
  for (const [name, command] of Object.entries(tasks)) {
    const words = String(command).split(/\s+/);
    if (words[0] === "deno" && words[1] === "run") out.set(name, words.slice(2));
  }
  return out;
}

/** Runs `jobs` at most `limit` at a time (two shared cores: the tools' start-ups compete). */
async function pooled<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

Deno.test("cli: every deno task tool answers --help with its usage (0) and a bad option in one line (2)", async () => {
  const tasks = toolTasks();
  assert.deepEqual([...tasks.keys()].sort(), Object.keys(TOOLS).sort(), "deno.json's tools and this table");
  const decoder = new TextDecoder();
  const runs = [...tasks].flatMap(([name, words]) =>
    ["--help", "--no-such-option"].map((flag) => async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", ...words, flag],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdin: "null",
      }).output();
      return {
        name,
        flag,
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
    })
  );
  for (const r of await pooled(runs, 3)) {
    const { usage, says = r.name } = TOOLS[r.name];
    const what = `${r.name} ${r.flag}: status ${r.code}\n${r.stdout}${r.stderr}`;
    if (r.flag === "--help") {
      assert.equal(r.code, 0, what);
      assert.equal(r.stdout.split("\n")[0], usage, what);
    } else {
      assert.equal(r.code, 2, what);
      assert.equal(r.stdout, "", what);
      // One line (with operands, node:util adds how to pass one that starts with '-'), then the usage.
      const [line, blank, first] = r.stderr.split("\n");
      assert.ok(line.startsWith(`${says}: Unknown option '--no-such-option'`), what);
      assert.deepEqual([blank, first], ["", usage], what);
    }
  }
});
