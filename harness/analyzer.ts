/**
 * The stream analyzer (`tools/analyze/analyze.ts`) run as its own process, as upstream runs
 * analyze-migration.py: the harness may not import the tools (harness/layers_test.ts), and a separate
 * process reads the file the way a user would, with read access to the pair's directory only.
 */
import type { DeviceState } from "./world/world.ts";

const ANALYZER = new URL("../tools/analyze/analyze.ts", import.meta.url).pathname;

/** How long the analyzer may take on one saved stream (a 150 MiB guest parses in well under a second). */
const ANALYZER_TIMEOUT_MS = 60_000;

/** Runs `deno task analyze FILE ...args` with read access to `dir`; its JSON output, or throws with its stderr. */
export async function runAnalyzer(file: string, dir: string, args: string[] = []): Promise<unknown> {
  const signal = AbortSignal.timeout(ANALYZER_TIMEOUT_MS);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--allow-read=${dir}`, ANALYZER, file, ...args],
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (signal.aborted) {
    throw new Error(`the analyzer did not finish on ${file} within ${ANALYZER_TIMEOUT_MS} ms`);
  }
  if (out.code !== 0) throw new Error(`the analyzer exited with status ${out.code}: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * The analyzer's `--dump state` (keyed "idstr (instance)", " #2" for a repeat) in the shape the device
 * checker compares (keyed "idstr/instance", "#2" kept), each device's fields as decoded, subsections
 * nested under their names.
 */
export function analyzerStateToDevices(dump: unknown): DeviceState {
  if (typeof dump !== "object" || dump === null) throw new Error(`analyzer state is not an object: ${dump}`);
  const out: DeviceState = {};
  for (const [key, fields] of Object.entries(dump)) {
    const m = /^(.*) \((\d+)\)( #\d+)?$/.exec(key);
    if (!m) throw new Error(`analyzer state has a device key it does not make: '${key}'`);
    if (typeof fields !== "object" || fields === null) throw new Error(`device '${key}' has no fields`);
    out[`${m[1]}/${m[2]}${m[3]?.trim() ?? ""}`] = { ...fields };
  }
  return out;
}
