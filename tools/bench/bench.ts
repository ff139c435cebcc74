/**
 * `deno task bench`: throughput measured against a baseline taken in the same run, so the ratio means
 * something on any machine.
 *
 * 1. Baseline: raw unix-socket throughput between two Deno processes (1 MiB writes, 512 MiB).
 * 2. Engine: non-live precopy of a 256 MiB guest full of random data over a unix socket, unlimited
 *    bandwidth, from `migrate` to the source's `completed`.
 * 3. The wall time of the whole smoke tier.
 * 4. The simulated world: seeds per minute beside the same case between engine processes, and replay
 *    agreement (tools/bench/sim.ts). `--only sim` runs just that part.
 * 5. Postcopy beside real QEMU (tools/bench/postcopy.ts): the same case in both worlds, QEMU's figures as
 *    the baseline. `--only postcopy` runs just that part.
 * 6. File migration (tools/bench/file.ts): the plain file: stream against mapped-ram, in the engine world
 *    and on QEMU where it has mapped-ram. `--only file` runs just that part.
 * 7. TLS: the 256 MiB precopy and multifd over x509 and PSK sessions against the same without TLS.
 *    `--only tls` runs just that part.
 *
 * The measurements are in measure.ts, the statistics in stats.ts; this file runs them and prints.
 * `--html FILE` also writes the ratios as bars (harness/report/html.ts); the printed lines stay the same.
 */
import { cliOrExit, parseChoice } from "../../engine/cli.ts";
import { ALL_CASES } from "../../cases/all.ts";
import { inTier } from "../../harness/case.ts";
import { type BenchRatio, renderBenchHtml } from "../../harness/report/html.ts";
import { runCase } from "../../harness/runner.ts";
import {
  codecLimit,
  coloCheckpoints,
  enginePrecopyThroughput,
  qmpLatencyDuringLoad,
  rawUnixThroughput,
} from "./measure.ts";
import { fmt, gb, mean, median, pct } from "./stats.ts";
import { replayAgreement, SIM_BENCH_CASES, simRate } from "./sim.ts";
import { type PostcopyRun, postcopyRuns } from "./postcopy.ts";
import { FILE_BENCH_CASES, type FileRun, fileRuns } from "./file.ts";
import { engineWorld } from "../../harness/world/engine.ts";
import { worldByName } from "../../harness/world/worlds.ts";

const USAGE = `usage: deno task bench [--only sim|postcopy|file|tls] [--html FILE]

Throughput measured against a baseline taken in the same run: engine precopy and multifd against a raw
unix socket between two Deno processes, the compressed modes against node:zlib alone, QMP latency under
load, COLO checkpoints, the smoke tier's wall time, postcopy beside real QEMU (when a binary is there),
and the simulated world's seeds per minute.

  --only sim    only the simulated world's part (seeds per minute, replay agreement)
  --only postcopy  only postcopy, the model beside QEMU (QTEST_QEMU_BINARY or the installed one)
  --only file   only file migration: the plain stream against mapped-ram, the model beside QEMU
  --only tls    only TLS: precopy and multifd over x509 and PSK against the same in the clear
  --html FILE   also write the ratios as bars to FILE (the printed lines stay the same)
  --help        this text
`;

const RUNS = 3;
const flags = cliOrExit(
  {
    tool: "bench",
    usage: USAGE,
    options: { html: { type: "string" }, only: { type: "string" } },
  },
  Deno.args,
  ({ values: v }) => ({
    html: v.html,
    only: v.only === undefined
      ? undefined
      : parseChoice(v.only, ["sim", "postcopy", "file", "tls"], "--only"),
  }),
);
const startedAt = new Date();
const ratios: BenchRatio[] = [];
const notes: string[] = [];

if (flags.only === undefined) await processBench();
if (flags.only === undefined || flags.only === "postcopy") await postcopyBench();
if (flags.only === undefined || flags.only === "file") await fileBench();
if (flags.only === undefined || flags.only === "tls") await tlsBench();
if (flags.only === undefined || flags.only === "sim") await simBench();
if (flags.html) await Deno.writeTextFile(flags.html, renderBenchHtml({ startedAt, ratios, notes }));

/**
 * Postcopy: upstream's /migration/postcopy/plain (the a-b guest) in the engine world and on QEMU, the
 * model's figures as ratios of QEMU's; then the model alone with the versions guest, which faults more.
 */
async function postcopyBench(): Promise<void> {
  const name = "/migration/postcopy/plain";
  const line = (who: string, r: PostcopyRun[]) => {
    const m = (f: (x: PostcopyRun) => number | undefined) => {
      const v = r.map(f).filter((x): x is number => x !== undefined);
      return v.length ? median(v) : undefined;
    };
    const lat = m((x) => x.latencyUs);
    return `${who}: total ${m((x) => x.totalMs)?.toFixed(0)} ms, downtime ${
      m((x) => x.downtimeMs)?.toFixed(0)
    } ms, ` +
      `${m((x) => x.requests)?.toFixed(0)} page requests, blocktime ${
        m((x) => x.blocktimeMs)?.toFixed(0)
      } ms` +
      (lat !== undefined
        ? `, fault latency mean ${lat.toFixed(0)} µs, p99 < ${m((x) => x.latencyP99Us)} µs`
        : "");
  };
  const model = await postcopyRuns(name, engineWorld, RUNS, 8000);
  if ("skipped" in model) throw new Error(`postcopy bench: ${model.skipped}`);
  notes.push(`postcopy ${name}, model (median of ${RUNS}): ${line("model", model)}`);
  console.log(notes.at(-1));
  const qemu = await postcopyRuns(name, worldByName("qemu"), RUNS, 8000);
  if ("skipped" in qemu) {
    notes.push(`postcopy beside QEMU: not run (${qemu.skipped})`);
  } else {
    notes.push(`postcopy ${name}, QEMU (median of ${RUNS}): ${line("QEMU", qemu)}`);
    const total = (r: PostcopyRun[]) => median(r.map((x) => x.totalMs));
    ratios.push({
      name: `postcopy ${name}, total time`,
      baseline: "real QEMU, same case",
      ratio: total(model) / total(qemu),
      lowerIsBetter: true,
      detail: `${total(model).toFixed(0)} ms vs ${total(qemu).toFixed(0)} ms`,
    });
  }
  console.log(notes.at(-1));
  const versions = await postcopyRuns("/migration/postcopy/faults/versions", engineWorld, RUNS, 8100);
  if ("skipped" in versions) throw new Error(`postcopy bench: ${versions.skipped}`);
  notes.push(
    `postcopy versions guest (32 MiB it checks, 2 MB/s background), model: ${line("model", versions)}`,
  );
  console.log(notes.at(-1));
}

/**
 * File migration: the plain stream against mapped-ram (main thread, multifd) in the engine world and on
 * QEMU where it has mapped-ram; mapped-ram's save time as a ratio of the plain stream's, and the model's
 * as a ratio of QEMU's.
 */
async function fileBench(): Promise<void> {
  const total = (r: FileRun[]) => median(r.map((x) => x.totalMs));
  const mib = (r: FileRun[]) => (median(r.map((x) => x.transferredBytes)) / 2 ** 20).toFixed(1);
  const model = new Map<string, FileRun[]>();
  for (const name of FILE_BENCH_CASES) {
    const runs = await fileRuns(name, engineWorld, RUNS, 8200);
    if ("skipped" in runs) throw new Error(`file bench: ${runs.skipped}`);
    model.set(name, runs);
    notes.push(
      `file ${name}, model (median of ${RUNS}): save ${total(runs).toFixed(0)} ms, ${mib(runs)} MiB`,
    );
    console.log(notes.at(-1));
  }
  const stream = model.get(FILE_BENCH_CASES[0])!;
  for (const name of FILE_BENCH_CASES.slice(1)) {
    ratios.push({
      name: `file ${name}, save time`,
      baseline: `the model's plain file: stream (${FILE_BENCH_CASES[0]})`,
      ratio: total(model.get(name)!) / total(stream),
      lowerIsBetter: true,
      detail: `${total(model.get(name)!).toFixed(0)} ms vs ${total(stream).toFixed(0)} ms`,
    });
  }
  for (const name of FILE_BENCH_CASES) {
    const qemu = await fileRuns(name, worldByName("qemu"), RUNS, 8200);
    if ("skipped" in qemu) {
      notes.push(`file ${name} beside QEMU: not run (${qemu.skipped})`);
    } else {
      notes.push(
        `file ${name}, QEMU (median of ${RUNS}): save ${total(qemu).toFixed(0)} ms, ${mib(qemu)} MiB`,
      );
      ratios.push({
        name: `file ${name}, save time`,
        baseline: "real QEMU, same case",
        ratio: total(model.get(name)!) / total(qemu),
        lowerIsBetter: true,
        detail: `${total(model.get(name)!).toFixed(0)} ms vs ${total(qemu).toFixed(0)} ms`,
      });
    }
    console.log(notes.at(-1));
  }
}

/**
 * TLS's cost in the model: the 256 MiB non-live precopy (and multifd, 4 channels) over a unix socket with
 * every channel an x509 session (node:tls in process) or a PSK one (an openssl child per channel), as a
 * ratio of the same migration in the clear, measured in this run.
 */
async function tlsBench(): Promise<void> {
  const kinds = [
    ["none", undefined],
    ["x509", { serverName: "qemu.org", hostname: "qemu.org" }],
    ["psk", { psk: "match" }],
  ] as const;
  for (const channels of [0, 4]) {
    const what = channels ? `multifd nocomp, ${channels} channels` : "precopy";
    const by = new Map<string, number>();
    for (const [kind, tls] of kinds) {
      const runs: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        runs.push((await enginePrecopyThroughput(9000 + 10 * channels + i, { channels, tls })).bps);
      }
      by.set(kind, median(runs));
      notes.push(`TLS ${kind}, ${what}, 256 MiB random RAM (median of ${RUNS}): ${gb(median(runs))}`);
      console.log(notes.at(-1));
    }
    const plain = by.get("none")!;
    for (const kind of ["x509", "psk"]) {
      ratios.push({
        name: `${what} over TLS ${kind}`,
        baseline: `the same in the clear`,
        ratio: by.get(kind)! / plain,
        detail: `${gb(by.get(kind)!)} of ${gb(plain)}`,
      });
    }
  }
}

async function simBench(): Promise<void> {
  const SEEDS = 30;
  for (const c of SIM_BENCH_CASES) {
    const r = await simRate(c, SEEDS);
    console.log(
      `sim ${c.name.padEnd(22)}: ${r.simPerMinute.toFixed(0)} seeds/min (engine processes: ${
        r.enginePerMinute.toFixed(0)
      } runs/min, ${(r.simPerMinute / r.enginePerMinute).toFixed(1)}x)${
        r.failed ? ` ${r.failed} FAILED` : ""
      }`,
    );
    ratios.push({
      name: `simulated ${c.name.slice("/bench/sim/".length)}, 16 MiB guest: runs per minute`,
      baseline: "the same case between engine processes",
      ratio: r.simPerMinute / r.enginePerMinute,
      detail: `${r.simPerMinute.toFixed(0)} vs ${r.enginePerMinute.toFixed(0)} per minute`,
    });
  }
  const rep = await replayAgreement(SIM_BENCH_CASES[1], 100);
  notes.push(`sim replay: ${rep.same} of ${rep.of} seeds gave the same trace hash twice (multifd-4)`);
  console.log(notes.at(-1));
}

async function processBench(): Promise<void> {
  console.log(`migtest bench (${RUNS} runs each, medians)`);
  const raw: number[] = [];
  const eng: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    raw.push(await rawUnixThroughput());
    const e = await enginePrecopyThroughput(1000 + i);
    eng.push(e.bps);
    console.log(
      `  run ${i + 1}: raw unix socket ${gb(raw[i])}, engine precopy ${gb(e.bps)} ` +
        `(${(e.bytes / 1e6).toFixed(0)} MB in ${e.ms.toFixed(0)} ms)`,
    );
  }
  const rawM = median(raw);
  const engM = median(eng);
  console.log(`raw unix socket (2 Deno processes, 1 MiB writes): ${gb(rawM)}`);
  console.log(`engine non-live precopy, 256 MiB random RAM, unix: ${gb(engM)}`);
  console.log(`ratio engine/raw: ${(engM / rawM * 100).toFixed(0)}%  (aim: >= 60%)`);
  ratios.push({
    name: "engine non-live precopy, 256 MiB random RAM",
    baseline: "raw unix socket",
    ratio: engM / rawM,
    aim: 0.6,
    detail: `${gb(engM)} of ${gb(rawM)}`,
  });

  // Multifd: nocomp with 1/2/4 channels against the same raw baseline and plain precopy; compressed
  // modes on compressible pages (4 random bits per byte) against node:zlib alone on such pages.
  for (const channels of [1, 2, 4]) {
    const runs = [await enginePrecopyThroughput(2000 + channels, { channels })];
    runs.push(await enginePrecopyThroughput(3000 + channels, { channels }));
    const m = median(runs.map((r) => r.bps));
    console.log(
      `multifd nocomp, ${channels} channel(s): ${gb(m)}  ` +
        `(${(m / rawM * 100).toFixed(0)}% of raw, ${(m / engM * 100).toFixed(0)}% of plain precopy), ` +
        `${(runs[0].bytes / 1e6).toFixed(0)} MB on the wire`,
    );
    const name = `multifd nocomp, ${channels} channel(s)`;
    ratios.push({ name, baseline: "raw unix socket", ratio: m / rawM, detail: `${gb(m)} of ${gb(rawM)}` });
    ratios.push({ name, baseline: "plain precopy", ratio: m / engM, detail: `${gb(m)} of ${gb(engM)}` });
  }
  const plainCompressible = await enginePrecopyThroughput(4000, { entropyBits: 4 });
  notes.push(
    `plain precopy, compressible RAM: ${gb(plainCompressible.bps)}, ${
      (plainCompressible.bytes / 1e6).toFixed(0)
    } MB on the wire`,
  );
  console.log(notes.at(-1));
  for (const compression of ["zlib", "zstd"] as const) {
    const r = await enginePrecopyThroughput(5000, { channels: 4, compression, entropyBits: 4 });
    const limit = await codecLimit(compression, 4);
    console.log(
      `multifd ${compression} (4 channels, level 1), compressible RAM: ${gb(r.bps)} of guest RAM, ` +
        `${(r.bytes / 1e6).toFixed(0)} MB on the wire; node:zlib ${compression} alone: ${gb(limit)} ` +
        `=> ${(r.bps / limit * 100).toFixed(0)}% of the codec limit (aim >= 70%)`,
    );
    ratios.push({
      name: `multifd ${compression} (4 channels, level 1), compressible RAM`,
      baseline: `node:zlib ${compression} alone`,
      ratio: r.bps / limit,
      aim: 0.7,
      detail: `${gb(r.bps)} of ${gb(limit)}`,
    });
  }

  const lat = await qmpLatencyDuringLoad(7);
  console.log(`destination QMP query-migrate round trip, idle:        ${fmt(lat.idle)}`);
  console.log(`destination QMP query-migrate round trip, during load: ${fmt(lat.load)}`);
  console.log(`ratio p99 load/idle: ${(pct(lat.load, 0.99) / pct(lat.idle, 0.99)).toFixed(1)}x`);
  ratios.push({
    name: "destination QMP query-migrate p99, during a load",
    baseline: "idle",
    ratio: pct(lat.load, 0.99) / pct(lat.idle, 0.99),
    lowerIsBetter: true,
    detail: `${pct(lat.load, 0.99).toFixed(2)} ms vs ${pct(lat.idle, 0.99).toFixed(2)} ms`,
  });

  // COLO: per-checkpoint latency on the 128 MiB guest, beside upstream's commit message (10 GbE, 6 GB
  // Windows guest, memory transfer time per checkpoint).
  const UPSTREAM: Record<string, string> = {
    "plain idle": "mean 4.50 ms, p99 10.33 ms",
    "plain loaded": "mean 24.30 ms, p99 78.05 ms",
    "multifd idle": "mean 6.48 ms, p99 10.41 ms",
    "multifd loaded": "mean 14.12 ms, p99 31.27 ms",
  };
  for (const multifd of [false, true]) {
    for (const loaded of [false, true]) {
      const key = `${multifd ? "multifd" : "plain"} ${loaded ? "loaded" : "idle"}`;
      const r = await coloCheckpoints(multifd, loaded);
      notes.push(
        `COLO ${key.padEnd(14)}: checkpoint mean ${mean(r.latency).toFixed(2)} ms, p99 ${
          pct(r.latency, 0.99).toFixed(2)
        } ms; ` +
          `primary paused mean ${mean(r.pause).toFixed(2)} ms; ${
            mean(r.pages).toFixed(0)
          } pages/checkpoint; ` +
          `secondary QMP p99 ${pct(r.qmp, 0.99).toFixed(2)} ms (n=${r.qmp.length})` +
          `  (upstream: ${UPSTREAM[key]})`,
      );
      console.log(notes.at(-1));
    }
  }

  const smoke = ALL_CASES.filter((c) => inTier(c, "smoke"));
  const t0 = performance.now();
  let failed = 0;
  for (const c of smoke) {
    const r = await runCase(c, { seed: 1, artifactsDir: null });
    if (!r.ok) failed++;
  }
  notes.push(
    `smoke tier: ${smoke.length} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s wall` +
      (failed ? ` (${failed} FAILED)` : ""),
  );
  console.log(notes.at(-1));
}
