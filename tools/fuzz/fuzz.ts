/**
 * deno task fuzz: streams mangled on the wire between a model source and a model destination in the
 * simulated world — the main channel, each multifd channel, the return path — and an oracle that asks
 * what a QEMU developer asks of a loader fed garbage: it completes or fails saying what was wrong (never
 * a JavaScript exception's words), no side hangs, no side crashes, the source keeps its guest, both still
 * answer QMP. Inputs come from a seed; each finding prints the line that replays it.
 *
 * A target is first run clean while its stream is recorded, and the stream's structure (sections,
 * packets, messages) aims the edits (tools/fuzz/plan.ts).
 */
import type { ParseArgsOptionsConfig } from "node:util";
import fc from "fast-check";
import { describeMutation } from "../../harness/wire_mutate.ts";
import { type Cli, type CliArgs, parseCount, parseSeed, readCli, UsageError } from "../../engine/cli.ts";
import { errorMessage } from "../../engine/error.ts";
import { type FuzzInput, inputArb, parseInput } from "./plan.ts";
import { FUZZ_TARGETS, targetNamed } from "./targets.ts";
import { isWorldName, worldByName } from "../../harness/world/worlds.ts";
import { type World, WORLD_NAMES } from "../../harness/world/world.ts";
import { cannotRunIn } from "../../harness/families/mod.ts";
import { onStray, type Outcome, record, runInput } from "./run.ts";

const USAGE = `usage: deno task fuzz [options]

Mangles migration streams on the simulated wire (a byte flipped or overwritten, bytes inserted or
removed, the connection cut) and checks that the destination completes or fails with a precise error,
that no side hangs or crashes and that the source keeps its guest.

  --runs N          inputs to run (default 100), spread over the targets
  --seed S          the fuzzer's seed (default: random, printed)
  --target NAME     only this target (repeatable): ${FUZZ_TARGETS.map((t) => t.name).join(", ")}
  --world W         sim (default: the simulated link edits the bytes), or engine, qemu, engine-to-qemu,
                    qemu-to-engine: real processes through the wire proxy (slower; for QEMU the
                    binary of QTEST_QEMU_BINARY; a target the world cannot run is left out, saying why)
  --replay INPUT    run one input (the JSON a finding prints) and print what happened
  -v, --verbose     print every input's outcome
  -h, --help
`;

function replayLine(input: FuzzInput, world: World): string {
  const w = world.name === "sim" ? "" : ` --world ${world.name}`;
  return `deno task fuzz --replay '${JSON.stringify(input)}'${w}`;
}

const CLI = {
  tool: "fuzz",
  usage: USAGE,
  options: {
    runs: { type: "string", default: "100" },
    seed: { type: "string" },
    target: { type: "string", multiple: true },
    replay: { type: "string" },
    world: { type: "string", default: "sim" },
    verbose: { type: "boolean", short: "v", default: false },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

function fuzzOptions({ values: v }: CliArgs<typeof CLI.options>) {
  const targets = (v.target ?? []).map((name) => {
    const t = targetNamed(name);
    if (!t) {
      throw new UsageError(`--target: no target '${name}' (${FUZZ_TARGETS.map((x) => x.name).join(", ")})`);
    }
    return t;
  });
  let replay: FuzzInput | undefined;
  if (v.replay !== undefined) {
    try {
      replay = parseInput(v.replay);
    } catch (e) {
      throw new UsageError(errorMessage(e));
    }
  }
  if (!isWorldName(v.world)) {
    throw new UsageError(`--world: one of ${WORLD_NAMES.join(", ")}, got '${v.world}'`);
  }
  return {
    world: worldByName(v.world),
    runs: parseCount(v.runs, "--runs"),
    seed: v.seed !== undefined ? parseSeed(v.seed, "--seed") : crypto.getRandomValues(new Uint32Array(1))[0],
    targets: targets.length ? targets : [...FUZZ_TARGETS],
    replay,
    verbose: v.verbose,
  };
}

function line(o: Outcome): string {
  return `${o.input.target.padEnd(20)} seed ${String(o.input.seed).padEnd(10)} ${
    (o.timeMs / 1000).toFixed(2)
  } s  ${describeMutation(o.input.mutation)}  => ${o.what}`;
}

async function main(): Promise<number> {
  const cli = readCli(CLI, Deno.args, fuzzOptions);
  if ("status" in cli) return cli.status;
  const { runs, seed, replay, verbose, world } = cli.args;
  // What the world can run is known once it looked (the QEMU binaries' capabilities).
  await world.prepare?.();
  const targets = cli.args.targets.filter((t) => {
    const why = cannotRunIn(world, t.case);
    if (why) console.log(`  ${t.name}: left out (${why})`);
    return why === null;
  });
  globalThis.addEventListener("unhandledrejection", onStray);
  globalThis.addEventListener("error", onStray);
  if (replay) {
    const o = await runInput(replay, { world });
    console.log(line(o));
    console.log(`applied at stream offsets ${o.mutator.applied.join(", ") || "(none reached)"}`);
    if (!o.ok && o.result?.error) console.log(errorMessage(o.result.error));
    return o.ok ? 0 : 1;
  }
  if (!targets.length) {
    console.error(`fuzz: no target the ${world.name} world can run`);
    return 2;
  }
  console.log(
    `migtest fuzz: ${runs} inputs over ${targets.length} target(s), seed ${seed}, world ${world.name}`,
  );
  const t0 = performance.now();
  const arbs: fc.Arbitrary<FuzzInput>[] = [];
  for (const t of targets) {
    const r = await record(t, world);
    console.log(`  ${t.name}: ${r.length} B recorded, ${r.anchors.length} anchors`);
    arbs.push(inputArb(t, r));
  }
  // One draw over every target: one seed, nothing to mix.
  const inputs = fc.sample(fc.oneof(...arbs), { seed, numRuns: runs });
  const findings: Outcome[] = [];
  const ends = new Map<string, number>();
  for (const [i, input] of inputs.entries()) {
    const o = await runInput(input, { world });
    if (!o.ok) findings.push(o);
    const key = o.ok ? o.what.replace(/\d+/g, "N") : o.what.split(":")[0];
    ends.set(key, (ends.get(key) ?? 0) + 1);
    if (verbose || !o.ok) console.log(`#${i + 1} ${line(o)}`);
    if (!o.ok) console.log(`  replay: ${replayLine(input, world)}`);
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(`\nfuzz: ${inputs.length} inputs in ${secs.toFixed(1)} s (seed ${seed}); outcomes:`);
  for (const [k, n] of [...ends].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(5)}  ${k}`);
  if (findings.length) {
    console.log(`\n${findings.length} finding(s):`);
    for (const f of findings) console.log(`  ${f.what}\n    ${replayLine(f.input, world)}`);
    return 1;
  }
  console.log("no hang, no crash, every error precise");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
