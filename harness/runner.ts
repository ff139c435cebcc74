/**
 * Runs one case: prints its seed, runs its flow, checks that both engines exit cleanly, saves artifacts
 * on failure and builds a failure message that ends with a one-line replay command.
 */
import type { MigrationCase } from "./case.ts";
import { type CaseStats, MigrationPair } from "./framework.ts";
import { runFlow } from "./flows/mod.ts";
import { engineWorld } from "./world/engine.ts";
import type { World } from "./world/world.ts";

export interface RunOptions {
  seed: number;
  /** Which world runs the pair (default: engine processes). */
  world?: World;
  tmpRoot?: string;
  /** Where a failed case's folder goes (artifacts/<case>/); null keeps nothing. */
  artifactsDir: string | null;
  waitMs?: number;
  log?: (msg: string) => void;
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
}

export function caseSlug(name: string): string {
  return name.replace(/^\//, "").replace(/[^A-Za-z0-9._-]+/g, "_");
}

export function replayCommand(name: string, seed: number): string {
  return `MIGTEST_SEED=${seed} deno task test --filter '${name}'   # or: deno task matrix --filter '${name}' --seed ${seed}`;
}

export class CaseFailure extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = "CaseFailure";
  }
}

export async function runCase(c: MigrationCase, opts: RunOptions): Promise<CaseResult> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  log(`${c.name}: seed=${opts.seed}`);
  let pair: MigrationPair | null = null;
  let error: Error | undefined;
  try {
    pair = await MigrationPair.start(c, {
      seed: opts.seed,
      world: opts.world ?? engineWorld,
      tmpRoot: opts.tmpRoot,
      waitMs: opts.waitMs ?? 30_000,
      log,
    });
    await runFlow(pair, c);
  } catch (e) {
    error = e instanceof Error ? e : new Error(String(e));
  }
  if (pair) {
    const dstExited = pair.dstExited;
    const st = await pair.close();
    // Like qtest_quit: a clean engine exits 0 on SIGTERM; a crash or signal death fails the case.
    if (!error && !pair.srcKilled && st.src && st.src.code !== 0) {
      error = new Error(`source exited with status ${st.src.code}`);
    }
    if (!error && !dstExited && st.dst && st.dst.code !== 0) {
      error = new Error(`target exited with status ${st.dst.code}`);
    }
  }
  let artifacts: string | undefined;
  if (error && pair && opts.artifactsDir) {
    artifacts = `${opts.artifactsDir}/${caseSlug(c.name)}`;
    await pair.saveArtifacts(artifacts);
    await Deno.writeTextFile(
      `${artifacts}/failure.txt`,
      `${c.name}\nseed=${opts.seed}\n${error.stack ?? error.message}\n\nreplay: ${
        replayCommand(c.name, opts.seed)
      }\n`,
    );
  }
  await pair?.removeDir();
  const timeMs = performance.now() - t0;
  if (error) {
    const msg = `${c.name} failed (seed=${opts.seed}): ${error.message}\n` +
      (artifacts ? `artifacts: ${artifacts}\n` : "") +
      `replay: ${replayCommand(c.name, opts.seed)}`;
    error = new CaseFailure(msg, error);
  }
  return { name: c.name, ok: !error, seed: opts.seed, timeMs, stats: pair?.stats ?? {}, error, artifacts };
}
