/**
 * The shared flows (upstream's framework.c): start a source/destination pair in a private directory,
 * drive a migration the way a case record says, and check the result. Every wait has a timeout whose
 * error says what was awaited and what both sides were doing.
 */
import assert from "node:assert/strict";
import type { WorkloadSpec } from "../engine/guest/workload.ts";
import { AB_END, AB_START } from "../engine/guest/workload.ts";
import type { FaultSpec, MigrationCase } from "./case.ts";
import { checkGuestsRam } from "./check/guests_ram.ts";
import { compareDeviceState } from "./check/device_equal.ts";
import { compareRam } from "./check/ram_equal.ts";
import { EngineProcess } from "./engine_process.ts";
import { QemuProcess } from "./qemu_process.ts";
import { type Backend, engineRam, QEMU_RAM_MIB, qemuRam } from "./backend.ts";
import type { RamSource } from "./check/ram_equal.ts";
import { QmpCommandError, type QmpTranscriptEntry } from "./qmp_client.ts";
import { sleep, WaitAbort, waitFor } from "./wait.ts";
import { coloFlow } from "./colo_flow.ts";

/** Upstream's dirty-memory marker: 3 MiB + 1 KiB into the test range, never touched by the guest. */
const MARKER_OFFSET = AB_START + (3 << 20) + 1024;
const MARKER = 0xfeed12345678cafen;
/** migrate_ensure_non_converge / migrate_ensure_converge. */
const NON_CONVERGE = { "max-bandwidth": 3_000_000, "downtime-limit": 1 };
export const CONVERGE = { "max-bandwidth": 1_000_000_000, "downtime-limit": 30_000 };

export interface CaseContext {
  seed: number;
  /** Which processes the pair runs (default: the model engine). */
  backend?: Backend;
  /** Where the pair's private directory is made (default: the system temp dir). */
  tmpRoot?: string;
  /** Default timeout of each wait. */
  waitMs: number;
  log(msg: string): void;
}

/** Migration statistics of a finished case, printed per case by the matrix. */
export interface CaseStats {
  totalTimeMs?: number;
  downtimeMs?: number;
  transferredBytes?: number;
  dirtySyncCount?: number;
}

/** An engine process or a QEMU process: the same surface (QMP, serial file, stderr, exit). */
export type Side = EngineProcess | QemuProcess;

export class MigrationPair {
  readonly transcript: QmpTranscriptEntry[] = [];
  src!: Side;
  dst!: Side;
  /** Set when a flow expects the destination to have exited. */
  dstExited = false;
  /** Set when a flow killed the source on purpose (SIGKILL). */
  srcKilled = false;
  /** The destination cannot stay up after a failed load (QEMU < 9.1): it must exit with status 1. */
  dstExitsOnError = false;
  readonly stats: CaseStats = {};
  #closed = false;

  private constructor(readonly c: MigrationCase, readonly ctx: CaseContext, readonly dir: string) {}

  get migsocket(): string {
    return `${this.dir}/migsocket`;
  }

  get migfile(): string {
    return `${this.dir}/migfile`;
  }

  workloadArg(): string {
    const w: WorkloadSpec = this.c.workload ?? { kind: "a-b" };
    return JSON.stringify("seed" in w ? { ...w, seed: w.seed ?? this.ctx.seed } : w);
  }

  /** What the destination listens on (or "defer"). */
  listenUri(): string {
    if (this.c.defer) return "defer";
    return this.incomingUri();
  }

  incomingUri(): string {
    switch (this.c.transport ?? "unix") {
      case "unix":
        return `unix:${this.migsocket}`;
      case "tcp":
        return "tcp:127.0.0.1:0";
      case "file":
        return this.fileUri();
    }
  }

  fileUri(): string {
    return this.c.fileOffset !== undefined
      ? `file:${this.migfile},offset=${this.c.fileOffset}`
      : `file:${this.migfile}`;
  }

  static async start(c: MigrationCase, ctx: CaseContext): Promise<MigrationPair> {
    const dir = await Deno.makeTempDir({ prefix: "migtest-", dir: ctx.tmpRoot });
    await Deno.chmod(dir, 0o700);
    const pair = new MigrationPair(c, ctx, dir);
    try {
      pair.src = await pair.#spawn("source", {});
      pair.dst = await pair.spawnTarget();
      await pair.#setCaps(pair.src, [...(c.caps ?? []), ...(c.srcCaps ?? [])]);
      if (c.srcParams) await pair.setParams(pair.src, c.srcParams);
      for (const name of c.defects?.src ?? []) {
        await pair.src.qmp.execute("x-test-defect", { name, enabled: true });
      }
    } catch (e) {
      // Nothing may stay behind, not even the directory (the error carries the startup stderr).
      await pair.close();
      await pair.removeDir();
      throw e;
    }
    return pair;
  }

  #spawn(name: string, opts: { incoming?: string; startPaused?: boolean }): Promise<Side> {
    const uuid = name === "source" ? this.c.uuid?.src : this.c.uuid?.dst;
    if (this.ctx.backend === "qemu") {
      // TCG by default: this machine's KVM is nested and slower than TCG for the a-b guest.
      // MIGTEST_QEMU_ACCEL=kvm,tcg gives upstream's order where KVM is real.
      const accel = (Deno.env.get("MIGTEST_QEMU_ACCEL") ?? "tcg").split(",").filter(Boolean);
      return QemuProcess.spawn({
        name,
        dir: this.dir,
        incoming: opts.incoming,
        startPaused: opts.startPaused,
        uuid,
        transcript: this.transcript,
        timeoutMs: this.ctx.waitMs,
        memoryMiB: QEMU_RAM_MIB,
        accel,
      });
    }
    return EngineProcess.spawn({
      name,
      dir: this.dir,
      machine: this.c.machine ?? "pc",
      workload: this.workloadArg(),
      incoming: opts.incoming,
      startPaused: opts.startPaused,
      uuid,
      memPrealloc: this.c.memPrealloc,
      vcpu: name === "target" ? this.c.dstVcpu ?? this.c.vcpu : this.c.vcpu,
      socketPaths: [this.migsocket],
      transcript: this.transcript,
      timeoutMs: this.ctx.waitMs,
    });
  }

  /** Starts (or restarts, after a cancelled migration) the destination, paused (-S) so RAM can be compared. */
  async spawnTarget(): Promise<Side> {
    const incoming = (this.c.transport ?? "unix") === "file" ? "defer" : this.listenUri();
    const dst = await this.#spawn("target", { incoming, startPaused: true });
    this.dst = dst;
    this.dstExited = false;
    await this.#setCaps(dst, [...(this.c.caps ?? []), ...(this.c.dstCaps ?? [])]);
    if (this.c.dstParams) await this.setParams(dst, this.c.dstParams);
    for (const f of this.c.dstFaults ?? []) await this.#inject(dst, f);
    for (const name of this.c.defects?.dst ?? []) {
      await dst.qmp.execute("x-test-defect", { name, enabled: true });
    }
    return dst;
  }

  async #setCaps(side: Side, caps: string[]): Promise<void> {
    const list = [...new Set(["events", ...caps])].map((capability) => ({ capability, state: true }));
    await side.qmp.execute("migrate-set-capabilities", { capabilities: list });
  }

  /** migrate_set_parameter_*: set, then read back and check, as upstream does. */
  async setParams(side: Side, params: Record<string, unknown>): Promise<void> {
    await side.qmp.execute("migrate-set-parameters", params);
    const now = await side.qmp.execute<Record<string, unknown>>("query-migrate-parameters");
    for (const [k, v] of Object.entries(params)) {
      assert.equal(now[k], v, `${side.name}: parameter ${k} reads back ${now[k]}, set ${v}`);
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

  wait<T>(
    what: string,
    probe: () => Promise<T | undefined | false>,
    timeoutMs = this.ctx.waitMs,
  ): Promise<T> {
    return waitFor(what, probe, { timeoutMs, intervalMs: 5, diagnose: () => this.diagnose() });
  }

  async status(side: Side): Promise<Record<string, unknown>> {
    const exit = side.exitStatus;
    if (exit && !(side === this.dst && this.dstExited) && !(side === this.src && this.srcKilled)) {
      // A dead engine answers nothing more: say so now rather than time out.
      const tail = side.stderr.trim().split("\n").slice(-2).join(" | ");
      throw new FlowError(
        `${side.name} died (exit status ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}): ${tail}`,
      );
    }
    return await side.qmp.execute<Record<string, unknown>>("query-migrate");
  }

  /**
   * wait_for_migration_status: polls until `goal`; any status in `ungoals` (by default `failed`, and
   * `completed` unless it is the goal) fails at once with the error-desc.
   */
  async waitStatus(side: Side, goal: string, ungoals?: string[]): Promise<Record<string, unknown>> {
    const bad = ungoals ?? (goal === "completed" ? ["failed"] : ["failed", "completed"]);
    return await this.wait(`${side.name} migration status '${goal}'`, async () => {
      const s = await this.status(side);
      if (s.status === goal) return s;
      if (bad.includes(s.status as string)) {
        throw new FlowError(
          `${side.name} reached status '${s.status}' while waiting for '${goal}'` +
            (s["error-desc"] ? `: ${s["error-desc"]}` : ""),
        );
      }
      return undefined;
    });
  }

  async waitEvent(side: Side, event: string, status?: string, since = 0): Promise<void> {
    await side.qmp.waitEvent(event, status ? (e) => e.data?.status === status : undefined, {
      timeoutMs: this.ctx.waitMs,
      since,
    }).catch(async (e) => {
      throw new FlowError(`${(e as Error).message}\n${await this.diagnose()}`);
    });
  }

  /** wait_for_serial: the first `B` in the side's serial file; anything but A/B is an error. */
  async waitSerialB(side: Side): Promise<void> {
    await this.wait(`'B' on ${side.name}'s serial`, async () => {
      const text = await Deno.readTextFile(side.serialPath).catch(() => "");
      for (const ch of text) {
        if (ch === "B") return true;
        if (ch !== "A") throw new FlowError(`unexpected byte '${ch}' on ${side.name}'s serial`);
      }
      return undefined;
    });
  }

  /** Where the source connects: the destination's real TCP port for port 0, as migrate_get_connect_uri. */
  async connectUri(): Promise<string> {
    const t = this.c.transport ?? "unix";
    if (t === "file") return this.fileUri();
    if (t === "unix") return `unix:${this.migsocket}`;
    const s = await this.status(this.dst);
    const addrs = s["socket-address"] as { type: string; host: string; port: string }[] | undefined;
    const inet = addrs?.find((a) => a.type === "inet");
    if (!inet) throw new FlowError(`target reports no inet socket-address: ${JSON.stringify(s)}`);
    return `tcp:${inet.host}:${inet.port}`;
  }

  async migrateIncoming(uri = this.incomingUri()): Promise<void> {
    const since = this.dst.qmp.events.length;
    const args: Record<string, unknown> = { uri };
    if (this.c.exitOnError === false) {
      // QEMU before 9.1 has no exit-on-error: its destination always exits after a failed load.
      if (this.dst instanceof QemuProcess) this.dstExitsOnError = true;
      else args["exit-on-error"] = false;
    }
    await this.dst.qmp.execute("migrate-incoming", args);
    await this.waitEvent(this.dst, "MIGRATION", "setup", since);
  }

  async injectFault(): Promise<void> {
    if (this.c.fault) await this.#inject(this.src, this.c.fault);
  }

  async #inject(side: Side, f: FaultSpec): Promise<void> {
    const args: Record<string, unknown> = { kind: f.kind };
    if (f.offset !== undefined) {
      args.offset = typeof f.offset === "function" ? f.offset(this.ctx.seed) : f.offset;
    }
    if (f.xor !== undefined) args.xor = f.xor;
    if (f.channel !== undefined) args.channel = f.channel;
    if (f.delayMs !== undefined) args["delay-ms"] = f.delayMs;
    this.ctx.log(`injecting fault ${JSON.stringify(args)} on the ${side.name}`);
    await side.qmp.execute("x-test-inject-fault", args);
  }

  /** Reads guest RAM (pc.ram offsets = guest-physical addresses below 4 GiB): qtest on QEMU. */
  async readRam(side: Side, offset: number, size: number): Promise<Uint8Array> {
    if (side instanceof QemuProcess) return await side.qtest.read(offset, size);
    const r = await side.qmp.execute<{ data: string }>("x-test-ram-read", { block: "pc.ram", offset, size });
    return Uint8Array.fromBase64(r.data);
  }

  async writeMarker(): Promise<void> {
    if (this.src instanceof QemuProcess) return await this.src.qtest.writeq(MARKER_OFFSET, MARKER);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, MARKER, true);
    await this.src.qmp.execute("x-test-ram-write", {
      block: "pc.ram",
      offset: MARKER_OFFSET,
      data: b.toBase64(),
    });
  }

  /** The first byte of every page in [start, end): what check_guests_ram reads. */
  async firstBytes(side: Side, start: number, end: number): Promise<Uint8Array> {
    if (side instanceof QemuProcess) {
      const addrs: number[] = [];
      for (let a = start; a < end; a += 4096) addrs.push(a);
      return await side.qtest.readbMany(addrs, { timeoutMs: 60_000 });
    }
    const r = await side.qmp.execute<{ data: string }>("x-test-page-bytes", { block: "pc.ram", start, end });
    return Uint8Array.fromBase64(r.data);
  }

  ram(side: Side): RamSource {
    return side instanceof QemuProcess ? qemuRam(side, this.dir) : engineRam(side);
  }

  /** Device state field by field, where the backend offers it (the model; QEMU has no such command). */
  async deviceState(side: Side): Promise<unknown | null> {
    if (side instanceof QemuProcess) return null;
    return (await side.qmp.execute<{ devices: unknown }>("x-test-device-state")).devices;
  }

  /** migrate_wait_for_dirty_mem: the marker reached the destination, and a sent page got dirty again. */
  async waitForDirtyMem(): Promise<void> {
    await this.wait("the dirty-memory marker on the target", async () => {
      const b = await this.readRam(this.dst, MARKER_OFFSET, 8);
      return new DataView(b.buffer).getBigUint64(0, true) === MARKER;
    }, this.ctx.waitMs * 2);
    const watched = MARKER_OFFSET - 1024;
    const first = (await this.readRam(this.src, watched, 1))[0];
    await this.wait("the source to dirty an already-sent page", async () => {
      return (await this.readRam(this.src, watched, 1))[0] !== first;
    });
  }

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

  /** Kills both engines (SIGTERM; a crash shows as a non-zero status) and removes the directory. */
  async close(): Promise<{ src?: Deno.CommandStatus; dst?: Deno.CommandStatus }> {
    if (this.#closed) return {};
    this.#closed = true;
    const [src, dst] = await Promise.all([this.src?.kill(), this.dst?.kill()]);
    return { src, dst };
  }

  /** Copies logs, serial output and the QMP transcript into `to` (a failed case's artifacts). */
  async saveArtifacts(to: string): Promise<void> {
    await Deno.mkdir(to, { recursive: true });
    for await (const e of Deno.readDir(this.dir)) {
      if (e.isFile && !e.name.endsWith(".qmp") && e.name !== "migsocket") {
        await Deno.copyFile(`${this.dir}/${e.name}`, `${to}/${e.name}`).catch(() => {});
      }
    }
    const lines = this.transcript.map((t) =>
      `${new Date(t.time).toISOString()} ${t.side} ${
        t.dir === "send" ? "->" : t.dir === "recv" ? "<-" : "::"
      } ${t.text}`
    );
    await Deno.writeTextFile(`${to}/qmp-transcript.txt`, lines.join("\n") + "\n");
  }

  async removeDir(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A flow-level failure (the case's expectation was not met); inside a wait's probe it ends the wait. */
export class FlowError extends WaitAbort {
  constructor(message: string) {
    super(message);
    this.name = "FlowError";
  }
}

function expectError(c: MigrationCase, text: string, where: string): void {
  if (c.error && !c.error.test(text)) {
    throw new FlowError(`${where} error does not match ${c.error}: ${text}`);
  }
}

/** The destination failed its load: status failed, or (QEMU < 9.1, no exit-on-error) exit status 1. */
async function expectTargetFailed(p: MigrationPair): Promise<void> {
  if (!p.dstExitsOnError) {
    await p.waitStatus(p.dst, "failed", ["completed"]);
    return;
  }
  const st = await p.dst.waitExit(p.ctx.waitMs);
  p.dstExited = true;
  if (st.code !== 1) throw new FlowError(`target exited with status ${st.code}, expected 1 (EXIT_FAILURE)`);
}

/** The source must have failed and kept its guest running (wait_for_migration_fail). */
async function expectSourceFailedAndAlive(p: MigrationPair, wasRunning: boolean): Promise<void> {
  await p.waitStatus(p.src, "failed", ["completed", "cancelled"]);
  const st = await p.src.qmp.execute<{ running: boolean; status: string }>("query-status");
  if (wasRunning && !st.running) {
    throw new FlowError(`source guest is not running after the failed migration (runstate ${st.status})`);
  }
}

/**
 * After a successful migration: the paused destination equals the stopped source page by page and device
 * by device; then it runs (serial B, the pattern advances) and, for a-b, passes check_guests_ram.
 */
export async function checkMigratedGuest(p: MigrationPair): Promise<void> {
  const ram = await compareRam(p.ram(p.src), p.ram(p.dst));
  if (ram.mismatches > 0) {
    throw new FlowError(
      `guest RAM differs in ${ram.mismatches} page(s) between source and target:\n  ${
        ram.lines.join("\n  ")
      }`,
    );
  }
  const [ds, dd] = await Promise.all([p.deviceState(p.src), p.deviceState(p.dst)]);
  const diff = ds === null ? [] : compareDeviceState(ds, dd, ["source", "target"]);
  if (diff.length) throw new FlowError(`device state differs:\n  ${diff.join("\n  ")}`);

  const since = p.dst.qmp.events.length;
  await p.dst.qmp.execute("cont");
  await p.waitEvent(p.dst, "RESUME", undefined, since);
  const kind = p.c.workload?.kind ?? "a-b";
  if (kind !== "a-b") return;
  await p.waitSerialB(p.dst);
  // migrate_end: the destination is running (its first test byte changes), then stop it and check.
  const first = (await p.readRam(p.dst, AB_START, 1))[0];
  await p.wait(
    "the target's a-b pattern to advance",
    async () => (await p.readRam(p.dst, AB_START, 1))[0] !== first,
  );
  await p.dst.qmp.execute("stop");
  const a = (await p.readRam(p.dst, AB_START, 1))[0];
  await sleep(50);
  const b = (await p.readRam(p.dst, AB_START, 1))[0];
  if (a !== b) throw new FlowError(`target guest still runs after 'stop' (byte went ${a} -> ${b})`);
  const report = checkGuestsRam(await p.firstBytes(p.dst, AB_START, AB_END), AB_START);
  if (report.bad) {
    throw new FlowError(`check_guests_ram found ${report.bad} bad page(s):\n  ${report.lines.join("\n  ")}`);
  }
}

/** The end of a migration, by expected outcome. */
async function finishByExpectation(p: MigrationPair, srcWasRunning: boolean): Promise<void> {
  const c = p.c;
  switch (c.expect ?? "succeed") {
    case "succeed": {
      if ((c.caps ?? []).includes("pause-before-switchover")) {
        await p.waitStatus(p.src, "pre-switchover");
        await p.src.qmp.execute("migrate-continue", { state: "pre-switchover" });
      }
      await p.waitStatus(p.src, "completed");
      await p.waitStatus(p.dst, "completed");
      await p.recordStats();
      if (c.expectXbzrlePages) {
        const x = (await p.status(p.src))["xbzrle-cache"] as Record<string, number> | undefined;
        if (!x || !(x.pages > 0)) throw new FlowError(`no page was sent as XBZRLE: ${JSON.stringify(x)}`);
        p.ctx.log(`xbzrle: ${JSON.stringify(x)}`);
      }
      await checkMigratedGuest(p);
      return;
    }
    case "fail": {
      if (p.dstExitsOnError) {
        // QEMU < 9.1 has no exit-on-error: its stderr carries the error; after a failed load it exits with
        // status 1, while a multifd channel error leaves it waiting for channels (upstream's MIG_TEST_FAIL).
        // The error shows on stderr, or (multifd channel errors in 7.2) only in the target's query-migrate.
        await p.wait("the target to report the error (stderr or query-migrate)", async () => {
          if (!c.error || c.error.test(p.dst.stderr)) return true;
          if (p.dst.exitStatus) return false;
          const s = await p.dst.qmp.execute<Record<string, unknown>>("query-migrate").catch(() => ({}));
          return c.error.test(String((s as Record<string, unknown>)["error-desc"] ?? ""));
        });
        await expectSourceFailedAndAlive(p, srcWasRunning);
        const st = p.dst.exitStatus;
        if (st) {
          p.dstExited = true;
          if (st.code !== 1) {
            throw new FlowError(`target exited with status ${st.code}, expected 1 (EXIT_FAILURE)`);
          }
        } else await p.dst.qmp.execute("query-status");
        return;
      }
      const s = await p.waitStatus(p.dst, "failed", ["completed"]);
      expectError(c, String(s["error-desc"] ?? ""), "target");
      await expectSourceFailedAndAlive(p, srcWasRunning);
      // The destination stays usable: it still answers QMP.
      await p.dst.qmp.execute("query-status");
      return;
    }
    case "fail-dest-exits": {
      const st = await p.dst.waitExit(p.ctx.waitMs);
      p.dstExited = true;
      if (st.code !== 1) {
        throw new FlowError(`target exited with status ${st.code}, expected 1 (EXIT_FAILURE)`);
      }
      expectError(c, p.dst.stderr, "target stderr");
      await expectSourceFailedAndAlive(p, srcWasRunning);
      return;
    }
    case "qmp-error":
      throw new FlowError("qmp-error cases end at the migrate command");
  }
}

/** The `channels` form of a URI (a single main channel), as upstream's channels tests pass it. */
function uriToChannels(uri: string): unknown[] {
  const tcp = /^tcp:(.*):(\d+)$/.exec(uri);
  const addr = tcp
    ? { transport: "socket", type: "inet", host: tcp[1], port: tcp[2] }
    : uri.startsWith("unix:")
    ? { transport: "socket", type: "unix", path: uri.slice(5) }
    : { transport: "file", filename: uri.slice(5) };
  return [{ "channel-type": "main", addr }];
}

export async function migrate(p: MigrationPair, uri: string): Promise<boolean> {
  try {
    await p.src.qmp.execute("migrate", p.c.migrateChannels ? { channels: uriToChannels(uri) } : { uri });
  } catch (e) {
    if (p.c.expect === "qmp-error" && e instanceof QmpCommandError) {
      expectError(p.c, e.desc, "migrate");
      return false;
    }
    throw e;
  }
  if (p.c.expect === "qmp-error") {
    throw new FlowError(`migrate to ${uri} succeeded but a QMP error was expected`);
  }
  return true;
}

/** test_precopy_common. */
export async function precopyFlow(p: MigrationPair): Promise<void> {
  const c = p.c;
  if (c.defer) await p.migrateIncoming();
  await p.injectFault();
  let srcRunning = true;
  const ab = (c.workload?.kind ?? "a-b") === "a-b";
  // The marker technique (a guaranteed second pass) needs the a-b guest, and a failing case needs no
  // second pass: those run at full speed.
  const marker = c.live && ab && (c.expect ?? "succeed") === "succeed";
  if (c.live) {
    await p.setParams(p.src, marker ? NON_CONVERGE : CONVERGE);
    if (ab) await p.waitSerialB(p.src);
    if (marker) await p.writeMarker();
  } else {
    if ((c.workload?.kind ?? "a-b") === "a-b") await p.waitSerialB(p.src);
    await p.src.qmp.execute("stop");
    await p.waitEvent(p.src, "STOP");
    srcRunning = false;
    if (c.fillRandom) await p.src.qmp.execute("x-test-ram-fill", { seed: p.ctx.seed }, { timeoutMs: 60_000 });
    await p.setParams(p.src, CONVERGE);
  }
  if (!await migrate(p, await p.connectUri())) return;
  if (marker) {
    if ((c.iterations ?? 1) > 1) await waitPasses(p, (c.iterations ?? 1) * 2);
    await p.waitForDirtyMem();
    await p.setParams(p.src, CONVERGE);
  }
  await finishByExpectation(p, srcRunning);
}

async function waitPasses(p: MigrationPair, passes: number): Promise<void> {
  await p.wait(`dirty-sync-count ≥ ${passes} on the source`, async () => {
    const s = await p.status(p.src);
    if (s.status === "failed") throw new FlowError(`source failed: ${s["error-desc"]}`);
    return ((s.ram as Record<string, number> | undefined)?.["dirty-sync-count"] ?? 0) >= passes;
  }, p.ctx.waitMs * 2);
}

/** A live migration that cannot converge keeps iterating; raising the bandwidth lets it complete. */
export async function convergeAfterRaiseFlow(p: MigrationPair): Promise<void> {
  if (p.c.defer) await p.migrateIncoming();
  // Fast enough for a pass to take well under a second, yet 1 ms of downtime never fits a dirty a-b guest;
  // a case's own srcParams win.
  await p.setParams(p.src, { "max-bandwidth": 200_000_000, "downtime-limit": 1, ...p.c.srcParams });
  if ((p.c.workload?.kind ?? "a-b") === "a-b") await p.waitSerialB(p.src);
  await migrate(p, await p.connectUri());
  const passes = p.c.iterations ?? 3;
  await waitPasses(p, passes);
  const s = await p.status(p.src);
  if (s.status !== "active") throw new FlowError(`expected 'active' after ${passes} passes, got ${s.status}`);
  if (p.c.expectDirtyPagesRate) {
    // The rate must be there after a sync and must still be there a second later, between syncs.
    // QEMU bumps dirty-sync-count at the start of a sync and the rate at its end (outside the BQL), so a
    // query can fall in between: look 200 ms after the sync, then again between syncs.
    for (const when of ["200 ms after a sync", "1.4 s after a sync"]) {
      await sleep(when.startsWith("200") ? 200 : 1200);
      const rate = ((await p.status(p.src)).ram as Record<string, number>)["dirty-pages-rate"];
      if (!(rate > 0)) {
        throw new FlowError(`dirty-pages-rate is ${rate} ${when}, with a guest that dirties memory`);
      }
    }
  }
  await p.setParams(p.src, CONVERGE);
  await finishByExpectation(p, true);
}

/** test_file_common: save to a file (optionally after stopping the source), then load it. */
export async function fileFlow(p: MigrationPair): Promise<void> {
  const c = p.c;
  const offset = typeof c.fileOffset === "number" ? c.fileOffset : 0;
  if (offset > 0) await Deno.writeFile(p.migfile, new Uint8Array(offset).fill(0x58));
  if ((c.workload?.kind ?? "a-b") === "a-b") await p.waitSerialB(p.src);
  if (c.stopSrc !== false) {
    await p.src.qmp.execute("stop");
    await p.waitEvent(p.src, "STOP");
  }
  await p.setParams(p.src, CONVERGE);
  if (!await migrate(p, p.fileUri())) return;
  await p.waitStatus(p.src, "completed");
  if (offset > 0) {
    const head = await Deno.open(p.migfile).then(async (f) => {
      const buf = new Uint8Array(offset + 8);
      let n = 0;
      while (n < buf.length) {
        const r = await f.read(buf.subarray(n));
        if (r === null) break;
        n += r;
      }
      f.close();
      return buf;
    });
    if (!head.subarray(0, offset).every((b) => b === 0x58)) {
      throw new FlowError(`bytes before offset ${offset} were changed`);
    }
    const magic = new DataView(head.buffer).getUint32(offset);
    if (magic !== 0x5145564d) {
      throw new FlowError(`no QEVM magic at offset ${offset} (found 0x${magic.toString(16)})`);
    }
  }
  await p.migrateIncoming(p.fileUri());
  await finishByExpectation(p, false);
}

/** test_cancel_src_after_status. */
export async function cancelFlow(p: MigrationPair): Promise<void> {
  const phase = p.c.cancelAfter ?? "none";
  await p.migrateIncoming(`unix:${p.migsocket}`);
  if (phase === "none") {
    // Cancel on both sides while idle is a no-op; a normal migration then completes.
    await p.dst.qmp.execute("migrate_cancel");
    await p.src.qmp.execute("migrate_cancel");
    await p.src.qmp.execute("stop");
    await p.setParams(p.src, CONVERGE);
    await migrate(p, await p.connectUri());
    await p.waitStatus(p.src, "completed");
    await p.waitStatus(p.dst, "completed");
    return;
  }
  if (phase === "failed") {
    // No destination listens at this address: the connect fails.
    await migrate(p, `unix:${p.dir}/nobody-listens`);
    await p.waitEvent(p.src, "MIGRATION", "failed");
    await p.src.qmp.execute("migrate_cancel");
    await p.waitStatus(p.src, "failed", ["completed", "cancelled"]);
    return;
  }
  if (phase === "completed") {
    await p.setParams(p.src, CONVERGE);
    await migrate(p, await p.connectUri());
    await p.waitEvent(p.src, "MIGRATION", "completed");
    await p.src.qmp.execute("migrate_cancel");
    const s = await p.status(p.src);
    const d = await p.waitStatus(p.dst, "completed");
    if (s.status !== "completed" || d.status !== "completed") {
      throw new FlowError(`after cancel: source ${s.status}, target ${d.status}; both must stay completed`);
    }
    return;
  }
  await p.setParams(p.src, NON_CONVERGE);
  await migrate(p, await p.connectUri());
  if (phase === "cancelling" || phase === "cancelled") {
    await p.waitEvent(p.src, "MIGRATION", "active");
    await p.src.qmp.execute("migrate_cancel");
    await p.waitEvent(p.src, "MIGRATION", phase);
    await p.src.qmp.execute("migrate_cancel");
  } else {
    if (phase === "pre-switchover") await p.setParams(p.src, CONVERGE);
    await p.waitEvent(p.src, "MIGRATION", phase);
    await p.src.qmp.execute("migrate_cancel");
    await p.waitEvent(p.src, "MIGRATION", "cancelling");
  }
  await p.waitStatus(p.src, "cancelled", ["failed", "completed"]);
  await expectTargetFailed(p);
  if (p.src.qmp.events.some((e) => e.event === "MIGRATION" && e.data?.status === "completed")) {
    throw new FlowError("the source emitted 'completed' for a cancelled migration");
  }
  const st = await p.src.qmp.execute<{ running: boolean }>("query-status");
  if (!st.running) throw new FlowError("the source guest does not run after cancel");
}

/** /migration/bad_dest: nothing listens where the source connects; it fails and keeps running. */
export async function badDestFlow(p: MigrationPair): Promise<void> {
  await p.waitSerialB(p.src);
  await migrate(p, "tcp:127.0.0.1:0");
  await expectSourceFailedAndAlive(p, true);
  const s = await p.status(p.src);
  if (!/Failed to connect/.test(String(s["error-desc"]))) {
    throw new FlowError(`source error-desc does not say the connect failed: ${s["error-desc"]}`);
  }
}

/**
 * test_multifd_tcp_cancel: cancel a live multifd migration, the old destination exits with
 * EXIT_FAILURE, then the same source migrates to a new destination and completes.
 */
export async function multifdCancelFlow(p: MigrationPair): Promise<void> {
  await p.migrateIncoming();
  await p.setParams(p.src, NON_CONVERGE);
  await p.waitSerialB(p.src);
  await p.writeMarker();
  await migrate(p, await p.connectUri());
  await p.waitForDirtyMem();
  await p.src.qmp.execute("migrate_cancel");
  const old = p.dst;
  const st = await old.waitExit(p.ctx.waitMs);
  if (st.code !== 1) throw new FlowError(`the cancelled target exited with status ${st.code}, expected 1`);
  await p.waitStatus(p.src, "cancelled", ["failed", "completed"]);
  await old.kill();
  await p.spawnTarget();
  await p.migrateIncoming();
  const since = p.src.qmp.events.length;
  await migrate(p, await p.connectUri());
  await p.setParams(p.src, CONVERGE);
  await p.waitEvent(p.src, "STOP", undefined, since);
  await finishByExpectation(p, true);
}

/**
 * /migration/analyze-script: the source (with a uuid and validate-uuid) saves to a file, then the stream
 * analyzer (`deno task analyze`, run as its own process as upstream runs analyze-migration.py) must
 * parse it: the uuid from the configuration section, and every device field equal to the source's state.
 */
export async function analyzeScriptFlow(p: MigrationPair): Promise<void> {
  await p.src.qmp.execute("stop");
  await p.setParams(p.src, CONVERGE);
  await migrate(p, `file:${p.migfile}`);
  await p.waitStatus(p.src, "completed");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-read=${p.dir}`,
      new URL("../tools/analyze/analyze.ts", import.meta.url).pathname,
      p.migfile,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new FlowError(`the analyzer exited with status ${out.code}: ${stderr}`);
  const result = JSON.parse(new TextDecoder().decode(out.stdout));
  const uuid = result.configuration?.uuid;
  if (p.c.uuid?.src && uuid !== p.c.uuid.src) {
    throw new FlowError(`the analyzer read uuid ${uuid}, the source has ${p.c.uuid.src}`);
  }
  const state =
    (await p.src.qmp.execute<{ devices: Record<string, Record<string, unknown>> }>("x-test-device-state"))
      .devices;
  const diffs: string[] = [];
  for (const [key, fields] of Object.entries(state)) {
    const [idstr, instance] = key.split("/");
    const parsed = result.devices?.[`${idstr} (${instance})`] as Record<string, unknown> | undefined;
    if (!parsed) {
      diffs.push(`device ${key} missing from the analyzer's output`);
      continue;
    }
    // Subsections come out as nested objects named after them; fold them into the device's fields.
    const flat: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parsed)) {
      if (k.includes("/") && typeof v === "object" && v !== null) Object.assign(flat, v);
      else flat[k] = v;
    }
    for (const [k, v] of Object.entries(fields)) {
      if (k in flat) {
        diffs.push(
          ...compareDeviceState(v, flat[k], ["source", "analyzer"]).map((d) =>
            `${key}.${k}${d.slice(d.indexOf(":"))}`
          ),
        );
      }
    }
  }
  if (diffs.length) {
    throw new FlowError(`analyzer output differs from the source's devices:\n  ${diffs.join("\n  ")}`);
  }
}

export const FLOWS = {
  colo: (p: MigrationPair) => coloFlow(p),
  "analyze-script": analyzeScriptFlow,
  "multifd-cancel": multifdCancelFlow,
  "bad-dest": badDestFlow,
  precopy: precopyFlow,
  file: fileFlow,
  cancel: cancelFlow,
  "converge-after-raise": convergeAfterRaiseFlow,
} as const;
