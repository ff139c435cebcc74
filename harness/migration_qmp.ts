/**
 * The QMP side of a migration (upstream's migration-qmp.c): migrate, migrate-incoming, the connect URI,
 * dirty-sync passes, the converge/non-converge parameters, and injecting a case's faults.
 */
import { wireFaultOf } from "./wire_proxy.ts";
import type { MigrationParameters } from "../engine/options.ts";
import type { FaultSpec, Outcome } from "./case.ts";
import { FlowError, type MigrationPair } from "./framework.ts";
import { QmpCommandError } from "../engine/qmp/client.ts";
import type { Side } from "./world/world.ts";

/** The outcome in the words of the world that runs the pair: QEMU's own error where the case gives one. */
export function worldOutcome(p: MigrationPair, outcome: Outcome): Outcome {
  // QEMU's words where QEMU loads.
  const q = p.ctx.world.qemuSides;
  if (!outcome.qemuError || !(q?.src || q?.dst)) return outcome;
  if (q.dst || !outcome.error) return { ...outcome, error: outcome.qemuError };
  // The model loading QEMU's stream says its own words, with QEMU's stream's values (its offsets, its
  // RAM's lengths) where the case's pin the model's stream's — and those are, often, QEMU's words too.
  return { ...outcome, error: new RegExp(`(?:${outcome.error.source})|(?:${outcome.qemuError.source})`) };
}

/** migrate_ensure_non_converge / migrate_ensure_converge. */
export const NON_CONVERGE: Partial<MigrationParameters> = { "max-bandwidth": 3_000_000, "downtime-limit": 1 };
export const CONVERGE: Partial<MigrationParameters> = {
  "max-bandwidth": 1_000_000_000,
  "downtime-limit": 30_000,
};

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

export function expectError(outcome: Outcome, text: string, where: string): void {
  if (outcome.error && !outcome.error.test(text)) {
    throw new FlowError(`${where} error does not match ${outcome.error}: ${text}`);
  }
}

/**
 * migrate_qmp: `migrate` on the source. With a `qmp-error` outcome the command must fail (with the
 * expected error) and false is returned; otherwise it must succeed and true is returned.
 */
/** cpr-transfer's second channel: the unix socket the target loads the CPR state from. */
function cprChannel(path: string): Record<string, unknown> {
  return { "channel-type": "cpr", addr: { transport: "socket", type: "unix", path } };
}

export async function migrate(
  p: MigrationPair,
  uri: string,
  opts: { outcome?: Outcome; channels?: boolean; address?: "both" | "none"; cprChannel?: string } = {},
): Promise<boolean> {
  const qmpError = opts.outcome?.expect === "qmp-error";
  // Upstream's validate_uri cases: both forms of the address, or neither (QMP must refuse either).
  const args = opts.address === "both"
    ? { uri, channels: uriToChannels(uri) }
    : opts.address === "none"
    ? {}
    : opts.channels
    ? { channels: [...uriToChannels(uri), ...(opts.cprChannel ? [cprChannel(opts.cprChannel)] : [])] }
    : { uri };
  try {
    await p.src.qmp.execute("migrate", args);
  } catch (e) {
    if (qmpError && e instanceof QmpCommandError) {
      expectError(worldOutcome(p, opts.outcome!), e.desc, "migrate");
      return false;
    }
    throw e;
  }
  if (qmpError) throw new FlowError(`migrate to ${uri} succeeded but a QMP error was expected`);
  return true;
}

/**
 * migrate_incoming_qmp: `migrate-incoming` on the destination, then its MIGRATION setup event. With
 * `exitOnError` false the destination must stay up after a failed load; a world without exit-on-error
 * (QEMU < 9.1) exits instead, and the flow's expectations follow that.
 */
export async function migrateIncoming(p: MigrationPair, uri: string, exitOnError?: boolean): Promise<void> {
  const since = p.dst.qmp.events.length;
  const args: Record<string, unknown> = { uri };
  if (exitOnError === false) {
    if (p.dst.staysUpAfterFailedLoad) args["exit-on-error"] = false;
    else p.dstExitsOnError = true;
  }
  await p.dst.qmp.execute("migrate-incoming", args);
  await p.waitEvent(p.dst, "MIGRATION", "setup", since);
}

/** Where the source connects: the destination's real TCP port for port 0, as migrate_get_connect_uri. */
export async function connectUri(p: MigrationPair): Promise<string> {
  const uri = p.incomingUri();
  if (!uri.startsWith("tcp:")) return p.viaWire(uri);
  const s = await p.status(p.dst);
  const addrs = s["socket-address"] as { type: string; host: string; port: string }[] | undefined;
  const inet = addrs?.find((a) => a.type === "inet");
  if (!inet) throw new FlowError(`target reports no inet socket-address: ${JSON.stringify(s)}`);
  return p.viaWire(`tcp:${inet.host}:${inet.port}`);
}

/**
 * How long a wait for dirty-sync passes may take: twice the pair's wait, or the case's own limit when it
 * sets a longer one (a pass at upstream's 3 MB/s takes about 30 s; runCase bounds the whole case anyway).
 */
export function passesTimeoutMs(waitMs: number, caseTimeoutMs?: number): number {
  return Math.max(waitMs * 2, caseTimeoutMs ?? 0);
}

/** Waits until the source's dirty-sync-count reaches `passes`. */
export async function waitPasses(p: MigrationPair, passes: number): Promise<void> {
  await p.wait(`dirty-sync-count ≥ ${passes} on the source`, async (see) => {
    const s = await p.status(p.src);
    if (s.status === "failed") throw new FlowError(`source failed: ${s["error-desc"]}`);
    const count = (s.ram as Record<string, number> | undefined)?.["dirty-sync-count"] ?? 0;
    see(`dirty-sync-count ${count}, status '${s.status}'`);
    if (count >= passes) return true;
    // An ended migration syncs no more: waiting on would only run into the timeout.
    if (s.status === "completed" || s.status === "cancelled") {
      throw new FlowError(
        `the source reached '${s.status}' after ${count} sync(s), before the ${passes} awaited`,
      );
    }
    return false;
  }, passesTimeoutMs(p.ctx.waitMs, p.c.timeoutMs));
}

/** x-test-inject-fault on one side. */
export async function injectFault(p: MigrationPair, side: Side, f: FaultSpec): Promise<void> {
  // A world without the model's fault hooks (real QEMU) breaks the source's stream on the wire instead.
  // Where a fault has a wire form it takes it in such a world, whoever's stream it is (the model's source
  // beside QEMU too: its byte offsets are its own machine's, the named places are found in any stream).
  const wire = p.ctx.world.wireFaults ? wireFaultOf(f, side === p.src ? "src" : "dst", p.ctx.seed) : null;
  if (wire) {
    p.ctx.log(`fault ${JSON.stringify(wire)} on the wire (the ${side.name}'s ${f.kind})`);
    return p.breakWire(wire);
  }
  const args: Record<string, unknown> = { kind: f.kind };
  if (f.offset !== undefined) {
    args.offset = typeof f.offset === "function" ? f.offset(p.ctx.seed) : f.offset;
  }
  // Beside another kind, xor is for the fault's wire form (at its named place), not the model's.
  if (f.xor !== undefined && f.kind === "corrupt") args.xor = f.xor;
  if (f.channel !== undefined) args.channel = f.channel;
  if (f.delayMs !== undefined) args["delay-ms"] = f.delayMs;
  p.ctx.log(`injecting fault ${JSON.stringify(args)} on the ${side.name}`);
  await side.qmp.execute("x-test-inject-fault", args);
}
