/**
 * The core of the flows (upstream's framework.c): start a source/destination pair in a private directory
 * in whichever world the run uses, set what the case asks of both sides, wait with timeouts whose errors
 * say what was awaited and what both sides were doing, and tear everything down. It names no family: what a
 * family adds to the pair comes in as its hooks (PairHooks), and the flows in harness/families/ use it.
 */
import assert from "node:assert/strict";
import type { WorkloadSpec } from "../engine/guest/workload.ts";
import type { MigrationStatus } from "../engine/migration_status.ts";
import type { Capability, SetParameters } from "../engine/options.ts";
import type { AnyCase, SocketCase } from "./case.ts";
import { errorMessage } from "../engine/error.ts";
import { type Clock, hostClock } from "../engine/clock.ts";
import { formatTranscript, type QmpTranscriptEntry } from "../engine/qmp/client.ts";
import { DEFAULT_SAMPLE_MS, type Sample, Sampler } from "./report/sampler.ts";
import { type EventWait, type Probe, WaitAbort, waitFor, WaitTimeoutError } from "../engine/wait.ts";
import type { LackedField } from "../engine/testing/releases.ts";
import { setupTls } from "./tls.ts";
import type { CaseNeeds, DeviceState, Side, Unavailable, World } from "./world/world.ts";
import { rdmaAddress } from "./world/rdma.ts";
import { type ReturnPathPlace, type WireFault, WireHold, WireProxy, type WireReport } from "./wire_proxy.ts";
import type { ColoWirePlace } from "./wire_colo.ts";
import { StreamMutator } from "./wire_mutate.ts";

export interface CaseContext {
  seed: number;
  /** Which world runs the pair. */
  world: World;
  /** Where the pair's private directory is made (default: the system temp dir). */
  tmpRoot?: string;
  /** Default timeout of each wait. */
  waitMs: number;
  /** Interval of the query-migrate sampler (harness/report/sampler.ts), default 100 ms; 0 turns it off. */
  sampleMs?: number;
  log(msg: string): void;
}

/** Migration statistics of a finished case, printed per case by the matrix. */
export interface CaseStats {
  totalTimeMs?: number;
  downtimeMs?: number;
  transferredBytes?: number;
  dirtySyncCount?: number;
  /** A COLO case: checkpoints done, each one's latency (request → vmstate-loaded), the failover time. */
  colo?: { checkpoints: number; latencyMs: number[]; failoverMs?: number };
  /**
   * A postcopy case: the source's page requests, the destination's blocktime, and where the destination
   * reports them (the model; QEMU from 10.1) its mean fault latency and latency buckets (2^k µs).
   */
  postcopy?: { requests: number; blocktimeMs: number; latencyNs?: number; latencyDist?: number[] };
}

/** A flow-level failure (the case's expectation was not met); inside a wait's probe it ends the wait. */
export class FlowError extends WaitAbort {
  constructor(message: string) {
    super(message);
    this.name = "FlowError";
  }
}

export type QmpStatus = Record<string, unknown>;

/**
 * What a case's family adds to the pair (harness/family.ts: a descriptor is these and more). Methods, so
 * a family's hooks on its own record type serve the pair of any case (it only gets its own records).
 */
export interface PairHooks<C extends AnyCase = AnyCase> {
  /**
   * The socket the case chooses, its destination listening from the start unless it defers; null or
   * absent when the flow sends migrate-incoming itself.
   */
  socket?(c: C): SocketCase | null;
  /** After the source's capabilities, parameters and defects are set. */
  setupSource?(p: MigrationPair, c: C): Promise<void>;
  /** After the (re)started target's capabilities, parameters and defects are set. */
  setupTarget?(p: MigrationPair, c: C): Promise<void>;
  /** QMP queries, besides query-migrate, whose answers go into a failed case's final status. */
  readonly finalQueries?: readonly string[];
  /**
   * The flow starts the destination itself (spawnTarget), once it can come up: cpr-transfer's target
   * loads the source's CPR state before its monitor exists.
   */
  readonly targetLater?: boolean;
}

/** The case's family as the pair sees it: its hooks and what it needs of the world. */
export interface PairFamily {
  hooks: PairHooks;
  needs: CaseNeeds;
}

/** Per side ("source", "target"): its last answers by command, or how it exited. */
export type FinalStatus = Record<string, Record<string, unknown>>;

export class MigrationPair {
  readonly transcript: QmpTranscriptEntry[] = [];
  src!: Side;
  dst!: Side;
  /** Set when a flow expects the destination to have exited. */
  dstExited = false;
  /** Set when a flow killed the source on purpose (SIGKILL). */
  srcKilled = false;
  /** The destination cannot stay up after a failed load (no exit-on-error): it must exit with status 1. */
  dstExitsOnError = false;
  readonly stats: CaseStats = {};
  /** A cross-version case: the fields the source's older release does not send. */
  sourceLacks: LackedField[] = [];
  /** A cross-version case with an older source: the target's devices before the migration. */
  targetBefore: DeviceState | Unavailable | null = null;
  #sampler: Sampler | null = null;
  readonly #wireFaults: WireFault[] = [];
  #wireColo = false;
  readonly #wireHolds: WireHold[] = [];
  readonly #moreWires: WireProxy[] = [];
  #wire: WireProxy | null = null;
  #wireMutator: StreamMutator | null = null;
  /** The case's wire edits (wireEdits): made by the world's links, or by the proxy (viaWire). */
  readonly caseMutator: StreamMutator | null;
  #closing: Promise<{ src?: Deno.CommandStatus; dst?: Deno.CommandStatus }> | null = null;
  /** The latest spawnTarget, settled or not (undefined when it failed: it ended its own process). */
  #spawning: Promise<Side | undefined> | null = null;

  private constructor(
    readonly c: AnyCase,
    readonly ctx: CaseContext,
    readonly dir: string,
    readonly family: PairFamily,
  ) {
    this.caseMutator = c.wireEdits ? new StreamMutator(c.wireEdits) : null;
  }

  /** The sides' time: the host's, or the simulated world's virtual clock. */
  get clock(): Clock {
    return this.src?.clock ?? hostClock;
  }

  /** A pause in the sides' time (a flow letting the guest run a while). */
  sleep(ms: number): Promise<void> {
    return this.clock.sleep(ms);
  }

  get migsocket(): string {
    return `${this.dir}/migsocket`;
  }

  /**
   * Spare sockets in the pair's directory, which the sides may listen and connect on: a postcopy
   * recovery's new channel, a test peer, an address nobody listens on.
   */
  spareSocket(i: 1 | 2 | 3 | 4): string {
    return `${this.dir}/migsocket-${i}`;
  }

  get migfile(): string {
    return `${this.dir}/migfile`;
  }

  /** The socket the destination listens on (unix or tcp port 0), as the case's transport says. */
  incomingUri(): string {
    const s = this.socket;
    if (s?.transport === "rdma") {
      // Upstream's port; the address is the link's (a world that runs the case has checked there is one).
      const r = rdmaAddress(s.ipv6 === true);
      if ("none" in r) throw new FlowError(`rdma: ${r.none}`);
      return `rdma:${r.addr}:29200`;
    }
    return s?.transport === "tcp" ? "tcp:127.0.0.1:0" : `unix:${this.migsocket}`;
  }

  /**
   * The source's channels go through a proxy that applies `fault` (harness/wire_proxy.ts): the next
   * `viaWire` puts the proxy in front of the destination's address.
   */
  breakWire(fault: WireFault): void {
    if (this.#wire) throw new FlowError("a wire fault after the source connected comes too late");
    this.#wireFaults.push(fault);
  }

  /**
   * The main connection goes through the proxy, which follows its COLO checkpoints so that a flow can
   * hold it at a place of one (`holdColo`): the wire form of the model's COLO breakpoints.
   */
  trackColoOnWire(): void {
    if (this.#wire) throw new FlowError("COLO places on the wire are asked for after the source connected");
    this.#wireColo = true;
  }

  /**
   * Holds the main connection's return path before its first message of `place`: the source's channels
   * then go through the proxy, which reads the return path. Asked before the source connects.
   */
  holdReturnPath(place: ReturnPathPlace): WireHold {
    if (this.#wire) throw new FlowError(`holding at ${place}: asked for after the source connected`);
    const hold = new WireHold(place, 0);
    this.#wireHolds.push(hold);
    return hold;
  }

  /**
   * A further proxy, in front of `uri` (a postcopy recovery's new address), holding at `holds`: the URI
   * the source then connects to. Closed with the pair.
   */
  viaWireHeld(uri: string, holds: WireHold[]): string {
    const n = this.#moreWires.length + 2;
    const proxy = WireProxy.start(uri, `${this.dir}/wire-${n}.sock`, [], { holds });
    this.#moreWires.push(proxy);
    this.ctx.log(`wire proxy ${proxy.uri} -> ${uri}: holding ${holds.map((h) => h.place).join(", ")}`);
    return proxy.uri;
  }

  /** Holds the main connection at a place of a COLO checkpoint (needs trackColoOnWire before migrate). */
  holdColo(place: ColoWirePlace, checkpoint?: number): WireHold {
    if (!this.#wire?.colo) throw new FlowError(`holding at ${place}: the main connection is not on the wire`);
    return this.#wire.holdColo(place, checkpoint);
  }

  /**
   * The source's channels go through a proxy that edits one connection's bytes as `m` says (the
   * fuzzer's, `deno task fuzz --world`): the next `viaWire` puts it in front of the destination.
   */
  mutateWire(m: StreamMutator): void {
    if (this.#wire) throw new FlowError("a mangled wire asked for after the source connected");
    this.#wireMutator = m;
  }

  /** The fuzzer's edits of a saved migration file, made after the save and before the load. */
  fileMutator: StreamMutator | null = null;

  /** The URI the source migrates to: `uri` itself, or a proxy in front of it once a wire fault is set. */
  viaWire(uri: string): string {
    const mutator = this.#wireMutator ?? (this.ctx.world.editsLinks ? null : this.caseMutator) ?? undefined;
    if (!this.#wireFaults.length && !this.#wireColo && !this.#wireHolds.length && !mutator) return uri;
    if (!this.#wire) {
      this.#wire = WireProxy.start(uri, `${this.dir}/wire.sock`, this.#wireFaults, {
        colo: this.#wireColo,
        holds: this.#wireHolds,
        mutator,
      });
      this.ctx.log(
        `wire proxy ${this.#wire.uri} -> ${uri}: ${JSON.stringify(this.#wireFaults)}` +
          (this.#wireColo ? ", following COLO checkpoints" : "") +
          (this.#wireHolds.length ? `, holding ${this.#wireHolds.map((h) => h.place).join(", ")}` : ""),
      );
    }
    return this.#wire.uri;
  }

  /** What the wire proxy saw (null: none stood between the sides). */
  wireReport(): WireReport | null {
    return this.#wire?.report() ?? null;
  }

  /** The socket the case chooses, or null (its flow sends migrate-incoming itself). */
  get socket(): SocketCase | null {
    return this.family.hooks.socket?.(this.c) ?? null;
  }

  /** Starts the pair of case `c`, whose family (its registry entry) gives `family`. */
  static async start(c: AnyCase, ctx: CaseContext, family: PairFamily): Promise<MigrationPair> {
    const t0 = performance.now();
    const dir = await makePairDir(ctx.tmpRoot);
    const pair = new MigrationPair(c, ctx, dir, family);
    try {
      pair.src = await pair.#spawn("source", {});
      if (!family.hooks.targetLater) await pair.spawnTarget();
      await pair.setCaps(pair.src, [...(c.caps ?? []), ...(c.srcCaps ?? [])]);
      if (c.srcParams) await pair.setParams(pair.src, c.srcParams);
      const tls = pair.socket?.tls;
      if (tls) await setupTls(pair, pair.src, tls);
      for (const name of c.defects?.src ?? []) {
        await pair.src.qmp.execute("x-test-defect", { name, enabled: true });
      }
      await family.hooks.setupSource?.(pair, c);
    } catch (e) {
      // Nothing may stay behind, not even the directory (the error carries the startup stderr).
      await pair.close();
      await pair.removeDir();
      throw e;
    }
    const sampleMs = ctx.sampleMs ?? DEFAULT_SAMPLE_MS;
    // In a deterministic world a sampler on the host's clock would be a second, unscheduled driver.
    if (sampleMs > 0 && !pair.src.trace) {
      pair.#sampler = new Sampler(() => [pair.src, pair.dst], { intervalMs: sampleMs, t0 });
      pair.#sampler.start();
    }
    return pair;
  }

  /** What the sampler saw so far (ms since the pair started), complete once the pair is closed. */
  get samples(): readonly Sample[] {
    return this.#sampler?.samples ?? [];
  }

  #spawn(
    name: "source" | "target",
    opts: { incoming?: string; startPaused?: boolean; cprChannel?: string },
  ): Promise<Side> {
    const c = this.c;
    const w: WorkloadSpec = c.workload ?? { kind: "a-b" };
    return this.ctx.world.spawn({
      name,
      seed: this.ctx.seed,
      dir: this.dir,
      machine: c.machine ?? "pc",
      workload: "seed" in w ? { ...w, seed: w.seed ?? this.ctx.seed } : w,
      incoming: opts.incoming,
      startPaused: opts.startPaused,
      uuid: name === "source" ? c.uuid?.src : c.uuid?.dst,
      memPrealloc: c.memPrealloc,
      dirtyRingSize: c.dirtyRingSize,
      memoryBackend: c.memType === "shmem"
        ? { id: "mem0", memPath: `${this.dir}/shmem`, share: true }
        : c.memType === "memfd"
        ? { type: "memfd", id: "mem0", share: true }
        : undefined,
      auxRamShare: c.auxRamShare,
      cprChannel: opts.cprChannel,
      vcpu: name === "target" ? c.dstVcpu ?? c.vcpu : c.vcpu,
      interleavePercent: c.simInterleavePercent,
      wireMutator: this.caseMutator ?? undefined,
      caseName: c.name,
      // The wire proxy's sockets too: a model source beside QEMU connects through them.
      socketPaths: [
        this.migsocket,
        ...([1, 2, 3, 4] as const).map((i) => this.spareSocket(i)),
        `${this.dir}/wire.sock`,
        ...[2, 3, 4].map((n) => `${this.dir}/wire-${n}.sock`),
      ],
      transcript: this.transcript,
      timeoutMs: this.ctx.waitMs,
      colo: this.family.needs.coloPair,
    });
  }

  /**
   * Starts (or restarts, after a cancelled migration) the destination, paused (-S) so RAM can be
   * compared. A socket case listens at once unless it defers; every other flow sends migrate-incoming.
   */
  async spawnTarget(opts: { cprChannel?: string; setup?: boolean } = {}): Promise<Side> {
    const socket = this.socket;
    const listens = socket !== null && !socket.defer;
    const spawning = this.#spawn("target", {
      incoming: listens ? this.incomingUri() : "defer",
      startPaused: true,
      cprChannel: opts.cprChannel,
    });
    // A target that comes up late (cpr-transfer's) is still the pair's to end, even if the case fails first.
    this.#spawning = spawning.catch(() => undefined);
    const dst = await spawning;
    this.dst = dst;
    this.dstExited = false;
    if (opts.setup === false) return dst;
    await this.setTargetUp(dst);
    return dst;
  }

  /** The target's capabilities, parameters, TLS, defects and its family's own setup. */
  async setTargetUp(dst: Side): Promise<void> {
    const socket = this.socket;
    await this.setCaps(dst, [...(this.c.caps ?? []), ...(this.c.dstCaps ?? [])]);
    if (this.c.dstParams) await this.setParams(dst, this.c.dstParams);
    if (socket?.tls) await setupTls(this, dst, socket.tls);
    for (const name of this.c.defects?.dst ?? []) {
      await dst.qmp.execute("x-test-defect", { name, enabled: true });
    }
    await this.family.hooks.setupTarget?.(this, this.c);
  }

  /** Switches capabilities on (with `events`); the others keep their state. */
  async setCaps(side: Side, caps: Capability[]): Promise<void> {
    const list = [...new Set(["events", ...caps])].map((capability) => ({ capability, state: true }));
    await side.qmp.execute("migrate-set-capabilities", { capabilities: list });
  }

  /** migrate_set_parameter_*: set, then read back and check, as upstream does. */
  async setParams(side: Side, params: SetParameters): Promise<void> {
    await side.qmp.execute("migrate-set-parameters", params);
    const now = await side.qmp.execute<QmpStatus>("query-migrate-parameters");
    for (const [k, v] of Object.entries(params)) {
      // QAPI StrOrNull: null resets a string parameter, which reads back as "".
      assert.equal(now[k], v ?? "", `${side.name}: parameter ${k} reads back ${now[k]}, set ${v}`);
    }
  }

  async diagnose(): Promise<string> {
    const lines: string[] = [];
    for (const side of [this.src, this.dst]) {
      if (!side) continue;
      let status = "(no answer)";
      if (side.exitStatus) status = `(process exited with status ${side.exitStatus.code})`;
      else {
        try {
          status = JSON.stringify(await side.qmp.execute("query-migrate", {}, { timeoutMs: 2000 }));
        } catch (e) {
          status = `(query-migrate failed: ${(e as Error).message})`;
        }
      }
      const events = side.qmp.events.slice(-6).map((e) => `${e.event}${JSON.stringify(e.data ?? {})}`);
      lines.push(`  ${side.name}: ${status}`, `  ${side.name} last events: ${events.join(" ") || "(none)"}`);
      const tail = side.stderr.trim().split("\n").slice(-3).join("\n    ");
      if (tail) lines.push(`  ${side.name} stderr: ${tail}`);
    }
    return lines.join("\n");
  }

  /**
   * waitFor (a condition, or an event such as `{ feed: side.qmp.feed, since, match }`) on the pair's clock,
   * with the pair's diagnostics: a timeout names what was awaited, what was seen last and what both sides
   * did.
   */
  wait<T>(what: string, on: Probe<T> | EventWait<T>, timeoutMs = this.ctx.waitMs): Promise<T> {
    // A closed pair (a case cut short by its limit or an interrupt) ends every wait at once: a probe's
    // QMP errors would otherwise be retried until the wait's own deadline.
    const open = () => {
      if (this.#closing) throw new FlowError(`stopped waiting for ${what}: the pair was closed`);
    };
    const guarded: Probe<T> | EventWait<T> = typeof on === "function"
      ? (see) => {
        open();
        return on(see);
      }
      : {
        ...on,
        check: () => {
          open();
          on.check?.();
        },
      };
    return waitFor(what, guarded, {
      timeoutMs,
      intervalMs: 5,
      diagnose: () => this.diagnose(),
      clock: this.clock,
    });
  }

  /** query-migrate; a side that died unexpectedly fails at once rather than timing out. */
  async status(side: Side): Promise<QmpStatus> {
    const exit = side.exitStatus;
    if (exit && !(side === this.dst && this.dstExited) && !(side === this.src && this.srcKilled)) {
      throw new FlowError(`${side.name} died with exit ${exitWords(side, exit)}`);
    }
    return await side.qmp.execute<QmpStatus>("query-migrate");
  }

  /**
   * wait_for_migration_status: polls until `goal`; any status in `ungoals` (by default `failed`, and
   * `completed` unless it is the goal) fails at once with the error-desc.
   */
  async waitStatus(side: Side, goal: MigrationStatus, ungoals?: MigrationStatus[]): Promise<QmpStatus> {
    const bad: string[] = ungoals ?? (goal === "completed" ? ["failed"] : ["failed", "completed"]);
    return await this.wait(`${side.name} migration status '${goal}'`, async () => {
      const s = await this.status(side);
      if (s.status === goal) return s;
      if (bad.includes(String(s.status))) {
        throw new FlowError(
          `${side.name} reached status '${s.status}' while waiting for '${goal}'` +
            (s["error-desc"] ? `: ${s["error-desc"]}` : ""),
        );
      }
      return undefined;
    });
  }

  /**
   * An event on `side` (with data.status `status` when given), received at or after index `since`. Woken
   * by the event's arrival (nothing is polled), on the side's QMP clock.
   */
  async waitEvent(side: Side, event: string, status?: string, since = 0): Promise<void> {
    await side.qmp.waitEvent(event, status ? (e) => e.data?.status === status : undefined, {
      timeoutMs: this.ctx.waitMs,
      since,
      matching: status && `status ${status}`,
      diagnose: () => this.diagnose(),
    }).catch(async (e) => {
      // A timeout carries the diagnosis already; a side that closed its QMP gets it here.
      throw new FlowError(
        e instanceof WaitTimeoutError ? e.message : `${errorMessage(e)}\n${await this.diagnose()}`,
      );
    });
  }

  /** Statistics of the source's finished migration (printed per case by the matrix). */
  async recordStats(): Promise<void> {
    const s = await this.status(this.src);
    const ram = (s.ram ?? {}) as Record<string, number>;
    Object.assign(this.stats, {
      totalTimeMs: s["total-time"] as number | undefined,
      downtimeMs: s["downtime"] as number | undefined,
      transferredBytes: ram.transferred,
      dirtySyncCount: ram["dirty-sync-count"],
    });
  }

  /**
   * Ends both sides (SIGTERM; a crash shows as a non-zero status). Every call gets the one closing (a
   * case cut short closes the pair while its flow still runs; the runner's close then waits for it).
   */
  close(): Promise<{ src?: Deno.CommandStatus; dst?: Deno.CommandStatus }> {
    this.#sampler?.stop();
    for (const w of [this.#wire, ...this.#moreWires]) {
      if (w) this.ctx.log(`wire proxy ${w.uri}: ${JSON.stringify(w.report())}`);
    }
    const wire = Promise.all([this.#wire, ...this.#moreWires].map((w) => w?.close()));
    const killDst = this.#spawning ? this.#spawning.then((s) => s?.kill()) : this.dst?.kill();
    this.#closing ??= Promise.all([this.src?.kill(), killDst, wire]).then(async ([src, dst]) => {
      // The sides are gone, so the sampler's requests in flight have ended: nothing outlives the case.
      await this.#sampler?.settled();
      return { src, dst };
    });
    return this.#closing;
  }

  /**
   * What each side says last: query-migrate, and what the family asks besides (query-colo-status). Taken before the sides
   * are closed (a failed case's artifacts); a side that has exited is noted as such, with its status.
   */
  async finalStatus(): Promise<FinalStatus> {
    const out: FinalStatus = {};
    for (const side of [this.src, this.dst]) {
      if (!side) continue;
      const exit = side.exitStatus;
      if (exit) {
        out[side.name] = { exited: { code: exit.code, signal: exit.signal } };
        continue;
      }
      const ask = (command: string) =>
        side.qmp.execute(command, {}, { timeoutMs: 2000 }).catch((e) => ({ "no-answer": errorMessage(e) }));
      const answers: Record<string, unknown> = { "query-migrate": await ask("query-migrate") };
      for (const command of this.family.hooks.finalQueries ?? []) answers[command] = await ask(command);
      out[side.name] = answers;
    }
    return out;
  }

  /**
   * Copies logs, serial output, a captured stream and the QMP transcript into `to` (a failed or kept
   * case's artifacts), with the final status of both sides when it was taken.
   */
  async saveArtifacts(to: string, finalStatus?: FinalStatus): Promise<void> {
    await Deno.mkdir(to, { recursive: true });
    for await (const e of Deno.readDir(this.dir)) {
      if (e.isFile && !e.name.endsWith(".qmp") && e.name !== "migsocket") {
        await Deno.copyFile(`${this.dir}/${e.name}`, `${to}/${e.name}`).catch(() => {});
      }
    }
    await Deno.writeTextFile(`${to}/qmp-transcript.txt`, formatTranscript(this.transcript).join("\n") + "\n");
    if (finalStatus) {
      // 64-bit counters arrive as bigints: written as decimal strings, exact.
      const json = JSON.stringify(finalStatus, (_k, v) => typeof v === "bigint" ? v.toString() : v, 2);
      await Deno.writeTextFile(`${to}/final-status.json`, json + "\n");
    }
  }

  async removeDir(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** "status N[, SIGNAL]" and the last lines the side wrote to stderr (an assertion, an error), if any. */
export function exitWords(side: Pick<Side, "stderr">, exit: Deno.CommandStatus): string {
  const tail = side.stderr.trim().split("\n").filter((l) => l.trim()).slice(-2).join(" | ");
  return `status ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}${tail ? `: ${tail}` : ""}`;
}

/**
 * The pair's private directory (0700): `migtest-` and 12 random hex digits under `root` (the system's
 * temporary directory by default). The name has the same length every time, because paths inside it go
 * into QMP messages (a unix socket's URI) and in the simulated world a message's length is virtual time:
 * a name one character longer (Deno.makeTempDir's names vary) gave the same seed another trace.
 */
async function makePairDir(root?: string): Promise<string> {
  const base = root ?? Deno.env.get("TMPDIR") ?? "/tmp";
  for (let attempt = 0;; attempt++) {
    const hex = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0"));
    const dir = `${base}/migtest-${hex.join("")}`;
    try {
      await Deno.mkdir(dir, { mode: 0o700 });
      await Deno.chmod(dir, 0o700);
      return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists) || attempt >= 8) throw e;
    }
  }
}
