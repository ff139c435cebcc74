/**
 * The QMP commands of an engine (qapi/migration.json, qapi/run-state.json, misc) plus the `x-test-`
 * introspection and fault commands the harness uses.
 */
import { type BreakpointName, BREAKPOINTS } from "../testing/breakpoints.ts";
import { KNOWN_DEFECTS } from "../testing/defects.ts";
import type { Engine } from "../engine.ts";
import { STREAM_FAULT_KINDS, type StreamFaultKind } from "../migration.ts";
import { checkParameters, type MigrationParameters, parameterArgTypes } from "../options.ts";
import type { RamBlock } from "../ram_block.ts";
import { pageDigests } from "../testing/ram_digest.ts";
import { uuidToString } from "../uuid.ts";
import { type MigrationAddress, parseMigrationUri, UriError } from "../transport/uri.ts";
import { type QmpCommand, QmpError } from "./server.ts";

const MIGRATION_STATUSES = [
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover-setup",
  "postcopy-recover",
  "completed",
  "failed",
  "colo",
  "pre-switchover",
  "device",
  "wait-unplug",
];

/** Largest raw RAM read served in one reply. */
const MAX_RAM_READ = 16 << 20;

/** A migration is under way: outgoing at all, incoming once a stream is loading (in setup, QEMU still
 * lets the destination set capabilities, which upstream's `-incoming URI` tests rely on). */
function inProgress(e: Engine): boolean {
  return e.migration.isActive() || e.incoming.status === "active";
}

/** The `channels` argument: one main channel with a socket or file address. */
function channelsToAddress(channels: unknown): MigrationAddress {
  if (!Array.isArray(channels) || channels.length !== 1) {
    throw new QmpError("Channel list must have exactly one main channel");
  }
  const ch = channels[0] as Record<string, unknown>;
  if (ch["channel-type"] !== "main") throw new QmpError("Channel list has no main entry");
  const addr = (ch.addr ?? {}) as Record<string, unknown>;
  if (addr.transport === "socket" && addr.type === "inet") {
    return parseMigrationUri(`tcp:${addr.host}:${addr.port}`);
  }
  if (addr.transport === "socket" && addr.type === "unix") return parseMigrationUri(`unix:${addr.path}`);
  if (addr.transport === "file") {
    return parseMigrationUri(
      `file:${addr.filename}${addr.offset !== undefined ? `,offset=${addr.offset}` : ""}`,
    );
  }
  throw new QmpError(`Unsupported channel address transport '${String(addr.transport)}'`);
}

function address(args: Record<string, unknown>, command: string): MigrationAddress {
  const hasUri = args.uri !== undefined;
  const hasChannels = args.channels !== undefined;
  if (hasUri && hasChannels) {
    throw new QmpError(
      `'uri' and 'channels' arguments are mutually exclusive; exactly one of the two should be present in '${command}' qmp command `,
    );
  }
  if (!hasUri && !hasChannels) throw new QmpError(`need either 'uri' or 'channels' argument`);
  try {
    return hasUri ? parseMigrationUri(args.uri as string) : channelsToAddress(args.channels);
  } catch (e) {
    if (e instanceof UriError) throw new QmpError(e.message);
    throw e;
  }
}

/** The COLO role of this engine, while COLO is running. */
function coloSide(e: Engine) {
  const side = e.migration.colo ?? e.incoming.colo;
  if (!side || side.failover.status === "completed") return null;
  return side;
}

function block(e: Engine, idstr: unknown) {
  const b = e.machine.block(String(idstr ?? "pc.ram"));
  if (!b) throw new QmpError(`RAM block '${String(idstr)}' not found`);
  return b;
}

/** Per-page digests of one block (or all), read through `memory` (guest RAM or the COLO cache). */
function digestReply(e: Engine, idstr: unknown, memory: (b: RamBlock) => Uint8Array) {
  const blocks = idstr === undefined ? e.machine.blocks : [block(e, idstr)];
  return {
    "page-size": e.machine.blocks[0].pageSize,
    blocks: blocks.map((b) => ({
      idstr: b.idstr,
      pages: b.pages,
      digests: pageDigests(memory(b), b.pageSize).toBase64(),
    })),
  };
}

export function engineCommands(e: Engine): QmpCommand[] {
  const m = e.machine;
  return [
    {
      name: "query-status",
      handler: () => ({ running: m.running, singlestep: false, status: m.runstate }),
    },
    { name: "query-name", handler: () => ({ name: e.config.name }) },
    {
      name: "query-uuid",
      handler: () => ({ UUID: e.uuid ? uuidToString(e.uuid) : uuidToString(new Uint8Array(16)) }),
    },
    {
      name: "stop",
      handler: async () => {
        if (m.runstate === "inmigrate") {
          e.autostart = false;
          return;
        }
        await m.stop("paused");
      },
    },
    {
      name: "cont",
      handler: () => {
        if (m.runstate === "inmigrate") {
          // Like QEMU: the guest will start when the incoming migration completes.
          e.autostart = true;
          return;
        }
        if (m.runstate === "finish-migrate" || e.migration.status === "device") {
          throw new QmpError("Migration is not finished yet");
        }
        if (m.runstate === "colo") {
          throw new QmpError("COLO checkpoint in progress, the VM cannot be resumed");
        }
        m.start();
      },
    },
    {
      name: "quit",
      handler: () => {
        setTimeout(() => e.hooks.exit(0), 10);
      },
    },
    {
      name: "migrate",
      args: {
        uri: { type: "str", optional: true },
        channels: { type: "array", optional: true },
        detach: { type: "bool", optional: true },
        resume: { type: "bool", optional: true },
      },
      handler: (args) => {
        if (args.resume) throw new QmpError("Cannot resume if there is no paused migration");
        if (m.runstate === "inmigrate") throw new QmpError("Guest is waiting for an incoming migration");
        if (inProgress(e)) throw new QmpError("There's a migration process in progress");
        e.startOutgoing(address(args, "migrate"));
      },
    },
    {
      name: "migrate-incoming",
      args: {
        uri: { type: "str", optional: true },
        channels: { type: "array", optional: true },
        "exit-on-error": { type: "bool", optional: true },
      },
      handler: (args) => {
        if (!e.deferredIncoming) throw new QmpError("'-incoming' was not specified on the command line");
        if (e.incoming.started) throw new QmpError("The incoming migration has already been started");
        const addr = address(args, "migrate-incoming");
        e.incoming.exitOnError = args["exit-on-error"] !== false;
        try {
          e.incoming.start(addr);
        } catch (err) {
          throw new QmpError(`Failed to listen on ${String(args.uri)}: ${(err as Error).message}`);
        }
      },
    },
    {
      name: "migrate-set-capabilities",
      args: { capabilities: { type: "array" } },
      handler: (args) => {
        if (inProgress(e)) throw new QmpError("There's a migration process in progress");
        const list = args.capabilities as { capability: string; state: boolean }[];
        for (const c of list) {
          if (typeof c?.capability !== "string" || typeof c?.state !== "boolean") {
            throw new QmpError(
              "Invalid parameter type for 'capabilities', expected: MigrationCapabilityStatus",
            );
          }
        }
        const err = e.options.setCapabilities(list);
        if (err) throw new QmpError(err);
      },
    },
    { name: "query-migrate-capabilities", handler: () => e.options.queryCapabilities() },
    {
      name: "migrate-set-parameters",
      args: Object.fromEntries(
        Object.entries(parameterArgTypes()).map(([k, t]) => [k, { type: t, optional: true }]),
      ),
      handler: (args) => {
        const err = checkParameters(args);
        if (err) throw new QmpError(err);
        // colo_checkpoint_delay_set: a new delay in COLO state triggers a checkpoint at once.
        if ("x-checkpoint-delay" in args) queueMicrotask(() => e.migration.colo?.requestCheckpoint());
        if (inProgress(e)) {
          for (const k of ["multifd-channels", "multifd-compression"]) {
            if (k in args) {
              throw new QmpError(`Parameter '${k}' cannot be changed while migration is running`);
            }
          }
        }
        Object.assign(e.options.params, args as Partial<MigrationParameters>);
      },
    },
    {
      name: "query-migrate-parameters",
      handler: () => ({ ...e.options.params, "tls-creds": "", "tls-hostname": "", "tls-authz": "" }),
    },
    {
      name: "query-migrate",
      handler: () => (e.incoming.started ? e.incoming.query() : e.migration.query()),
    },
    { name: "migrate_cancel", handler: () => e.migration.cancel() },
    {
      name: "migrate-continue",
      args: { state: { type: { enum: MIGRATION_STATUSES } } },
      handler: (args) => {
        try {
          e.migration.continueFrom(args.state as string);
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },

    {
      // QEMU's pmemsave: guest-physical memory (pc.ram at 0) to a file, so one checker reads both backends.
      name: "pmemsave",
      args: { val: { type: "int" }, size: { type: "int" }, filename: { type: "str" } },
      handler: async (args) => {
        const ram = m.blocks[0];
        const addr = args.val as number;
        const size = args.size as number;
        if (addr < 0 || size < 0 || addr + size > ram.usedLength) {
          throw new QmpError(`Invalid addr 0x${addr.toString(16)}/size ${size} specified`);
        }
        try {
          await Deno.writeFile(args.filename as string, ram.mem.slice(addr, addr + size));
        } catch (err) {
          throw new QmpError(`Could not open '${args.filename}': ${(err as Error).message}`);
        }
      },
    },

    // COLO.
    {
      name: "x-colo-lost-heartbeat",
      handler: () => {
        const colo = coloSide(e);
        if (!colo) throw new QmpError("VM is not in COLO mode");
        try {
          colo.requestFailover();
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      name: "query-colo-status",
      handler: () => {
        const p = e.migration.colo;
        const s = e.incoming.colo;
        const side = p ?? s;
        const mode = !side || side.failover.status === "completed" ? "none" : p ? "primary" : "secondary";
        const lastMode = p ? "primary" : s ? "secondary" : "none";
        let reason = "none";
        if (side && side.failover.status === "completed") reason = side.lastError ? "error" : "request";
        else if (side?.lastError) reason = "error";
        else if (side && side.failover.status !== "none") reason = "processing";
        return { mode, "last-mode": lastMode, reason };
      },
    },
    {
      name: "yank",
      oob: true,
      args: { instances: { type: "array" } },
      handler: (args) => {
        for (const inst of args.instances as { type?: string }[]) {
          if (inst?.type !== "migration") {
            throw new QmpError(`Instance '${JSON.stringify(inst)}' not found`);
          }
          if (!e.migration.isActive() && !e.incoming.isActive() && !e.incoming.colo) {
            throw new QmpError("Instance 'migration' not found");
          }
        }
        e.migration.yank();
        e.incoming.yank();
      },
    },

    // Test introspection.
    {
      name: "x-test-colo-cache-digest",
      args: { block: { type: "str", optional: true } },
      handler: (args) => {
        const cache = e.incoming.coloCache;
        if (!cache || cache.released) throw new QmpError("there is no COLO cache");
        return digestReply(e, args.block, (b) => cache.blockMemory(b));
      },
    },
    {
      name: "x-test-colo-cache-read",
      args: { block: { type: "str" }, offset: { type: "int" }, size: { type: "int" } },
      handler: (args) => {
        const cache = e.incoming.coloCache;
        if (!cache || cache.released) throw new QmpError("there is no COLO cache");
        const b = block(e, args.block);
        const off = args.offset as number;
        const size = args.size as number;
        if (off < 0 || size < 0 || size > MAX_RAM_READ || off + size > b.usedLength) {
          throw new QmpError(`read of ${size} bytes at ${off} is outside block '${b.idstr}'`);
        }
        return { data: cache.blockMemory(b).slice(off, off + size).toBase64() };
      },
    },
    {
      name: "x-test-colo-info",
      handler: () => ({
        primary: e.migration.colo
          ? {
            checkpoints: e.migration.colo.checkpoints,
            failover: e.migration.colo.failover.status,
            stats: e.migration.colo.stats,
          }
          : null,
        secondary: e.incoming.colo
          ? {
            applied: e.incoming.colo.applied,
            failover: e.incoming.colo.failover.status,
            loading: e.incoming.colo.loading,
          }
          : null,
      }),
    },
    {
      name: "x-test-breakpoint",
      args: { name: { type: { enum: [...BREAKPOINTS] } }, persistent: { type: "bool", optional: true } },
      handler: (args) => e.breakpoints.arm(args.name as BreakpointName, args.persistent === true),
    },
    {
      name: "x-test-continue",
      args: { name: { type: { enum: [...BREAKPOINTS] } }, disarm: { type: "bool", optional: true } },
      handler: (args) => {
        if (args.disarm) e.breakpoints.disarm(args.name as BreakpointName);
        else if (!e.breakpoints.continue(args.name as string)) {
          throw new QmpError(`nothing is paused at breakpoint '${args.name}'`);
        }
      },
    },
    {
      name: "x-test-ram-digest",
      args: { block: { type: "str", optional: true } },
      handler: (args) => {
        return digestReply(e, args.block, (b) => b.mem);
      },
    },
    {
      name: "x-test-ram-read",
      args: { block: { type: "str" }, offset: { type: "int" }, size: { type: "int" } },
      handler: (args) => {
        const b = block(e, args.block);
        const off = args.offset as number;
        const size = args.size as number;
        if (off < 0 || size < 0 || size > MAX_RAM_READ || off + size > b.usedLength) {
          throw new QmpError(`read of ${size} bytes at ${off} is outside block '${b.idstr}'`);
        }
        return { data: b.mem.slice(off, off + size).toBase64() };
      },
    },
    {
      name: "x-test-ram-write",
      args: { block: { type: "str" }, offset: { type: "int" }, data: { type: "str" } },
      handler: (args) => {
        const b = block(e, args.block);
        const data = Uint8Array.fromBase64(args.data as string);
        const off = args.offset as number;
        if (off < 0 || off + data.length > b.usedLength) {
          throw new QmpError(`write of ${data.length} bytes at ${off} is outside block '${b.idstr}'`);
        }
        b.mem.set(data, off);
        for (let p = Math.floor(off / b.pageSize); p * b.pageSize < off + data.length; p++) b.markDirty(p);
      },
    },
    {
      name: "x-test-page-bytes",
      args: {
        block: { type: "str", optional: true },
        start: { type: "int" },
        end: { type: "int" },
        stride: { type: "int", optional: true },
      },
      handler: (args) => {
        const b = block(e, args.block);
        const stride = (args.stride as number | undefined) ?? b.pageSize;
        const start = args.start as number;
        const end = args.end as number;
        if (stride <= 0 || start < 0 || end > b.usedLength || start > end) {
          throw new QmpError(`bad range [${start}, ${end}) stride ${stride} for block '${b.idstr}'`);
        }
        const out = new Uint8Array(Math.ceil((end - start) / stride));
        for (let i = 0, a = start; a < end; a += stride, i++) out[i] = b.mem[a];
        return { data: out.toBase64() };
      },
    },
    {
      name: "x-test-ram-fill",
      args: { seed: { type: "int" }, "entropy-bits": { type: "int", optional: true } },
      handler: (args) => {
        // Seeded contents for throughput measurements (the guest should be stopped): every byte random
        // (incompressible), or only `entropy-bits` random bits per byte (compressible).
        const bits = (args["entropy-bits"] as number | undefined) ?? 8;
        if (bits < 1 || bits > 8) throw new QmpError("'entropy-bits' must be between 1 and 8");
        const mask = (0x01010101 * ((1 << bits) - 1)) >>> 0;
        let x = (args.seed as number) >>> 0 || 1;
        for (const b of m.blocks) {
          const words = new Uint32Array(b.mem.buffer, b.mem.byteOffset, b.mem.length >>> 2);
          for (let i = 0; i < words.length; i++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            words[i] = x & mask;
          }
          for (let p = 0; p < b.pages; p++) b.markDirty(p);
        }
      },
    },
    { name: "x-test-device-state", handler: () => ({ devices: m.deviceState() }) },
    {
      name: "x-test-inject-fault",
      args: {
        kind: {
          type: {
            enum: ["corrupt", "truncate", "machine-type", "multifd-channel-delay", ...STREAM_FAULT_KINDS],
          },
        },
        offset: { type: "int", optional: true },
        xor: { type: "int", optional: true },
        /** A multifd channel id; omitted: the main channel. */
        channel: { type: "int", optional: true },
        "delay-ms": { type: "int", optional: true },
      },
      handler: (args) => {
        const kind = args.kind as string;
        const channel = args.channel as number | undefined;
        if (kind === "corrupt" || kind === "truncate") {
          if (args.offset === undefined) throw new QmpError(`fault '${kind}' needs 'offset'`);
          let faults = e.migration.faults;
          if (channel !== undefined) {
            faults = e.migration.channelFaults.get(channel) ?? {};
            e.migration.channelFaults.set(channel, faults);
          }
          if (kind === "corrupt") {
            faults.corruptAt = args.offset as number;
            faults.xor = (args.xor as number | undefined) ?? 0xff;
          } else faults.truncateAt = args.offset as number;
        } else if (kind === "multifd-channel-delay") {
          if (channel === undefined || args["delay-ms"] === undefined) {
            throw new QmpError("fault 'multifd-channel-delay' needs 'channel' and 'delay-ms'");
          }
          e.incoming.channelDelays.set(channel, args["delay-ms"] as number);
        } else if (kind === "machine-type") e.wrongMachineType = true;
        else e.migration.streamFault = kind as StreamFaultKind;
      },
    },
    {
      name: "x-test-defect",
      args: { name: { type: { enum: Object.keys(KNOWN_DEFECTS) } }, enabled: { type: "bool" } },
      handler: (args) => {
        if (args.enabled) e.defects.add(args.name as string);
        else e.defects.delete(args.name as string);
      },
    },
  ];
}
