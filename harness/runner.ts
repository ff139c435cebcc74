/**
 * Runs one case: prints its seed, runs its flow within the case's time limit (or until the run is
 * interrupted), checks that both sides exit cleanly, saves artifacts on failure and builds a failure
 * message that ends with the lines that replay it.
 */
import { type DefectName, isDefect } from "../engine/testing/defects.ts";
import type { SideId } from "./case.ts";
import { type CaseStats, exitWords, type FinalStatus, MigrationPair } from "./framework.ts";
import { type Probe, probesText, startProbes } from "./control_plane.ts";
import type { StreamMutator } from "./wire_mutate.ts";
import { flowOf, knownBugIn, type MigrationCase, runFlow, startPair } from "./families/mod.ts";
import type { Sample } from "./report/sampler.ts";
import { formatTranscript } from "../engine/qmp/client.ts";
import { exactNameRegex } from "./select.ts";
import { knownBugVerdict } from "./world/known_bug.ts";
import { engineWorld } from "./world/engine.ts";
import { isUnavailable, type KnownBug, type World } from "./world/world.ts";
import { asError } from "../engine/error.ts";

/** A known defect switched on for a run, on one side (`--defect dst:multifd-no-recv-sync`). */
export interface DefectSwitch {
  side: SideId;
  defect: DefectName;
}

/** `side:defect,side:defect` (MIGTEST_DEFECTS, `--defect`). */
export function parseDefects(text: string, what: string): DefectSwitch[] {
  return text.split(",").filter(Boolean).map((item) => {
    const [side, defect] = item.split(":");
    if ((side !== "src" && side !== "dst") || defect === undefined || !isDefect(defect)) {
      throw new RangeError(`${what}: '${item}' is not src:DEFECT or dst:DEFECT with a known defect`);
    }
    return { side, defect };
  });
}

export interface RunOptions {
  seed: number;
  /** Which world runs the pair (default: engine processes). */
  world?: World;
  tmpRoot?: string;
  /** Where a failed case's folder goes (artifacts/<case>/); null keeps nothing. */
  artifactsDir: string | null;
  /** Suffix of the artifact folder (a repetition of the same case keeps its own). */
  artifactsSuffix?: string;
  waitMs?: number;
  /** The whole case's limit (default: the case's timeoutMs, else 120 s). */
  timeoutMs?: number;
  /** Control-plane probes beside the flow (harness/control_plane.ts); a disagreement fails the case. */
  probes?: readonly Probe[];
  /** The fuzzer's edits on the wire, through the wire proxy (harness/wire_mutate.ts). */
  wireMutator?: StreamMutator;
  /** The fuzzer's edits of a saved migration file (the file flow makes them before the load). */
  fileMutator?: StreamMutator;
  /** Ends the case early (Ctrl-C): the sides are stopped and the case fails as interrupted. */
  signal?: AbortSignal;
  /** Known defects to switch on besides the case's own. */
  defects?: readonly DefectSwitch[];
  /** A known bug of the world the case hits (default: what the world says). */
  knownBug?: KnownBug | null;
  /** Keep the artifact folder of a passing case too (a failed case's is always kept). */
  keep?: boolean;
  /**
   * Capture the source's main channel of a socket migration into `main-stream.mig` in the artifact
   * folder (`deno task analyze` reads it); a world that cannot capture says why in the log.
   */
  capture?: boolean;
  log?: (msg: string) => void;
  /** Called every 250 ms while the case runs with its samples so far (the matrix's ProgressLine). */
  onProgress?: (samples: readonly Sample[], elapsedMs: number) => void;
}

export interface CaseResult {
  name: string;
  ok: boolean;
  /** Not run, and why (e.g. what the QEMU binary lacks). */
  skipped?: string;
  seed: number;
  timeMs: number;
  stats: CaseStats;
  error?: Error;
  artifacts?: string;
  /** The lines that run this case again exactly (set when it failed). */
  replay?: string[];
  /** query-migrate of both sides over time, with pass and status events (harness/report/sampler.ts). */
  samples?: Sample[];
  /** It failed the way a known bug makes it fail (ok stays true: expected). */
  xfail?: KnownBug;
  /** A known bug did not happen: the table of known bugs needs a look (ok is false). */
  xpass?: KnownBug;
  /** Said about a passing case, e.g. that a known intermittent bug did not strike this run. */
  note?: string;
  /** A deterministic world's trace hash: the same seed on the same commit gives the same one. */
  trace?: string;
}

export function caseSlug(name: string): string {
  return name.replace(/^\//, "").replace(/[^A-Za-z0-9._-]+/g, "_");
}

export const DEFAULT_CASE_TIMEOUT_MS = 120_000;
const PROGRESS_MS = 250;

/** The captured main-channel stream, in the pair's directory and so in the artifact folder. */
export const MAIN_STREAM_FILE = "main-stream.mig";

/** The QMP messages that end failure.txt (the whole transcript is in qmp-transcript.txt). */
export const FAILURE_TRANSCRIPT_TAIL = 40;

/** Arms the capture of the source's main channel; where that cannot be, the log says why. */
async function captureMainStream(pair: MigrationPair, c: MigrationCase, log: (msg: string) => void) {
  if (!flowOf(c).socket?.(c)) {
    log(`${c.name}: no stream capture: only socket migrations are captured (a file migration is its file)`);
    return;
  }
  const armed = await pair.src.captureMainChannel(`${pair.dir}/${MAIN_STREAM_FILE}`);
  if (isUnavailable(armed)) log(`${c.name}: no stream capture: ${armed.unavailable}`);
}

/** What a replay must repeat besides the case and the seed. */
export interface ReplayContext {
  world?: string;
  defects?: readonly DefectSwitch[];
  probes?: readonly Probe[];
}

/**
 * The commands that run exactly this case again with this seed, in this world, with these defects —
 * whatever its tier: through the matrix, and through `deno test` (an exact-name regex, all tiers).
 */
export function replayCommands(name: string, seed: number, ctx: ReplayContext = {}): string[] {
  const world = ctx.world && ctx.world !== "engine" ? ctx.world : undefined;
  const defects = (ctx.defects ?? []).map((d) => `${d.side}:${d.defect}`);
  const matrix = [`deno task matrix --filter '${name}' --seed ${seed}`];
  if (world) matrix.push(`--backend ${world}`);
  for (const d of defects) matrix.push(`--defect ${d}`);
  // Probes only the matrix replays (the test suite's cases have none).
  if (ctx.probes?.length) return [`${matrix.join(" ")} --probes '${probesText(ctx.probes)}'`];
  const env = [`MIGTEST_SEED=${seed}`, "MIGTEST_TIER=slow"];
  if (world) env.push(`MIGTEST_BACKEND=${world}`);
  if (defects.length) env.push(`MIGTEST_DEFECTS=${defects.join(",")}`);
  return [matrix.join(" "), `${env.join(" ")} deno task test --filter '${exactNameRegex(name)}'`];
}

/** The case with extra defects switched on. */
export function withDefects<C extends MigrationCase>(c: C, extra: readonly DefectSwitch[]): C {
  if (!extra.length) return c;
  const defects = { src: [...(c.defects?.src ?? [])], dst: [...(c.defects?.dst ?? [])] };
  for (const d of extra) if (!defects[d.side].includes(d.defect)) defects[d.side].push(d.defect);
  return { ...c, defects };
}

export class CaseFailure extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = "CaseFailure";
  }
}

/** Why a case was cut short: its time limit, or the run was interrupted. */
class CaseAborted extends Error {}

export async function runCase(c: MigrationCase, opts: RunOptions): Promise<CaseResult> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  log(`${c.name}: seed=${opts.seed}`);
  const run = withDefects(c, opts.defects ?? []);
  let pair: MigrationPair | null = null;
  let error: Error | undefined;
  // A case that overruns its limit, or a run interrupted, stops its sides: the flow's pending QMP calls
  // then fail and the case ends with the reason, its directory removed like any other.
  const limit = opts.timeoutMs ?? c.timeoutMs ?? DEFAULT_CASE_TIMEOUT_MS;
  // Why the case was cut short (its reason is the first cause: the limit or the interrupt).
  const cut = new AbortController();
  const abort = (why: string) => {
    if (!cut.signal.aborted) cut.abort(new CaseAborted(why));
    pair?.close().catch(() => {});
  };
  const timer = setTimeout(() => abort(`case timed out after ${limit} ms`), limit);
  const onProgress = opts.onProgress;
  const ticker = onProgress &&
    setInterval(() => pair && onProgress(pair.samples, performance.now() - t0), PROGRESS_MS);
  const onSignal = () => abort("interrupted");
  if (opts.signal?.aborted) onSignal();
  opts.signal?.addEventListener("abort", onSignal);
  const bug = opts.knownBug !== undefined ? opts.knownBug : (opts.world ? knownBugIn(opts.world, c) : null);
  try {
    pair = await startPair(run, {
      seed: opts.seed,
      world: opts.world ?? engineWorld,
      tmpRoot: opts.tmpRoot,
      // A known hang ends its waits sooner: they fail the same way, without the full 30 s each.
      waitMs: Math.min(opts.waitMs ?? 30_000, bug?.hangMs ?? Infinity),
      log,
    });
    cut.signal.throwIfAborted();
    if (opts.capture) await captureMainStream(pair, run, log);
    if (opts.wireMutator) pair.mutateWire(opts.wireMutator);
    if (opts.fileMutator) pair.fileMutator = opts.fileMutator;
    // QMP commands at seeded moments beside the flow, each judged by the state machine's oracle.
    const probes = [...(c.probes ?? []), ...(opts.probes ?? [])];
    const prober = probes.length ? startProbes(pair, c, probes) : null;
    try {
      await runFlow(pair, run);
    } finally {
      prober?.stop();
    }
    const wrong = await prober?.done;
    if (wrong) throw wrong;
  } catch (e) {
    error = asError(e);
  } finally {
    clearTimeout(timer);
    clearInterval(ticker);
    opts.signal?.removeEventListener("abort", onSignal);
  }
  if (cut.signal.aborted) {
    const why: CaseAborted = cut.signal.reason;
    error = new Error(`${why.message}${error && error !== why ? ` (${error.message})` : ""}`);
  }
  // The sides' last word, before they are closed (a case cut short has had them closed already).
  const transcriptEnd = pair?.transcript.length ?? 0;
  const trace = pair?.src?.trace;
  // The simulation at the moment of failure: its last decisions and what each link held.
  const worldReport = error && trace ? trace.report() : undefined;
  let finalStatus: FinalStatus | undefined;
  if (pair && opts.artifactsDir) {
    if (cut.signal.aborted) await pair.close();
    finalStatus = await pair.finalStatus();
  }
  if (pair) {
    const dstExited = pair.dstExited;
    const st = await pair.close();
    // Like qtest_quit: a clean engine exits 0 on SIGTERM; a crash or signal death fails the case.
    if (!error && !pair.srcKilled && st.src && st.src.code !== 0) {
      error = new Error(`source exited with ${exitWords(pair.src, st.src)}`);
    }
    if (!error && !dstExited && st.dst && st.dst.code !== 0) {
      error = new Error(`target exited with ${exitWords(pair.dst, st.dst)}`);
    }
  }
  const replay = replayCommands(c.name, opts.seed, {
    world: opts.world?.name,
    defects: opts.defects,
    probes: opts.probes,
  });
  let artifacts: string | undefined;
  if ((error || opts.keep) && pair && opts.artifactsDir) {
    artifacts = `${opts.artifactsDir}/${caseSlug(c.name)}${opts.artifactsSuffix ?? ""}`;
    await pair.saveArtifacts(artifacts, finalStatus);
  }
  if (error && pair && artifacts) {
    const tail = pair.transcript.slice(Math.max(0, transcriptEnd - FAILURE_TRANSCRIPT_TAIL), transcriptEnd);
    await Deno.writeTextFile(
      `${artifacts}/failure.txt`,
      `${c.name}\nseed=${opts.seed}\n${error.stack ?? error.message}\n\nreplay: ${
        replay.join("\n    or: ")
      }\n\nlast ${tail.length} QMP messages (all in qmp-transcript.txt):\n${
        formatTranscript(tail).join("\n")
      }\n`,
    );
  }
  await pair?.removeDir();
  const timeMs = performance.now() - t0;
  const verdict = knownBugVerdict(bug, error);
  if (verdict.kind === "xfail") {
    log(`XFAIL ${c.name}: known bug ${bug!.id} (${bug!.versions}): ${bug!.summary}`);
    return {
      name: c.name,
      ok: true,
      seed: opts.seed,
      timeMs,
      stats: pair?.stats ?? {},
      artifacts,
      xfail: verdict.bug,
      error,
      samples: pair?.samples.length ? [...pair.samples] : undefined,
    };
  }
  let xpass: KnownBug | undefined;
  let note: string | undefined;
  if (verdict.kind === "xpass") {
    xpass = verdict.bug;
    error = new Error(verdict.message);
  } else if (verdict.kind === "pass-with-note") {
    note = verdict.note;
    log(note);
  }
  if (error) {
    const msg = `${c.name} failed (seed=${opts.seed}): ${error.message}\n` +
      (worldReport ? `${worldReport}\n` : "") +
      (artifacts ? `artifacts: ${artifacts}\n` : "") +
      `replay: ${replay.join("\n    or: ")}`;
    error = new CaseFailure(msg, error);
  }
  return {
    name: c.name,
    ok: !error,
    seed: opts.seed,
    timeMs,
    stats: pair?.stats ?? {},
    error,
    artifacts,
    replay: error ? replay : undefined,
    samples: pair?.samples.length ? [...pair.samples] : undefined,
    xpass,
    note,
    trace: trace?.hash(),
  };
}
