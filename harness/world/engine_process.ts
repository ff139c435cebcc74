/**
 * One engine process as the harness sees it: spawned with narrow permissions inside the case's private
 * directory, its stderr kept, its QMP socket connected, and always reaped (SIGTERM, then SIGKILL).
 */
import { Child, SpawnedProcess } from "./child.ts";
import { QmpClient, type QmpTranscriptEntry } from "../../engine/qmp/client.ts";
import type { MemoryBackend } from "../../engine/hostmem.ts";

const ENGINE_MAIN = new URL("../../engine/main.ts", import.meta.url);
const ENGINE_DIR = new URL("../../engine/", import.meta.url).pathname;
const FIXTURES_DIR = new URL("../../fixtures/", import.meta.url).pathname;

export interface EngineSpawnOptions {
  /** "source" or "target" (QEMU's -name). */
  name: string;
  /** Private run directory (0700); the engine may read and write only here. */
  dir: string;
  machine: string;
  /** --qemu-machine: the machine file of a QEMU source (instead of `machine`). */
  qemuMachine?: string;
  workload: string;
  incoming?: string;
  startPaused?: boolean;
  uuid?: string;
  memPrealloc?: boolean;
  dirtyRingSize?: number;
  memoryBackend?: MemoryBackend;
  auxRamShare?: boolean;
  cprChannel?: string;
  vcpu?: { runMs: number; sleepMs: number };
  /** Unix socket paths the engine may use besides its QMP socket (the migration socket). */
  socketPaths?: string[];
  transcript: QmpTranscriptEntry[];
  timeoutMs: number;
  /** Negotiate QMP's `oob` capability (COLO's yank is exec-oob). */
  oob?: boolean;
}

export class EngineProcess extends SpawnedProcess {
  readonly qmpPath: string;
  readonly serialPath: string;
  /** The engine's --qmp-fd monitor (descriptors passed with getfd and add-fd). */
  readonly fdMonitorPath: string;
  readonly logPath: string;
  protected readonly child: Child;
  qmp!: QmpClient;

  private constructor(readonly opts: EngineSpawnOptions) {
    super();
    this.qmpPath = `${opts.dir}/${opts.name}.qmp`;
    this.serialPath = `${opts.dir}/${opts.name}_serial`;
    this.fdMonitorPath = `${opts.dir}/${opts.name}.fdqmp`;
    this.logPath = `${opts.dir}/${opts.name}.log`;
    const nets = ["127.0.0.1", `unix:${this.qmpPath}`, ...(opts.socketPaths ?? []).map((p) => `unix:${p}`)];
    const args = [
      "run",
      "--quiet",
      `--allow-net=${nets.join(",")}`,
      `--allow-read=${opts.dir},${ENGINE_DIR},${FIXTURES_DIR}`,
      `--allow-write=${opts.dir}`,
      // TLS with pre-shared keys runs an openssl child as its record layer (engine/transport/tls_psk.ts).
      "--allow-run=openssl",
      // The --qmp-fd monitor takes descriptors over a socket held through libc (engine/os/libc.ts).
      "--allow-ffi",
      // Extra `deno run` flags for the engines, e.g. --cpu-prof --cpu-prof-dir=/tmp/prof to profile them.
      ...(Deno.env.get("MIGTEST_ENGINE_FLAGS")?.split(/\s+/).filter(Boolean) ?? []),
      ENGINE_MAIN.pathname,
      "--name",
      opts.name,
      "--qmp",
      `unix:${this.qmpPath}`,
      "--qmp-fd",
      `unix:${this.fdMonitorPath}`,
      "--serial",
      `file:${this.serialPath}`,
      "--machine",
      opts.machine,
      "--workload",
      opts.workload,
    ];
    if (opts.qemuMachine) args.push("--qemu-machine", opts.qemuMachine);
    if (opts.incoming) args.push("--incoming", opts.incoming);
    if (opts.cprChannel) {
      args.push("--incoming", `cpr,addr.transport=socket,addr.type=unix,addr.path=${opts.cprChannel}`);
    }
    if (opts.auxRamShare) args.push("--aux-ram-share");
    if (opts.startPaused) args.push("-S");
    if (opts.uuid) args.push("--uuid", opts.uuid);
    if (opts.memPrealloc) args.push("--mem-prealloc");
    if (opts.dirtyRingSize) args.push("--dirty-ring-size", String(opts.dirtyRingSize));
    if (opts.memoryBackend) {
      const b = opts.memoryBackend;
      args.push(
        "--memory-backend",
        b.type === "memfd"
          ? `type=memfd,id=${b.id}`
          : `id=${b.id},mem-path=${b.memPath},share=${b.share ? "on" : "off"}`,
      );
    }
    if (opts.vcpu) args.push("--run-ms", String(opts.vcpu.runMs), "--sleep-ms", String(opts.vcpu.sleepMs));
    this.child = new Child(opts.name, Deno.execPath(), args, { NO_COLOR: "1" });
  }

  static async spawn(opts: EngineSpawnOptions): Promise<EngineProcess> {
    const p = new EngineProcess(opts);
    // If the engine dies during start-up, stop waiting for its socket (no timer may outlive the case).
    const gaveUp = new AbortController();
    const connecting = QmpClient.connect(p.qmpPath, {
      name: opts.name,
      timeoutMs: opts.timeoutMs,
      transcript: opts.transcript,
      oob: opts.oob,
      signal: gaveUp.signal,
    });
    try {
      p.qmp = await Promise.race([
        connecting,
        p.child.status.then((s) => {
          throw new Error(`${opts.name} exited with status ${s.code} during startup:\n${p.stderr}`);
        }),
      ]);
    } catch (e) {
      gaveUp.abort();
      await connecting.then((c) => c.close(), () => {});
      await p.kill();
      throw e;
    }
    return p;
  }

  get name(): string {
    return this.opts.name;
  }

  /**
   * Ends the process: SIGTERM (a clean QEMU-like exit, status 0), SIGKILL if it lingers. Returns the
   * exit status. Always closes the QMP client and drains stderr, so nothing is left open.
   */
  async kill(graceMs = 3000): Promise<Deno.CommandStatus> {
    const status = await this.child.terminate(graceMs);
    await this.qmp?.close();
    await Deno.writeTextFile(this.logPath, this.stderr).catch(() => {});
    return status;
  }
}
