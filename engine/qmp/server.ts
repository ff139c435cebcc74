/**
 * A QMP server over a unix socket, speaking the wire protocol the way QEMU's monitor does: greeting,
 * capabilities negotiation, `execute`/`exec-oob` requests, id echo, error classes and async events.
 *
 * Unlike QEMU, in-band commands are not serialized: each request is dispatched as soon as it is parsed,
 * so a slow async handler (a long `migrate`) never blocks a `query-migrate` behind it. Synchronous
 * handlers still run in arrival order, and replies are written in completion order.
 */
import { type Clock, hostClock } from "../clock.ts";
import { errorMessage } from "../error.ts";
import { isObject, type JsonStreamItem, JsonStreamSplitter, parseQmpJson, qmpStringify } from "./json.ts";
import { type QmpArgSpec, QmpError, validateArgs } from "./schema.ts";

// Handlers throw it: it is part of this server's contract, so it can be imported from here too.

export interface QmpCommandContext {
  server: QmpServer;
  /** Connection number (1, 2, ...) of the client that sent the request. */
  clientId: number;
  /** The request's `id` member, or undefined when it had none. */
  id: unknown;
  /** True when the request came in as `exec-oob`. */
  oob: boolean;
  /** Aborted when the client disconnects or the server closes; long handlers must honor it. */
  signal: AbortSignal;
  /**
   * The last descriptor that came with the request (SCM_RIGHTS), now the handler's; earlier ones that
   * came with it are closed by `dispose`. Undefined when none came (or the connection cannot carry any).
   */
  takeFd(dispose: (fd: number) => void): number | undefined;
}

export interface QmpCommand {
  name: string;
  /** Arguments accepted; omitted means none. "any" skips validation (handler checks itself). */
  args?: QmpArgSpec | "any";
  /** May be sent with `exec-oob`. */
  oob?: boolean;
  handler(args: Record<string, unknown>, ctx: QmpCommandContext): unknown | Promise<unknown>;
}

export interface QmpTrafficEntry {
  /** Milliseconds since the epoch. */
  time: number;
  clientId: number;
  dir: "in" | "out";
  text: string;
}

/**
 * What the server needs of a client's connection (a Deno.Conn, or the simulated world's link); one that
 * carries descriptors (a raw unix socket, engine/os/fd_conn.ts) hands over those that came.
 */
export type QmpConn = Pick<Deno.Conn, "read" | "write" | "close"> & { takeFds?(): number[] };

export interface QmpServerOptions {
  /** Unix socket path; a stale socket file there is replaced, as QEMU does. */
  path: string;
  /** Times event timestamps and the close's flush (default: the host's clock). */
  clock?: Clock;
  /** Wall-clock milliseconds at the clock's 0 (default: performance.timeOrigin). */
  epochMs?: number;
  commands?: readonly QmpCommand[];
  version?: { major: number; minor: number; micro: number };
  package?: string;
  /** Called with every line received (one JSON value) and sent, per client. */
  onTraffic?: (entry: QmpTrafficEntry) => void;
  /** Called when a client's connection has ended (its named descriptors go with it). */
  onClientGone?: (clientId: number) => void;
}

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

export function qmpTimestamp(clock: Clock = hostClock, epochMs = performance.timeOrigin): QmpTimestamp {
  const us = Math.floor((epochMs + clock.now()) * 1000);
  return { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === "object" || typeof v === "function") && v !== null &&
    typeof (v as { then?: unknown }).then === "function";
}

const CAPABILITIES_SPEC: QmpArgSpec = { enable: { type: { array: { enum: ["oob"] } }, optional: true } };
const encoder = new TextEncoder();

function errorBody(e: unknown): { class: string; desc: string } {
  if (e instanceof QmpError) return { class: e.klass, desc: e.desc };
  if (e instanceof Error) return { class: "GenericError", desc: e.message };
  return { class: "GenericError", desc: String(e) };
}

class Connection {
  negotiated = false;
  oob = false;
  closed = false;
  readonly abort = new AbortController();
  readonly #inflight = new Set<Promise<void>>();
  #writes: Promise<void> = Promise.resolve();
  readonly done: Promise<void>;

  constructor(
    readonly id: number,
    private readonly conn: QmpConn,
    private readonly server: QmpServer,
    greeting: string,
    private readonly log: (dir: "in" | "out", text: string) => void,
  ) {
    this.sendLine(greeting);
    this.done = this.#readLoop().then(async () => {
      while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
      await this.#writes;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error(`QMP client ${this.id} disconnected`));
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Waits (at most `ms`) until everything queued so far has been written. */
  async flush(ms: number): Promise<void> {
    let cancel = () => {};
    const expired = new Promise<void>((r) => (cancel = this.server.clock.timer(r, ms)));
    await Promise.race([this.#writes, expired]);
    cancel();
  }

  sendLine(line: string): void {
    if (this.closed) return;
    this.log("out", line);
    const bytes = encoder.encode(line + "\r\n");
    this.#writes = this.#writes.then(async () => {
      let off = 0;
      while (off < bytes.length && !this.closed) off += await this.conn.write(bytes.subarray(off));
    }).catch(() => this.close());
  }

  send(obj: Record<string, unknown>): void {
    let line: string;
    try {
      line = qmpStringify(obj);
    } catch (e) {
      // An unserializable handler result must still produce a reply.
      const err: Record<string, unknown> = { error: errorBody(e) };
      if (Object.hasOwn(obj, "id")) err.id = obj.id;
      line = qmpStringify(err);
    }
    this.sendLine(line);
  }

  async #readLoop(): Promise<void> {
    const splitter = new JsonStreamSplitter();
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    try {
      while (!this.closed) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const item of splitter.push(decoder.decode(buf.subarray(0, n), { stream: true }))) {
          if (this.closed) break;
          this.#handleItem(item);
        }
      }
    } catch {
      // Reset by the peer or closed under us: either way the session is over.
    } finally {
      this.close();
    }
  }

  #handleItem(item: JsonStreamItem): void {
    if ("error" in item) {
      this.log("in", `<unframable input: ${item.error}>`);
      this.send({ error: { class: "GenericError", desc: item.error } });
      return;
    }
    this.log("in", item.text);
    let msg: unknown;
    try {
      msg = parseQmpJson(item.text);
    } catch (e) {
      const m = errorMessage(e);
      this.send({ error: { class: "GenericError", desc: `JSON parse error, ${m}` } });
      return;
    }
    this.#dispatch(msg);
  }

  #dispatch(msg: unknown): void {
    if (!isObject(msg)) {
      this.send({ error: { class: "GenericError", desc: "QMP input must be a JSON object" } });
      return;
    }
    const hasId = Object.hasOwn(msg, "id");
    const reply = (body: Record<string, unknown>) => {
      if (hasId) body.id = msg.id;
      this.send(body);
    };
    const fail = (e: unknown) => reply({ error: errorBody(e) });

    let execKey: string | undefined;
    for (const [key, value] of Object.entries(msg)) {
      if (key === "execute" || (key === "exec-oob" && this.oob)) {
        if (typeof value !== "string") {
          return fail(new QmpError(`QMP input member '${key}' must be a string`));
        }
        if (execKey) return fail(new QmpError(`QMP input member '${key}' clashes with '${execKey}'`));
        execKey = key;
      } else if (key === "arguments") {
        if (!isObject(value)) return fail(new QmpError("QMP input member 'arguments' must be an object"));
      } else if (key !== "id") {
        return fail(new QmpError(`QMP input member '${key}' is unexpected`));
      }
    }
    if (!execKey) return fail(new QmpError("QMP input lacks member 'execute'"));
    const name = msg[execKey] as string;
    const oob = execKey === "exec-oob";
    const args = (msg.arguments ?? {}) as Record<string, unknown>;

    if (name === "qmp_capabilities") {
      if (this.negotiated) {
        return fail(
          new QmpError("CommandNotFound", "Capabilities negotiation is already complete, command ignored"),
        );
      }
      try {
        validateArgs(CAPABILITIES_SPEC, args);
      } catch (e) {
        return fail(e);
      }
      this.negotiated = true;
      this.oob = Array.isArray(args.enable) && args.enable.includes("oob");
      return reply({ return: {} });
    }
    if (!this.negotiated) {
      return fail(
        new QmpError("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"),
      );
    }
    const cmd = this.server.command(name);
    if (!cmd) return fail(new QmpError("CommandNotFound", `The command ${name} has not been found`));
    if (oob && !cmd.oob) return fail(new QmpError(`The command ${name} does not support OOB`));

    let result: unknown;
    try {
      if (cmd.args !== "any") validateArgs(cmd.args, args);
      const ctx: QmpCommandContext = {
        server: this.server,
        clientId: this.id,
        id: hasId ? msg.id : undefined,
        oob,
        signal: this.abort.signal,
        takeFd: (dispose) => {
          const fds = this.conn.takeFds?.() ?? [];
          const last = fds.pop();
          for (const f of fds) dispose(f);
          return last;
        },
      };
      result = cmd.handler(args, ctx);
    } catch (e) {
      return fail(e);
    }
    const ok = (r: unknown) => reply({ return: r === undefined ? {} : r });
    if (!isThenable(result)) return ok(result);
    const p = Promise.resolve(result).then(ok, fail).finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }
}

export class QmpServer {
  readonly path: string;
  readonly clock: Clock;
  readonly #epochMs: number;
  readonly #listener: Deno.UnixListener | null;
  readonly #commands = new Map<string, QmpCommand>();
  readonly #conns = new Set<Connection>();
  readonly #acceptLoop: Promise<void>;
  readonly #greeting: string;
  readonly #onTraffic?: (entry: QmpTrafficEntry) => void;
  readonly #onClientGone?: (clientId: number) => void;
  #nextId = 1;
  #closing: Promise<void> | undefined;

  private constructor(opts: QmpServerOptions, listen: boolean) {
    this.path = opts.path;
    this.clock = opts.clock ?? hostClock;
    this.#epochMs = opts.epochMs ?? performance.timeOrigin;
    this.#onTraffic = opts.onTraffic;
    this.#onClientGone = opts.onClientGone;
    const v = opts.version ?? { major: 7, minor: 2, micro: 0 };
    this.#greeting = qmpStringify({
      QMP: {
        version: {
          qemu: { micro: v.micro, minor: v.minor, major: v.major },
          package: opts.package ?? "migtest",
        },
        capabilities: ["oob"],
      },
    });
    for (const c of opts.commands ?? []) this.register(c);
    if (!listen) {
      this.#listener = null;
      this.#acceptLoop = Promise.resolve();
      return;
    }
    try {
      if (Deno.lstatSync(opts.path).isSocket) Deno.removeSync(opts.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    this.#listener = Deno.listen({ transport: "unix", path: opts.path });
    this.#acceptLoop = this.#accept();
  }

  /** Starts listening on `opts.path` (synchronously bound, so clients may connect right away). */
  static listen(opts: QmpServerOptions): QmpServer {
    return new QmpServer(opts, true);
  }

  /** A server without a socket: clients come in through `connect` (the simulated world's links). */
  static unbound(opts: QmpServerOptions): QmpServer {
    return new QmpServer(opts, false);
  }

  /** Adds or replaces a command. `qmp_capabilities` is built in and cannot be replaced. */
  register(cmd: QmpCommand): void {
    if (cmd.name === "qmp_capabilities") throw new Error("qmp_capabilities is built in");
    this.#commands.set(cmd.name, cmd);
  }

  unregister(name: string): boolean {
    return this.#commands.delete(name);
  }

  command(name: string): QmpCommand | undefined {
    return this.#commands.get(name);
  }

  /** Registered command names, plus the built-in qmp_capabilities (for query-commands). */
  commandNames(): string[] {
    return ["qmp_capabilities", ...this.#commands.keys()];
  }

  /** Number of connected clients that completed negotiation. */
  get clientCount(): number {
    let n = 0;
    for (const c of this.#conns) if (c.negotiated && !c.closed) n++;
    return n;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Sends an event to every negotiated client; `data` is omitted from the message when not given. */
  emit(event: string, data?: Record<string, unknown>): void {
    const msg: Record<string, unknown> = { timestamp: qmpTimestamp(this.clock, this.#epochMs), event };
    if (data !== undefined) msg.data = data;
    const line = qmpStringify(msg);
    for (const c of this.#conns) if (c.negotiated && !c.closed) c.sendLine(line);
  }

  /**
   * Stops listening, flushes queued output, disconnects every client (aborting their handlers' signals),
   * waits for handlers to settle and removes the socket file. Idempotent. A handler may start it (`quit`)
   * but must not await it, since close waits for in-flight handlers.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        this.#listener?.close();
      } catch {
        // Already closed.
      }
      await this.#acceptLoop;
      // Deliver what is already queued (a `quit` reply, a SHUTDOWN event) unless the peer stalls.
      await Promise.all([...this.#conns].map((c) => c.flush(1000)));
      for (const c of this.#conns) c.close();
      await Promise.all([...this.#conns].map((c) => c.done));
      try {
        if (this.#listener) Deno.removeSync(this.path);
      } catch {
        // Deno already unlinks unix sockets on close.
      }
    })();
    return this.#closing;
  }

  async #accept(): Promise<void> {
    while (this.#listener) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      if (this.#closing) {
        conn.close();
        return;
      }
      this.connect(conn);
    }
  }

  /** Serves one client on `conn` (greeting first), until either end closes it. */
  connect(conn: QmpConn): void {
    if (this.#closing) {
      conn.close();
      return;
    }
    const id = this.#nextId++;
    const log = (dir: "in" | "out", text: string) => {
      if (!this.#onTraffic) return;
      try {
        this.#onTraffic({ time: Date.now(), clientId: id, dir, text });
      } catch {
        // A broken logger must not take the monitor down.
      }
    };
    const c = new Connection(id, conn, this, this.#greeting, log);
    this.#conns.add(c);
    c.done.then(() => {
      if (!this.#closing) this.#conns.delete(c);
      this.#onClientGone?.(id);
    });
  }
}
