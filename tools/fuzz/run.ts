/**
 * Running fuzz inputs: one input is its target's case with the input's edits on the wire (the simulated
 * link's, or the wire proxy's between real processes) or in the saved file, judged by the case's
 * "survives" outcome (harness/expect.ts) and by what escaped it: in the simulation an error nothing
 * awaited is a crash of a model process; a real process that crashes fails the case by its exit status.
 */
import { type CaseResult, runCase } from "../../harness/runner.ts";
import { createSimWorld } from "../../harness/world/sim.ts";
import type { World } from "../../harness/world/world.ts";
import { StreamMutator } from "../../harness/wire_mutate.ts";
import { errorMessage } from "../../engine/error.ts";
import { strayErrorsHandled } from "../../engine/multifd/compression.ts";
import { anchorsOf, type FuzzInput, RECORD_SEED, type Recording } from "./plan.ts";
import { type FuzzTarget, targetNamed } from "./targets.ts";

/** One input's end: survived (how), or a finding (why). */
export interface Outcome {
  input: FuzzInput;
  ok: boolean;
  /** How each side ended (and the target's error), or the finding: CRASH, STUCK, HANG or FAIL, and why. */
  what: string;
  timeMs: number;
  result?: CaseResult;
}

/** Errors thrown where nothing awaits them while an input runs (a crash of a model process). */
const stray: unknown[] = [];
export function onStray(e: PromiseRejectionEvent | ErrorEvent): void {
  e.preventDefault();
  stray.push("reason" in e ? e.reason : e.error);
}

export async function runInput(input: FuzzInput, opts: { keep?: boolean; world?: World } = {}): Promise<
  Outcome & { mutator: StreamMutator }
> {
  const target = targetNamed(input.target)!;
  const mutator = new StreamMutator(input.mutation, opts);
  const lines: string[] = [];
  stray.length = 0;
  const t0 = performance.now();
  // The simulated link edits the bytes itself; another world's sides talk through the wire proxy.
  const sim = !opts.world || opts.world.name === "sim";
  const onFile = target.kind === "file";
  const result = await runCase(target.case, {
    seed: input.seed,
    world: sim ? createSimWorld(onFile ? {} : { mutator }) : opts.world,
    ...(onFile ? { fileMutator: mutator } : sim ? {} : { wireMutator: mutator }),
    artifactsDir: null,
    // Longer than the source's wait for the destination's SHUT (30 s): a stream cut short of its end
    // leaves the destination waiting for the rest and the source for SHUT until that wait ends it. In the
    // simulation these are virtual: a hang costs no real time there.
    waitMs: 45_000,
    timeoutMs: 120_000,
    log: (m) => lines.push(m),
  });
  const timeMs = performance.now() - t0;
  const end = lines.find((l) => /^survives: (source (completed|failed|cancelled)|secondary)/.test(l)) ?? "";
  const error = lines.find((l) => l.startsWith("survives: target error: "));
  // What the engine's workaround for Deno's zstd stream took is not a crash (engine/multifd/compression.ts).
  const crashes = stray.filter((e) => !(typeof e === "object" && e !== null && strayErrorsHandled.has(e)));
  if (crashes.length) {
    const what = `CRASH: ${crashes.map((e) => errorMessage(e)).join("; ")}`;
    return { input, ok: false, what, timeMs, result, mutator };
  }
  // Stuck waiting is QEMU's answer to a message cut short on the way back; on the way out the bytes that
  // came are the destination's to refuse, and a source left waiting is a finding.
  const stuck = lines.find((l) => l.startsWith("survives: source stuck"));
  if (result.ok && stuck && target.direction === "forward") {
    return { input, ok: false, what: `STUCK: ${stuck.replace(/^survives: /, "")}`, timeMs, result, mutator };
  }
  if (!result.ok) {
    const msg = errorMessage(result.error).split("\n")[0];
    const hang = /within \d+ ?ms|timed out|did not .* within|stall|deadlock/i.test(msg);
    return { input, ok: false, what: `${hang ? "HANG" : "FAIL"}: ${msg}`, timeMs, result, mutator };
  }
  const what = end.replace(/^survives: /, "") +
    (error ? ` (${error.replace(/^survives: target error: /, "")})` : "");
  return { input, ok: true, what, timeMs, result, mutator };
}

/** A clean run of the target with its stream recorded: the anchors its inputs aim at. */
export async function record(target: FuzzTarget, world?: World): Promise<Recording> {
  const clean: FuzzInput = {
    target: target.name,
    seed: RECORD_SEED,
    mutation: { connection: target.connection, direction: target.direction, edits: [] },
  };
  const out = await runInput(clean, { keep: true, world });
  if (!out.ok || !/source completed, target completed|secondary went on/.test(out.what)) {
    throw new Error(`fuzz: target ${target.name} does not complete when nothing is mangled: ${out.what}`);
  }
  const bytes = out.mutator.kept();
  return { anchors: await anchorsOf(target.kind, bytes), length: bytes.length };
}
