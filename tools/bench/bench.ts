/**
 * `deno task bench`: throughput measured against a baseline taken in the same run, so the ratio means
 * something on any machine.
 *
 * 1. Baseline: raw unix-socket throughput between two Deno processes (1 MiB writes, 512 MiB).
 * 2. Engine: non-live precopy of a 256 MiB guest full of random data over a unix socket, unlimited
 *    bandwidth, from `migrate` to the source's `completed`.
 * 3. The wall time of the whole smoke tier.
 */
import { ALL_CASES } from "../../cases/all.ts";
import { inTier } from "../../harness/case.ts";
import type { MigrationParameters } from "../../engine/options.ts";
import { MigrationPair } from "../../harness/framework.ts";
import { connectUri, migrateIncoming } from "../../harness/migration_qmp.ts";
import { engineWorld } from "../../harness/world/engine.ts";
import { runCase } from "../../harness/runner.ts";

const RAW_BYTES = 512 << 20;
const RUNS = 3;

async function rawUnixThroughput(): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-bench-" });
  const path = `${dir}/sink.sock`;
  const sink = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-net=unix:${path}`,
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      new URL("./bench_sink.ts", import.meta.url).pathname,
      path,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = sink.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read(); // "ready"
  const conn = await Deno.connect({ transport: "unix", path });
  const chunk = new Uint8Array(1 << 20).fill(0xa5);
  const t0 = performance.now();
  for (let sent = 0; sent < RAW_BYTES; sent += chunk.length) {
    let off = 0;
    while (off < chunk.length) off += await conn.write(chunk.subarray(off));
  }
  await conn.closeWrite();
  const reply = new Uint8Array(64);
  await conn.read(reply);
  const secs = (performance.now() - t0) / 1000;
  conn.close();
  await reader.cancel();
  await sink.status;
  await Deno.remove(dir, { recursive: true });
  return RAW_BYTES / secs;
}

interface EngineRun {
  bps: number;
  bytes: number;
  ms: number;
}

/** Non-live precopy of the 256 MiB guest over a unix socket, unlimited bandwidth, migrate → completed. */
async function enginePrecopyThroughput(
  seed: number,
  opts: { channels?: number; compression?: string; entropyBits?: number } = {},
): Promise<EngineRun> {
  const params: Partial<MigrationParameters> = {};
  if (opts.channels) {
    params["multifd-channels"] = opts.channels;
    params["multifd-compression"] = opts.compression === "zlib" || opts.compression === "zstd"
      ? opts.compression
      : "none";
  }
  const pair = await MigrationPair.start({
    name: "/bench/precopy/unix/256M",
    tier: "slow",
    flow: "precopy",
    why: "bench: precopy throughput",
    machine: "pc-256",
    workload: { kind: "idle" },
    transport: "unix",
    memPrealloc: true,
    caps: opts.channels ? ["multifd"] : [],
    srcParams: params,
    dstParams: params,
    defer: !!opts.channels,
  }, { seed, world: engineWorld, waitMs: 60_000, log: () => {} });
  try {
    if (opts.channels) await migrateIncoming(pair, `unix:${pair.migsocket}`);
    await pair.src.qmp.execute("stop");
    await pair.src.qmp.execute("x-test-ram-fill", { seed, "entropy-bits": opts.entropyBits ?? 8 }, {
      timeoutMs: 60_000,
    });
    await pair.setParams(pair.src, { "max-bandwidth": 0, "downtime-limit": 30_000 });
    const t0 = performance.now();
    await pair.src.qmp.execute("migrate", { uri: `unix:${pair.migsocket}` });
    await pair.waitStatus(pair.src, "completed");
    const ms = performance.now() - t0;
    await pair.waitStatus(pair.dst, "completed");
    const s = await pair.status(pair.src);
    // Throughput is guest RAM moved per second (not wire bytes), so compressed modes compare fairly.
    const ram = 257 << 20;
    return { bps: ram / (ms / 1000), bytes: (s.ram as Record<string, number>).transferred, ms };
  } finally {
    await pair.close();
    await pair.removeDir();
  }
}

/**
 * node:zlib alone on the same kind of pages, at the engine's level 1: one stream, 128-page packets with
 * a sync flush each. The packets are all different (a repeated packet would let zstd's window match it).
 */
async function codecLimit(method: "zlib" | "zstd", entropyBits: number, mib = 64): Promise<number> {
  const zlib = await import("node:zlib");
  const data = new Uint8Array(mib << 20);
  const mask = (0x01010101 * ((1 << entropyBits) - 1)) >>> 0;
  const words = new Uint32Array(data.buffer);
  let x = 7;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x & mask;
  }
  const stream = method === "zlib"
    ? zlib.createDeflate({ level: 1 })
    : zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  const kind = method === "zlib" ? zlib.constants.Z_SYNC_FLUSH : zlib.constants.ZSTD_e_flush;
  stream.on("data", () => {});
  const packet = 128 * 4096;
  const t0 = performance.now();
  for (let off = 0; off < data.length; off += packet) {
    await new Promise<void>((r) => {
      stream.write(data.subarray(off, off + packet));
      stream.flush(kind, () => r());
    });
  }
  const secs = (performance.now() - t0) / 1000;
  stream.close();
  return data.length / secs;
}

/** Destination QMP round trips (query-migrate) while idle and while it loads a rate-limited stream. */
async function qmpLatencyDuringLoad(seed: number): Promise<{ idle: number[]; load: number[] }> {
  const pair = await MigrationPair.start({
    name: "/bench/qmp-latency",
    tier: "slow",
    flow: "precopy",
    why: "bench: destination QMP latency during a load",
    machine: "pc-256",
    workload: { kind: "idle" },
    transport: "unix",
  }, { seed, world: engineWorld, waitMs: 60_000, log: () => {} });
  const rtt = async () => {
    const t = performance.now();
    const s = await pair.dst.qmp.execute<{ status?: string }>("query-migrate");
    return { ms: performance.now() - t, status: s.status };
  };
  try {
    const idle: number[] = [];
    for (let i = 0; i < 200; i++) idle.push((await rtt()).ms);
    await pair.src.qmp.execute("stop");
    await pair.src.qmp.execute("x-test-ram-fill", { seed }, { timeoutMs: 60_000 });
    await pair.setParams(pair.src, { "max-bandwidth": 300_000_000, "downtime-limit": 30_000 });
    await pair.src.qmp.execute("migrate", { uri: `unix:${pair.migsocket}` });
    const load: number[] = [];
    while (true) {
      const r = await rtt();
      if (r.status === "active") load.push(r.ms);
      if (r.status === "completed" || r.status === "failed") break;
    }
    return { idle, load };
  } finally {
    await pair.close();
    await pair.removeDir();
  }
}

interface ColoRun {
  latency: number[];
  pause: number[];
  pages: number[];
  /** The secondary's query-migrate round trips while checkpoints run. */
  qmp: number[];
}

/** Checkpoint latency (checkpoint-request → vmstate-loaded) and primary pause over `count` checkpoints. */
async function coloCheckpoints(multifd: boolean, loaded: boolean, count = 20): Promise<ColoRun> {
  const params: Partial<MigrationParameters> = multifd ? { "multifd-channels": 4 } : {};
  const pair = await MigrationPair.start({
    name: "/bench/colo",
    tier: "slow",
    flow: "colo",
    why: "bench: COLO checkpoint latency",
    colo: { survivor: "secondary" },
    machine: "pc",
    workload: loaded ? { kind: "random", seed: 1, hotPages: 8192, hotPercent: 90 } : { kind: "idle" },
    transport: "tcp",
    defer: multifd,
    caps: multifd ? ["x-colo", "multifd"] : ["x-colo"],
    srcParams: { ...params, "x-checkpoint-delay": 100 },
    dstParams: params,
  }, { seed: 1, world: engineWorld, waitMs: 60_000, log: () => {} });
  type Info = {
    primary: { checkpoints: number; stats: { latency: number; pause: number; ramPages: number }[] };
  };
  try {
    if (multifd) await migrateIncoming(pair, pair.incomingUri());
    await pair.setParams(pair.src, { "max-bandwidth": 0, "downtime-limit": 30_000 });
    await pair.src.qmp.execute("migrate", { uri: await connectUri(pair) });
    const qmp: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = performance.now();
        await pair.dst.qmp.execute("query-migrate");
        qmp.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const info = await pair.wait(`${count + 1} COLO checkpoints`, async () => {
      const i = await pair.src.qmp.execute<Info>("x-test-colo-info");
      return i.primary && i.primary.checkpoints > count ? i : undefined;
    }, 120_000);
    sampling = false;
    await sampler;
    const stats = info.primary.stats.slice(1, count + 1); // the first one carries the initial dirty state
    await pair.dst.qmp.execute("x-colo-lost-heartbeat");
    await pair.src.qmp.execute("x-colo-lost-heartbeat").catch(() => {});
    return {
      latency: stats.map((x) => x.latency),
      pause: stats.map((x) => x.pause),
      pages: stats.map((x) => x.ramPages),
      qmp,
    };
  } finally {
    await pair.close();
    await pair.removeDir();
  }
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

const gb = (bps: number) => `${(bps / 1e9).toFixed(2)} GB/s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

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
}
const plainCompressible = await enginePrecopyThroughput(4000, { entropyBits: 4 });
console.log(
  `plain precopy, compressible RAM: ${gb(plainCompressible.bps)}, ${
    (plainCompressible.bytes / 1e6).toFixed(0)
  } MB on the wire`,
);
for (const compression of ["zlib", "zstd"] as const) {
  const r = await enginePrecopyThroughput(5000, { channels: 4, compression, entropyBits: 4 });
  const limit = await codecLimit(compression, 4);
  console.log(
    `multifd ${compression} (4 channels, level 1), compressible RAM: ${gb(r.bps)} of guest RAM, ` +
      `${(r.bytes / 1e6).toFixed(0)} MB on the wire; node:zlib ${compression} alone: ${gb(limit)} ` +
      `=> ${(r.bps / limit * 100).toFixed(0)}% of the codec limit (aim >= 70%)`,
  );
}

const lat = await qmpLatencyDuringLoad(7);
const fmt = (xs: number[]) =>
  `p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms, max ${
    Math.max(...xs).toFixed(2)
  } ms (n=${xs.length})`;
console.log(`destination QMP query-migrate round trip, idle:        ${fmt(lat.idle)}`);
console.log(`destination QMP query-migrate round trip, during load: ${fmt(lat.load)}`);
console.log(`ratio p99 load/idle: ${(pct(lat.load, 0.99) / pct(lat.idle, 0.99)).toFixed(1)}x`);

// COLO: per-checkpoint latency on the 128 MiB guest, beside upstream's commit message (10 GbE, 6 GB
// Windows guest, memory transfer time per checkpoint).
const UPSTREAM: Record<string, string> = {
  "plain idle": "mean 4.50 ms, p99 10.33 ms",
  "plain loaded": "mean 24.30 ms, p99 78.05 ms",
  "multifd idle": "mean 6.48 ms, p99 10.41 ms",
  "multifd loaded": "mean 14.12 ms, p99 31.27 ms",
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const multifd of [false, true]) {
  for (const loaded of [false, true]) {
    const key = `${multifd ? "multifd" : "plain"} ${loaded ? "loaded" : "idle"}`;
    const r = await coloCheckpoints(multifd, loaded);
    console.log(
      `COLO ${key.padEnd(14)}: checkpoint mean ${mean(r.latency).toFixed(2)} ms, p99 ${
        pct(r.latency, 0.99).toFixed(2)
      } ms; ` +
        `primary paused mean ${mean(r.pause).toFixed(2)} ms; ${mean(r.pages).toFixed(0)} pages/checkpoint; ` +
        `secondary QMP p99 ${pct(r.qmp, 0.99).toFixed(2)} ms (n=${r.qmp.length})` +
        `  (upstream: ${UPSTREAM[key]})`,
    );
  }
}

const smoke = ALL_CASES.filter((c) => inTier(c, "smoke"));
const t0 = performance.now();
let failed = 0;
for (const c of smoke) {
  const r = await runCase(c, { seed: 1, artifactsDir: null });
  if (!r.ok) failed++;
}
console.log(
  `smoke tier: ${smoke.length} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s wall` +
    (failed ? ` (${failed} FAILED)` : ""),
);
