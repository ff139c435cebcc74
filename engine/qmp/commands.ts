/**
 * The QMP commands of an engine that QEMU has too (qapi/migration.json, qapi/run-state.json, misc), with
 * QEMU's names, arguments and errors. The `x-test-` commands are in engine/testing/commands.ts.
 */
import { dirtyRateCommands } from "../dirtyrate.ts";
import { dirtyLimitCommands } from "../dirtylimit.ts";
import { MIGRATION_STATUSES } from "../migration_status.ts";
import { cprConflict, transportCompatible } from "../migration.ts";
import { createObject } from "../crypto/tls_creds.ts";
import type { Engine } from "../engine.ts";
import { checkParameters, type MigrationParameters, parameterArgTypes } from "../options.ts";
import { uuidToString } from "../uuid.ts";
import { errorMessage } from "../error.ts";
import { type MigrationAddress, parseMigrationUri, UriError } from "../transport/uri.ts";
import { QmpError } from "./schema.ts";
import type { QmpCommand, QmpCommandContext } from "./server.ts";
import { fileFlags, isFdsetPath } from "../monitor/fds.ts";

/** A migration is under way: outgoing at all, incoming once a stream is loading (in setup, QEMU still
 * lets the destination set capabilities, which upstream's `-incoming URI` tests rely on). */
function inProgress(e: Engine): boolean {
  return e.migration.isActive() || e.incoming.status === "active";
}

/** The `channels` argument: one main channel with a socket or file address (and perhaps a cpr one). */
function channelsToAddress(channels: unknown): MigrationAddress {
  const main = Array.isArray(channels)
    ? channels.filter((c) => (c as Record<string, unknown>)["channel-type"] !== "cpr")
    : [];
  if (!Array.isArray(channels) || main.length !== 1) {
    throw new QmpError("Channel list must have exactly one main channel");
  }
  const ch = main[0] as Record<string, unknown>;
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

/** The path of the `cpr` channel in `channels` (a unix socket), or null when there is none. */
function cprChannelPath(args: Record<string, unknown>): string | null {
  if (!Array.isArray(args.channels)) return null;
  const ch = args.channels.find((c) => (c as Record<string, unknown>)["channel-type"] === "cpr") as
    | Record<string, unknown>
    | undefined;
  if (!ch) return null;
  const addr = (ch.addr ?? {}) as Record<string, unknown>;
  if (addr.transport !== "socket" || addr.type !== "unix" || typeof addr.path !== "string") {
    throw new QmpError("the cpr channel must be a unix socket here (socket, type unix, path)");
  }
  return addr.path;
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

/** fd:NAME takes the descriptor the asking monitor connection named (monitor_get_fd), at once. */
function takeNamedFd(e: Engine, addr: MigrationAddress, clientId: number): MigrationAddress {
  if (addr.transport !== "fd") return addr;
  // A plain Error: its message is QEMU's error-desc as it is (a QmpError's message names its class).
  return { ...addr, fd: e.fds.take(clientId, addr.name) };
}

/** The descriptor that came with getfd/add-fd, or QEMU's error when none did. */
function receivedFd(e: Engine, ctx: QmpCommandContext): number {
  const fd = ctx.takeFd((f) => e.fds.host.close(f));
  if (fd === undefined) throw new QmpError("No file descriptor supplied via SCM_RIGHTS");
  return fd;
}

/** The monitor's descriptor commands (monitor/fds.c). */
function fdCommands(e: Engine): QmpCommand[] {
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw err instanceof QmpError ? err : new QmpError((err as Error).message);
    }
  };
  return [
    {
      name: "getfd",
      args: { fdname: { type: "str" } },
      handler: (args, ctx) => wrap(() => e.fds.getfd(ctx.clientId, String(args.fdname), receivedFd(e, ctx))),
    },
    {
      name: "closefd",
      args: { fdname: { type: "str" } },
      handler: (args, ctx) => wrap(() => e.fds.closefd(ctx.clientId, String(args.fdname))),
    },
    {
      name: "add-fd",
      args: { "fdset-id": { type: "int", optional: true }, opaque: { type: "str", optional: true } },
      handler: (args, ctx) =>
        wrap(() =>
          e.fds.addFd(
            receivedFd(e, ctx),
            args["fdset-id"] === undefined ? undefined : Number(args["fdset-id"]),
            args.opaque === undefined ? undefined : String(args.opaque),
          )
        ),
    },
    {
      name: "remove-fd",
      args: { "fdset-id": { type: "int" }, fd: { type: "int", optional: true } },
      handler: (args) =>
        wrap(() =>
          e.fds.removeFd(Number(args["fdset-id"]), args.fd === undefined ? undefined : Number(args.fd))
        ),
    },
    { name: "query-fdsets", handler: () => e.fds.query() },
  ];
}

/** The COLO role of this engine, while COLO is running. */
function coloSide(e: Engine) {
  const side = e.migration.colo ?? e.incoming.colo;
  if (!side || side.failover.status === "completed") return null;
  return side;
}

export function engineCommands(e: Engine): QmpCommand[] {
  const m = e.machine;
  return [
    ...fdCommands(e),
    ...dirtyRateCommands(e.dirtyRate),
    ...dirtyLimitCommands(e.dirtyLimit),
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
      name: "system_wakeup",
      handler: () => {
        try {
          m.wakeup();
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      name: "quit",
      handler: () => {
        e.machine.clock.timer(() => e.hooks.exit(0), 10);
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
      handler: async (args, ctx) => {
        if (args.resume) {
          if (e.migration.status !== "postcopy-paused") {
            throw new QmpError("Cannot resume if there is no paused migration");
          }
          try {
            e.startOutgoing(address(args, "migrate"), true);
          } catch (err) {
            throw new QmpError((err as Error).message);
          }
          return;
        }
        if (m.runstate === "inmigrate") throw new QmpError("Guest is waiting for an incoming migration");
        if (inProgress(e)) throw new QmpError("There's a migration process in progress");
        const addr = address(args, "migrate");
        const bad = transportCompatible(addr, e.options, true) ?? cprConflict(e.options);
        if (bad) throw new QmpError(bad);
        if (e.options.params.mode === "cpr-transfer") {
          const cprPath = cprChannelPath(args);
          if (!cprPath) throw new QmpError("missing 'cpr' migration channel");
          try {
            await e.startOutgoingCpr(addr, cprPath);
          } catch (err) {
            throw new QmpError(errorMessage(err));
          }
          return;
        }
        let channel: MigrationAddress;
        try {
          channel = takeNamedFd(e, addr, ctx.clientId);
          if (addr.transport === "file" && isFdsetPath(addr.path)) e.fds.check(addr.path, fileFlags(true));
        } catch (err) {
          e.migration.failToStart(errorMessage(err));
          throw new QmpError(errorMessage(err));
        }
        e.startOutgoing(channel);
      },
    },
    {
      name: "migrate-start-postcopy",
      handler: () => {
        try {
          e.migration.startPostcopy();
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      // Either side: shut the channels of a postcopy that runs or recovers; both sides pause.
      name: "migrate-pause",
      handler: () => {
        const src = e.migration.status;
        if (src === "postcopy-active" || src === "postcopy-recover") return e.migration.pause();
        try {
          e.incoming.pause();
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      name: "migrate-recover",
      args: { uri: { type: "str" } },
      handler: (args) => {
        try {
          e.incoming.recover(address(args, "migrate-recover"));
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      name: "migrate-incoming",
      args: {
        uri: { type: "str", optional: true },
        channels: { type: "array", optional: true },
        "exit-on-error": { type: "bool", optional: true },
      },
      handler: (args, ctx) => {
        // qmp_migrate_incoming's order: `-incoming URI` spent its one start at boot (QEMU 7.2 and 10.0 both
        // answer so, measured), then a side without -incoming at all.
        if ((e.incomingAtStart || e.incoming.started) && !e.defects.has("incoming-once-not-enforced")) {
          throw new QmpError("The incoming migration has already been started");
        }
        if (!e.deferredIncoming) throw new QmpError("'-incoming' was not specified on the command line");
        const addr = address(args, "migrate-incoming");
        const bad = transportCompatible(addr, e.options, false);
        if (bad) throw new QmpError(bad);
        e.incoming.exitOnError = args["exit-on-error"] !== false;
        const resolved = takeNamedFd(e, addr, ctx.clientId);
        try {
          e.incoming.start(resolved);
        } catch (err) {
          throw new QmpError(`Failed to listen on ${String(args.uri)}: ${(err as Error).message}`);
        }
      },
    },
    {
      // user_creatable_add_qapi: the TLS credentials and authz objects (engine/crypto/tls_creds.ts).
      name: "object-add",
      args: "any",
      handler: (args) => {
        const id = args.id;
        if (typeof id === "string" && e.objects.has(id)) {
          throw new QmpError(`attempt to add duplicate property '${id}' to object (type 'container')`);
        }
        let o;
        try {
          o = createObject(args);
        } catch (err) {
          throw err instanceof QmpError ? err : new QmpError((err as Error).message);
        }
        e.objects.set(o.id, o);
      },
    },
    {
      name: "object-del",
      args: { id: { type: "str" } },
      handler: (args) => {
        if (!e.objects.delete(String(args.id))) throw new QmpError(`object '${String(args.id)}' not found`);
      },
    },
    {
      name: "migrate-set-capabilities",
      args: { capabilities: { type: "array" } },
      handler: (args) => {
        // migration_is_running: the outgoing migration only; a destination that is loading accepts them
        // (QEMU 10.0, measured), as cpr-transfer's target, whose monitor comes up mid-load, needs.
        if (e.migration.isActive() && !e.defects.has("caps-while-running")) {
          throw new QmpError("There's a migration process in progress");
        }
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
        if (e.migration.isActive()) {
          for (const k of ["multifd-channels", "multifd-compression"]) {
            if (k in args) {
              throw new QmpError(`Parameter '${k}' cannot be changed while migration is running`);
            }
          }
        }
        // StrOrNull: null resets a string parameter.
        const update = Object.fromEntries(Object.entries(args).map(([k, v]) => [k, v === null ? "" : v]));
        Object.assign(e.options.params, update as Partial<MigrationParameters>);
      },
    },
    {
      name: "query-migrate-parameters",
      handler: () => ({ ...e.options.params }),
    },
    {
      name: "query-migrate",
      handler: () => (e.incoming.started ? e.incoming.query() : e.migration.query()),
    },
    {
      name: "migrate_cancel",
      handler: () => {
        try {
          e.migration.cancel();
        } catch (err) {
          throw new QmpError((err as Error).message);
        }
      },
    },
    {
      name: "migrate-continue",
      args: { state: { type: { enum: MIGRATION_STATUSES } } },
      handler: (args) => {
        try {
          e.migration.continueFrom(args.state as string, e.defects.has("continue-any-state"));
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
        // As qmp_query_colo_status: the mode is the COLO state the migration is in now; the reason comes
        // from the failover state alone (a checkpoint that failed before a requested failover still ends
        // in 'request').
        const inColo = e.migration.status === "colo" || e.incoming.status === "colo";
        const mode = e.migration.status === "colo"
          ? "primary"
          : e.incoming.status === "colo"
          ? "secondary"
          : "none";
        // QEMU sets its last mode when COLO ends (a takeover): while in COLO it still reads none.
        const lastMode = inColo ? "none" : p ? "primary" : s ? "secondary" : "none";
        const failover = side?.failover.status ?? "none";
        const reason = failover === "none"
          ? "none"
          : failover === "completed"
          ? "request"
          : inColo
          ? "processing"
          : "error";
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
  ];
}
