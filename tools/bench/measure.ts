/**
 * What the bench measures, one function per measurement: the raw unix-socket baseline, engine precopy
 * (plain and multifd), node:zlib alone as the codec limit, destination QMP latency during a load, and
 * COLO checkpoints. bench.ts runs them and prints the ratios. The pairs run without the query-migrate
 * sampler (sampleMs 0): its polls would share the QMP connection whose latency is measured.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { MigrationParameters } from "../../engine/options.ts";
import { startPair } from "../../harness/families/mod.ts";
import { connectUri, migrateIncoming } from "../../harness/migration_qmp.ts";
import { engineWorld } from "../../harness/world/engine.ts";
import type { TlsSpec } from "../../harness/case.ts";

/** Bytes the raw baseline pushes through the socket. */
const RAW_BYTES = 512 << 20;

export async function rawUnixThroughput(): Promise<number> {
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

export interface EngineRun {
  bps: number;
  bytes: number;
  ms: number;
}

/** Non-live precopy of the 256 MiB guest over a unix socket, unlimited bandwidth, migrate → completed. */
export async function enginePrecopyThroughput(
  seed: number,
  opts: { channels?: number; compression?: string; entropyBits?: number; tls?: TlsSpec } = {},
): Promise<EngineRun> {
  const params: Partial<MigrationParameters> = {};
  if (opts.channels) {
    params["multifd-channels"] = opts.channels;
    params["multifd-compression"] = opts.compression === "zlib" || opts.compression === "zstd"
      ? opts.compression
      : "none";
  }
  const pair = await startPair({
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
    ...(opts.tls ? { tls: opts.tls } : {}),
  }, { seed, world: engineWorld, waitMs: 60_000, sampleMs: 0, log: () => {} });
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
export async function codecLimit(method: "zlib" | "zstd", entropyBits: number, mib = 64): Promise<number> {
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
export async function qmpLatencyDuringLoad(seed: number): Promise<{ idle: number[]; load: number[] }> {
  const pair = await startPair({
    name: "/bench/qmp-latency",
    tier: "slow",
    flow: "precopy",
    why: "bench: destination QMP latency during a load",
    machine: "pc-256",
    workload: { kind: "idle" },
    transport: "unix",
  }, { seed, world: engineWorld, waitMs: 60_000, sampleMs: 0, log: () => {} });
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

export interface ColoRun {
  latency: number[];
  pause: number[];
  pages: number[];
  /** The secondary's query-migrate round trips while checkpoints run. */
  qmp: number[];
}

/** Checkpoint latency (checkpoint-request → vmstate-loaded) and primary pause over `count` checkpoints. */
export async function coloCheckpoints(multifd: boolean, loaded: boolean, count = 20): Promise<ColoRun> {
  const params: Partial<MigrationParameters> = multifd ? { "multifd-channels": 4 } : {};
  const pair = await startPair({
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
  }, { seed: 1, world: engineWorld, waitMs: 60_000, sampleMs: 0, log: () => {} });
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
        await sleep(2);
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
