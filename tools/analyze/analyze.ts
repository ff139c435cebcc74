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
import { parseArgs } from "node:util";
import { analyzeStream } from "./stream.ts";
import { findVmdesc } from "./vmdesc.ts";

const USAGE = "usage: deno task analyze FILE [--offset N] [--dump state|desc] [--ram]";

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const CONSOLE: CliIo = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** Runs the CLI on `args`; returns the exit status. */
export async function main(args: string[], io: CliIo = CONSOLE): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        offset: { type: "string" },
        dump: { type: "string" },
        ram: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    io.err(`analyze: ${errorMessage(e)}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const dump = values.dump;
  if (positionals.length !== 1 || (dump !== undefined && dump !== "state" && dump !== "desc")) {
    io.err(USAGE);
    return 2;
  }
  const offset = values.offset === undefined ? 0 : Number(values.offset);
  if (!Number.isSafeInteger(offset) || offset < 0) {
    io.err(`analyze: --offset must be a non-negative integer, got '${values.offset}'`);
    return 2;
  }
  const file = positionals[0];
  try {
    if (dump === "desc") {
      const found = await findVmdesc(file, { offset });
      if (!found) throw new Error(`${file}: no vmdesc (QEMU_VM_VMDESCRIPTION) at the end of the file`);
      io.out(JSON.stringify(found.json, null, 2));
    } else {
      const res = await analyzeStream(file, { offset, ram: values.ram });
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
