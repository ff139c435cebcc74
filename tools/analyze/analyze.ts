/**
 * `deno task analyze FILE [--offset N] [--dump state|desc] [--ram]`: an offline parser for migration
 * streams saved to a file (a `file:` or `exec:cat > FILE` migration, from our engine or from QEMU), in
 * the spirit of upstream's scripts/analyze-migration.py.
 *
 * Output (JSON on stdout):
 * - by default, the summary: header, configuration, every section, RAM page counts (and with `--ram`
 *   per-block digests), the device state, the vmdesc's position, warnings;
 * - `--dump state`: the device state alone, keyed "idstr (instance)" (analyze-migration.py's `-d state`);
 * - `--dump desc`: the vmdesc JSON alone (`-d desc`).
 *
 * Every offset reported (in the output and in errors) is a byte offset in the file. A malformed stream
 * prints one line on stderr naming what was wrong and where, and exits 1; bad usage exits 2.
 *
 * The parts: types.ts (the output), source.ts (file, bytes, Link), vmdesc.ts (the tail scan), stream.ts
 * (framing and sections), ram_records.ts (the "ram" section), devices.ts (device state via the vmdesc).
 */
import { errorMessage } from "../../engine/error.ts";
import type { ParseArgsOptionsConfig } from "node:util";
import {
  type Cli,
  type CliArgs,
  type CliIo,
  CONSOLE_IO,
  parseChoice,
  parseNonNegative,
  readCli,
  UsageError,
} from "../../engine/cli.ts";
import { analyzeStream } from "./stream.ts";
import { findVmdesc } from "./vmdesc.ts";

const USAGE = "usage: deno task analyze FILE [--offset N] [--dump state|desc] [--ram]";

const CLI = {
  tool: "analyze",
  usage: USAGE,
  options: {
    offset: { type: "string" },
    dump: { type: "string" },
    ram: { type: "boolean", default: false },
  },
  positionals: true,
} satisfies Cli<ParseArgsOptionsConfig>;

function analyzeOptions({ values: v, positionals }: CliArgs<typeof CLI.options>) {
  if (positionals.length !== 1) throw new UsageError(`expects one FILE, got ${positionals.length}`);
  return {
    file: positionals[0],
    offset: v.offset === undefined ? 0 : parseNonNegative(v.offset, "--offset"),
    dump: v.dump === undefined ? undefined : parseChoice(v.dump, ["state", "desc"], "--dump"),
    ram: v.ram,
  };
}

/** Runs the CLI on `args`; returns the exit status. */
export async function main(args: readonly string[], io: CliIo = CONSOLE_IO): Promise<number> {
  const cli = readCli(CLI, args, analyzeOptions, io);
  if ("status" in cli) return cli.status;
  const { file, offset, dump, ram } = cli.args;
  try {
    if (dump === "desc") {
      const found = await findVmdesc(file, { offset });
      if (!found) throw new Error(`${file}: no vmdesc (QEMU_VM_VMDESCRIPTION) at the end of the file`);
      io.out(JSON.stringify(found.json, null, 2));
    } else {
      const res = await analyzeStream(file, { offset, ram });
      io.out(JSON.stringify(dump === "state" ? res.devices : res, null, 2));
    }
    return 0;
  } catch (e) {
    const msg = errorMessage(e);
    io.err(`analyze: ${file}: ${msg.replaceAll("\n", " ")}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
