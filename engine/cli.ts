/**
 * The command line of every `deno task` tool, in one place: node:util's parseArgs with `--help`/`-h` added,
 * one way to say a usage error (`<tool>: <what is wrong>`, then the usage, on stderr, exit 2, no stack),
 * and the value parsers the tools share (seeds, counts, choices).
 *
 * It lives in engine/ because the engine process is one of these tools and must load nothing above
 * engine/ (harness/layers_test.ts); every other layer, and .ci/, may import from engine/. It knows nothing
 * of migration.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { errorMessage } from "./error.ts";

/** A bad option or value: the tool's run ends with one line naming it, the usage, and exit status 2. */
export class UsageError extends Error {}

/** What a tool declares: its name in messages, its usage text, its options (`help` is added). */
export interface Cli<O extends ParseArgsOptionsConfig> {
  tool: string;
  usage: string;
  options: O;
  /** Whether it takes operands (e.g. FILE...); without, an operand is a usage error. */
  positionals?: boolean;
}

const HELP = { help: { type: "boolean", short: "h" } } as const;

/** The parsed command line: the values by option name and the operands. */
export type CliArgs<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: O & typeof HELP; strict: true; allowPositionals: true }>
>;

/** Where a tool's words go (a test captures them). */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export const CONSOLE_IO: CliIo = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** node:util's own errors for a bad command line; anything else thrown is a bug, not usage. */
function isParseArgsError(e: unknown): e is TypeError {
  return e instanceof TypeError && "code" in e && typeof e.code === "string" &&
    e.code.startsWith("ERR_PARSE_ARGS_");
}

/**
 * The command line as `check` makes it (it throws a UsageError for a bad value), or "help". A bad
 * option, a missing or unexpected value is a UsageError too, in one line.
 */
export function parseCli<const O extends ParseArgsOptionsConfig, R>(
  cli: Cli<O>,
  argv: readonly string[],
  check: (args: CliArgs<O>) => R,
): R | "help" {
  // node:util takes "--seed -1" as a forgotten value; a negative number is a value, to be judged as such.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = /^--([^=]+)$/.exec(argv[i])?.[1];
    const isString = name !== undefined && Object.hasOwn(cli.options, name) &&
      cli.options[name].type === "string";
    if (isString && /^-\d/.test(argv[i + 1] ?? "")) args.push(`${argv[i]}=${argv[++i]}`);
    else args.push(argv[i]);
  }
  let parsed: CliArgs<O>;
  try {
    parsed = parseArgs({
      args,
      options: { ...cli.options, ...HELP },
      strict: true,
      allowPositionals: cli.positionals ?? false,
    });
  } catch (e) {
    if (!isParseArgsError(e)) throw e;
    throw new UsageError(e.message.replaceAll("\n", " "));
  }
  // (Asked with `in`: the values' type is not resolved yet for a generic option table.)
  return "help" in parsed.values && parsed.values.help === true ? "help" : check(parsed);
}

/**
 * A tool's command line at its entry point: `{ args }` to run with, or the status its run ends with
 * here: 0 after `--help` (the usage on stdout), 2 after a usage error (one line and the usage on stderr).
 */
export function readCli<const O extends ParseArgsOptionsConfig, R>(
  cli: Cli<O>,
  argv: readonly string[],
  check: (args: CliArgs<O>) => R,
  io: CliIo = CONSOLE_IO,
): { args: R } | { status: 0 | 2 } {
  let args: R | "help";
  try {
    args = parseCli(cli, argv, check);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`${cli.tool}: ${e.message}\n\n${cli.usage}`);
    return { status: 2 };
  }
  if (args === "help") {
    io.out(cli.usage);
    return { status: 0 };
  }
  return { args };
}

/** readCli for a script that has no status to return: it exits there after --help or a usage error. */
export function cliOrExit<const O extends ParseArgsOptionsConfig, R>(
  cli: Cli<O>,
  argv: readonly string[],
  check: (args: CliArgs<O>) => R,
): R {
  const r = readCli(cli, argv, check);
  if ("status" in r) Deno.exit(r.status);
  return r.args;
}

/** Runs `parse` on a value whose parser (a library's) throws its own errors: they become usage errors. */
export function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(errorMessage(e));
  }
}

const MAX_SEED = 0xffff_ffff;

/** Seeds are 32-bit, as the engines and the simulated world take them: 0 … 2^32−1, in decimal. */
export function parseSeed(text: string, what: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_SEED) {
    throw new UsageError(`${what} must be an integer from 0 to ${MAX_SEED}, got '${text}'`);
  }
  return Number(text);
}

/** A count (jobs, runs, seeds, a time limit in whole units): 1 or more, in decimal. */
export function parseCount(text: string, what: string): number {
  if (!/^[1-9]\d*$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${what} must be a positive integer, got '${text}'`);
  }
  return Number(text);
}

/** An offset or a duration that may be 0: 0 or more, in decimal. */
export function parseNonNegative(text: string, what: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${what} must be a non-negative integer, got '${text}'`);
  }
  return Number(text);
}

/** One of a fixed set of words, as its type. */
export function parseChoice<const C extends readonly string[]>(
  text: string,
  choices: C,
  what: string,
): C[number] {
  const found = choices.find((c) => c === text);
  if (found === undefined) throw new UsageError(`${what} must be one of ${choices.join("|")}, got '${text}'`);
  return found;
}
