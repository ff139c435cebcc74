/**
 * The simulated world: source, destination and their vCPUs in this one process under a seeded
 * scheduler (sim/scheduler.ts). Each side is the same Engine the engine process runs, with the same QMP
 * commands, given a virtual clock, an in-memory network and a stepped vCPU instead of the host's; the
 * flow drives it over QMP exactly as it drives a process. A run is a function of its seed: the trace
 * hash printed with the result is the same every time the seed is run on the same commit.
 *
 * What it cannot run, it says: streams to files go through the host's filesystem (whose completions the
 * scheduler does not own), and the stream analyzer runs as a process.
 */
import { Engine } from "../../engine/engine.ts";
import { engineCommands } from "../../engine/qmp/commands.ts";
import { QmpServer } from "../../engine/qmp/server.ts";
import { testCommands } from "../../engine/testing/commands.ts";
import { parseMigrationUri } from "../../engine/transport/uri.ts";
import { errorMessage } from "../../engine/error.ts";
import type { Clock } from "../../engine/clock.ts";
import type { AnyCase } from "../case.ts";
import { QmpClient } from "../../engine/qmp/client.ts";
import { EngineSide } from "./engine.ts";
import type { SideProcess } from "./process_side.ts";
import { SIM_EPOCH_MS, type SimKnobs, Simulation } from "./sim/scheduler.ts";
import { type SimLinkFault, SimNetwork } from "./sim/net.ts";
import type { Network } from "../../engine/transport/socket.ts";
import { SimConnection } from "./sim/link.ts";
import type { StreamMutator } from "../wire_mutate.ts";
import { SimFiles } from "./sim/files.ts";
import { simTls } from "./sim/tls.ts";
import { SimFdTable, withFds } from "./sim/fds.ts";
import type { FdMonitor } from "../fds.ts";
import type { FileStore } from "../../engine/transport/file.ts";
import { SimVcpu } from "./sim/vcpu.ts";
import { memoryRegistry } from "../../engine/hostmem.ts";
import type { CprFd } from "../../engine/cpr.ts";
import { SimCprChannels } from "./sim/cpr.ts";
import {
  type CaseNeeds,
  modelCannotRun,
  type Side,
  type SideSpec,
  type Unavailable,
  type World,
  type WorldTrace,
} from "./world.ts";

/** One pair's simulation: its scheduler, its network, the sides alive in it. */
class SimPair implements WorldTrace {
  readonly sim: Simulation;
  readonly net: SimNetwork;
  /** The pair's file: paths, in memory (both sides and the flow see the same files). */
  readonly files = new SimFiles();
  /** The pair's descriptors (stand-ins for the OS's: sockets and open files passed with getfd, add-fd). */
  readonly fds: SimFdTable;
  /** The pair's shared memory files (a memory backend with share=on: one buffer both sides map). */
  readonly hostMemory = memoryRegistry();
  /** cpr-transfer's channels between the pair's sides. */
  readonly cpr = new SimCprChannels();
  readonly alive = new Set<SimProcess>();

  constructor(seed: number, dir: string, opts: SimWorldOptions, interleavePercent?: number) {
    const { knobs, fault, mutator, label } = opts;
    this.sim = new Simulation(seed, knobs, { record: RECORD_TO !== undefined, interleavePercent, label });
    this.net = new SimNetwork(this.sim, dir, fault, mutator);
    this.fds = new SimFdTable(this.net, this.files);
    // A deadlock ends the flow's waits at once: every connection resets (the report says why).
    this.sim.onStall(() => {
      this.net.resetAll();
      for (const p of this.alive) p.resetQmp();
    });
  }

  hash(): string {
    return this.sim.traceHash();
  }

  report(): string {
    const s = this.sim;
    const lines = [
      `simulation: seed ${s.seed}, ${s.decisions} decisions, virtual time ${s.now.toFixed(3)} ms, ` +
      `trace ${s.traceHash().slice(0, 16)}`,
      `knobs: ${JSON.stringify(s.knobs)}`,
    ];
    if (s.stalled) lines.push(s.stalled);
    lines.push("last decisions:", ...s.recent().map((d) => `  #${d.n} @${d.at.toFixed(3)} ${d.what}`));
    lines.push("links:", ...this.net.describe().map((l) => `  ${l}`));
    return lines.join("\n");
  }
}

const pairs = new Map<string, SimPair>();

/** MIGTEST_SIM_TRACE=FILE: every traced line of the last pair goes to FILE (diffing two runs of a seed). */
const RECORD_TO =
  Deno.permissions.querySync({ name: "env", variable: "MIGTEST_SIM_TRACE" }).state === "granted"
    ? Deno.env.get("MIGTEST_SIM_TRACE")
    : undefined;

/** How long a side may take to close on SIGTERM before it is killed (virtual ms, as the process world's). */
const KILL_GRACE_MS = 3000;
const SIGKILL_STATUS: Deno.CommandStatus = { success: false, code: 137, signal: "SIGKILL" };

/** One engine in the simulation, as the harness sees a process. */
class SimProcess implements SideProcess {
  readonly engine: Engine;
  readonly serialPath: string;
  readonly fdMonitorPath: string;
  readonly #server: QmpServer;
  readonly #qmpConn: SimConnection;
  #qmp: QmpClient | null = null;
  /** The descriptor-passing monitor: its connection, what rides on it, its client once used. */
  readonly #fdConn: SimConnection;
  readonly #fdQueue: number[] = [];
  #fdMonitor: Promise<FdMonitor> | null = null;
  #fdQmp: QmpClient | null = null;
  #fdUnwatch: (() => void) | null = null;
  #stderr = "";
  #exit: Deno.CommandStatus | null = null;
  #exitWaiters: ((s: Deno.CommandStatus) => void)[] = [];
  #unwatch: (() => void) | null = null;

  constructor(
    readonly pair: SimPair,
    readonly spec: SideSpec,
    /** cpr-transfer's target: the state its cpr channel delivered. */
    cpr?: { fds: CprFd[]; hangUp(): void },
  ) {
    const { sim } = pair;
    this.serialPath = `${spec.dir}/${spec.name}_serial`;
    this.fdMonitorPath = `${spec.dir}/${spec.name}.fdqmp`;
    this.engine = new Engine({
      name: spec.name,
      machine: spec.machine,
      workload: spec.workload,
      incoming: spec.incoming,
      startPaused: spec.startPaused ?? false,
      serialPath: this.serialPath,
      uuid: spec.uuid,
      memPrealloc: spec.memPrealloc,
      dirtyRingSize: spec.dirtyRingSize,
      memoryBackend: spec.memoryBackend,
      auxRamShare: spec.auxRamShare,
      cprIncoming: cpr ? new Map(cpr.fds.map((f) => [f.name, f.fd])) : undefined,
      runMs: spec.vcpu?.runMs,
      sleepMs: spec.vcpu?.sleepMs,
    }, {
      emit: (event, data) => this.#server.emit(event, data),
      log: (msg) => this.#log(msg),
      exit: (code) => void this.#end(code),
      abort: (msg) => {
        this.#log(`FATAL: ${msg}; aborting`);
        this.#die({ success: false, code: 134, signal: "SIGABRT" });
        throw new Error(`${spec.name} aborted: ${msg}`);
      },
      clock: sim.engineClock,
      net: pair.net.forSide(spec.name),
      files: pair.files,
      tls: simTls(sim.engineClock),
      fds: pair.fds,
      createVcpu: (o) => new SimVcpu(sim, spec.name, o),
      hostMemory: pair.hostMemory,
      cprChannel: pair.cpr.channel,
      cprHangUp: cpr?.hangUp,
    });
    this.#server = QmpServer.unbound({
      path: `${spec.dir}/${spec.name}.qmp`,
      commands: [...engineCommands(this.engine), ...testCommands(this.engine)],
      clock: sim.engineClock,
      epochMs: SIM_EPOCH_MS,
      // Every QMP message goes into the trace, with the pair's (random) directory named alike.
      onTraffic: (e) => sim.traceLine(`qmp ${spec.name} ${e.dir} ${e.text.replaceAll(spec.dir, "$DIR")}`),
      onClientGone: (id) => this.engine.fds.clientGone(id),
    });
    this.#qmpConn = new SimConnection(sim, `qmp-${spec.name}`, {
      capacity: 1 << 20,
      latencyMs: sim.knobs.qmpLatencyMs,
      names: ["harness", spec.name],
    });
    this.#server.connect(this.#qmpConn.b);
    this.#fdConn = new SimConnection(sim, `fdqmp-${spec.name}`, {
      capacity: 1 << 20,
      latencyMs: sim.knobs.qmpLatencyMs,
      names: ["harness", spec.name],
    });
    this.#server.connect(withFds(this.#fdConn.b, this.#fdQueue));
    if (spec.incoming && spec.incoming !== "defer") {
      this.engine.incoming.start(parseMigrationUri(spec.incoming));
    }
    pair.alive.add(this);
  }

  async connect(): Promise<void> {
    const { sim } = this.pair;
    // Starting a process takes a while; a side already running (the source) runs meanwhile.
    await sim.flowClock.sleep(sim.knobs.startupMs);
    this.#qmp = await sim.flowWait(QmpClient.over(this.#qmpConn.a, `${this.spec.dir}/${this.spec.name}.qmp`, {
      name: this.spec.name,
      transcript: this.spec.transcript,
      timeoutMs: this.spec.timeoutMs,
      oob: this.spec.colo,
      clock: sim.flowClock,
    }));
    const qmp = this.#qmp;
    this.#unwatch = sim.watchFlow(() => qmp.waiting);
  }

  get name(): string {
    return this.spec.name;
  }

  /** The fd monitor's client (made on first use); descriptors ride along as SCM_RIGHTS would carry them. */
  fdMonitor(): Promise<FdMonitor> {
    this.#fdMonitor ??= (async () => {
      const { sim } = this.pair;
      const client = await sim.flowWait(QmpClient.over(this.#fdConn.a, this.fdMonitorPath, {
        name: `${this.spec.name}-fd`,
        transcript: this.spec.transcript,
        timeoutMs: this.spec.timeoutMs,
        clock: sim.flowClock,
      }));
      this.#fdQmp = client;
      this.#fdUnwatch = sim.watchFlow(() => client.waiting);
      return {
        execute: <T>(cmd: string, args?: Record<string, unknown>, fds: number[] = []) => {
          this.#fdQueue.push(...this.pair.fds.pass(fds));
          return client.execute<T>(cmd, args);
        },
        close: () => client.close(),
      };
    })();
    return this.#fdMonitor;
  }

  get qmp(): QmpClient {
    if (!this.#qmp) throw new Error(`${this.spec.name}: QMP not connected`);
    return this.#qmp;
  }

  get clock(): Clock {
    return this.pair.sim.flowClock;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get exitStatus(): Deno.CommandStatus | null {
    return this.#exit;
  }

  #log(msg: string): void {
    this.#stderr += `@${this.pair.sim.now.toFixed(3)}ms ${this.spec.name}: ${msg}\n`;
  }

  /** The engine asked to exit (`quit`, exit-on-error): an orderly end, as main.ts's shutdown. */
  async #end(code: number): Promise<void> {
    if (this.#exit) return;
    this.#log(`exiting with status ${code}`);
    try {
      await this.engine.close();
    } catch (e) {
      this.#log(`close: ${errorMessage(e)}`);
    }
    await this.#server.close();
    this.#finish({ success: code === 0, code, signal: null });
  }

  /** Dies at once: every connection of the side resets, the guest stops where it is. */
  #die(status: Deno.CommandStatus): void {
    if (this.#exit) return;
    this.engine.machine.vcpu.terminate();
    this.pair.net.resetSide(this.spec.name);
    this.#qmpConn.reset();
    // What the engine was doing unwinds on the reset links; nothing of it is observable any more.
    void this.engine.close().catch(() => {});
    void this.#server.close();
    this.#finish(status);
  }

  #finish(status: Deno.CommandStatus): void {
    if (this.#exit) return;
    this.#exit = status;
    for (const w of this.#exitWaiters.splice(0)) w(status);
    this.pair.alive.delete(this);
  }

  #exited(): Promise<Deno.CommandStatus> {
    if (this.#exit) return Promise.resolve(this.#exit);
    return new Promise((r) => this.#exitWaiters.push(r));
  }

  async waitExit(timeoutMs: number): Promise<Deno.CommandStatus> {
    const { sim } = this.pair;
    let cancel = () => {};
    const timeout = new Promise<null>((r) => (cancel = sim.flowClock.timer(() => r(null), timeoutMs)));
    const s = await sim.flowWait(Promise.race([this.#exited(), timeout]));
    cancel();
    if (!s) throw new Error(`${this.spec.name} did not exit within ${timeoutMs} ms (virtual)`);
    return s;
  }

  async sigkill(): Promise<Deno.CommandStatus> {
    this.#die(SIGKILL_STATUS);
    return await this.#release();
  }

  resetQmp(): void {
    this.#qmpConn.reset();
  }

  /** A clean end (SIGTERM): the engine closes, then its QMP; one that lingers is killed (SIGKILL). */
  async kill(): Promise<Deno.CommandStatus> {
    const { sim } = this.pair;
    if (!this.#exit) {
      let cancel = () => {};
      const lingers = new Promise<void>((r) => (cancel = sim.flowClock.timer(r, KILL_GRACE_MS)));
      await sim.flowWait(Promise.race([this.#end(0), lingers]));
      cancel();
      if (!this.#exit) {
        this.#log(`still closing after ${KILL_GRACE_MS} ms (virtual): killed`);
        this.#die(SIGKILL_STATUS);
      }
    }
    return await this.#release();
  }

  async #release(): Promise<Deno.CommandStatus> {
    this.#unwatch?.();
    this.#unwatch = null;
    this.#fdUnwatch?.();
    this.#fdUnwatch = null;
    await this.#qmp?.close();
    await this.#fdQmp?.close();
    this.#qmpConn.dispose();
    this.#fdConn.dispose();
    await Deno.writeTextFile(`${this.spec.dir}/${this.spec.name}.log`, this.#stderr).catch(() => {});
    if (this.pair.alive.size === 0) await closePair(this.spec.dir, this.pair);
    return this.#exit!;
  }
}

async function closePair(dir: string, pair: SimPair): Promise<void> {
  if (pairs.get(dir) === pair) pairs.delete(dir);
  await pair.sim.close();
  if (RECORD_TO && pair.sim.lines) await Deno.writeTextFile(RECORD_TO, pair.sim.lines.join("\n") + "\n");
  pair.net.dispose();
  pair.hostMemory.clear();
  pair.cpr.dispose();
}

/** A side of the simulation: the engine world's side (same x-test commands) on the virtual clock. */
class SimSide extends EngineSide<SimProcess> {
  get clock(): Clock {
    return this.process.clock;
  }

  get trace(): WorldTrace {
    return this.process.pair;
  }

  /** The simulated network: test peers connect and listen in memory, as the sides do. */
  override network(): Network {
    return this.process.pair.net.forSide("harness");
  }

  /** The simulated files: the flow reads and writes the pair's file: paths in memory, as the sides do. */
  override files(): FileStore {
    return this.process.pair.files;
  }

  /** The simulated descriptors: the pair's table, passed over the side's simulated fd monitor. */
  override fds(): ReturnType<EngineSide["fds"]> {
    const t = this.process.pair.fds;
    return {
      monitor: () => this.process.fdMonitor(),
      socketPair: () => t.socketPair(),
      openFile: (path, f) => t.openFile(path, f),
      close: (fd) => t.close(fd),
      dispose: () => Promise.resolve(),
    };
  }

  override captureMainChannel(): Promise<Unavailable> {
    return Promise.resolve({ unavailable: "capturing writes a file from inside the run; not simulated" });
  }
}

/** Why the simulation cannot run the case (its family says what it does outside), or null. */
export function simCannotRun(c: AnyCase, needs: CaseNeeds): string | null {
  return modelCannotRun(c, needs) ?? needs.notSimulated ?? null;
}

/**
 * The simulated world; `knobs` fixes how the scheduler shapes every run (the swarm's replay of a shrunk
 * plan), else each run draws them from its seed.
 */
export interface SimWorldOptions {
  knobs?: SimKnobs;
  fault?: SimLinkFault;
  /** The fuzzer's edits on a migration connection (one pair: a world per run). */
  mutator?: StreamMutator;
  /** What the run is (a swarm's plan), hashed first into the trace; else the case's name. */
  label?: string;
}

export function createSimWorld(opts: SimWorldOptions = {}): World {
  return {
    name: "sim",
    editsLinks: true,
    cannotRun: simCannotRun,
    spawn: (spec) => spawnSimSide(spec, opts),
  };
}

export const simWorld: World = createSimWorld();

async function spawnSimSide(spec: SideSpec, opts: SimWorldOptions): Promise<Side> {
  let pair = pairs.get(spec.dir);
  if (!pair) {
    const mutator = opts.mutator ?? spec.wireMutator;
    const label = opts.label ?? spec.caseName;
    pair = new SimPair(spec.seed ?? 0, spec.dir, { ...opts, mutator, label }, spec.interleavePercent);
    pairs.set(spec.dir, pair);
    pair.sim.start();
  }
  // cpr-transfer's target comes up only once the source has sent it the CPR state.
  const cpr = spec.cprChannel ? await pair.cpr.listen(spec.cprChannel) : undefined;
  const p = new SimProcess(pair, spec, cpr);
  try {
    await p.connect();
  } catch (e) {
    await p.kill();
    throw e;
  }
  return new SimSide(p, spec.name, spec.memoryBackend?.id);
}
