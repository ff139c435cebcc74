/**
 * A QMP client for the harness. It talks to the migtest engine and to a real qemu-system-x86_64 alike,
 * so it relies only on the documented wire protocol: newline-terminated JSON objects, id echo, events.
 *
 * Every wait is bounded and its error names the side (`name`) and what was awaited, because these
 * messages end up in failure artifacts next to the transcript.
 */
import { errorMessage } from "../error.ts";
import { bigintReviver, isObject } from "./json.ts";
import type { QmpConn } from "./server.ts";
import { type Clock, hostClock } from "../clock.ts";
import { type EventFeed, waitFor, WaitTimeoutError } from "../wait.ts";

export interface QmpTranscriptEntry {
  /** Milliseconds since the epoch. */
  time: number;
  /** The client's `name` (e.g. "src", "dst"). */
  side: string;
  dir: "send" | "recv" | "note";
  text: string;
}

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export interface QmpEvent {
  event: string;
  /** The event's data, or {} when the server sent none. */
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
  /** Position in `events` (usable as a later `since`). */
  index: number;
}

export type QmpResult<T = unknown> = { return: T } | { error: { class: string; desc: string } };

export interface QmpConnectOptions {
  /** Side name used in errors and the transcript. */
  name: string;
  /** Bound for connecting (including waiting for the socket to appear) and default for later waits. */
  timeoutMs?: number;
  /** Array to append transcript entries to (shareable between clients); a fresh one otherwise. */
  transcript?: QmpTranscriptEntry[];
  /** Negotiate the "oob" capability. */
  oob?: boolean;
  /** Stops waiting for the socket (e.g. the process behind it has exited). */
  signal?: AbortSignal;
  /** Whose time the waits' timeouts are in (default: the host's; the simulated world's is virtual). */
  clock?: Clock;
}

export interface QmpWaitOptions {
  timeoutMs?: number;
  /** Keep the command and its reply out of the transcript (background polling would bury the flow's). */
  untraced?: boolean;
}

export interface QmpWaitEventOptions extends QmpWaitOptions {
  /** Only consider events with `index >= since` (default 0: all events received so far count). */
  since?: number;
  /** What the predicate asks, for the timeout message ("status setup"). */
  matching?: string;
  /** Appended to a timeout's message (what both sides were doing). */
  diagnose?: () => Promise<string> | string;
}

export class QmpCommandError extends Error {
  constructor(
    readonly side: string,
    readonly command: string,
    readonly klass: string,
    readonly desc: string,
  ) {
    super(`${side}: ${command} failed: ${klass}: ${desc}`);
    this.name = "QmpCommandError";
  }
}

/** A QMP wait that ran out of time: a reply, the greeting, an event. */
export class QmpTimeoutError extends WaitTimeoutError {
  constructor(message: string) {
    super(message);
    this.name = "QmpTimeoutError";
  }
}

export class QmpClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QmpClosedError";
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const encoder = new TextEncoder();

/** Formats a transcript as one line per entry for failure artifacts. */
export function formatTranscript(entries: readonly QmpTranscriptEntry[]): string[] {
  const arrow = { send: "->", recv: "<-", note: "--" } as const;
  return entries.map((e) => `${new Date(e.time).toISOString()} ${e.side} ${arrow[e.dir]} ${e.text}`);
}

function parseJson(text: string): unknown {
  // Keeps 64-bit counters exact instead of rounding them to doubles.
  return JSON.parse(text, bigintReviver);
}

const rawJSON = (JSON as JSON & { rawJSON(text: string): unknown }).rawJSON;

function stringify(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => typeof x === "bigint" ? rawJSON(x.toString()) : x);
}

function brief(v: unknown, max = 200): string {
  let s: string;
  try {
    s = stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? s.slice(0, max) + "..." : s;
}

interface Pending {
  command: string;
  untraced?: boolean;
  resolve(r: QmpResult): void;
  reject(e: Error): void;
}

interface EventWatcher {
  what: string;
  arrived(e: QmpEvent, index: number): void;
  ended(e: Error): void;
}

export class QmpClient {
  readonly name: string;
  readonly path: string;
  readonly timeoutMs: number;
  #greeting: QmpGreeting | undefined;
  #greetingWaiter: { resolve(g: QmpGreeting): void; reject(e: Error): void } | undefined;
  #oob = false;
  readonly #conn: QmpConn;
  readonly #transcript: QmpTranscriptEntry[];
  readonly #clock: Clock;
  readonly #events: QmpEvent[] = [];
  readonly #listeners = new Set<(e: QmpEvent) => void>();
  readonly #pending = new Map<string, Pending>();
  readonly #waiters = new Set<EventWatcher>();
  #writes: Promise<void> = Promise.resolve();
  #nextId = 1;
  #closedReason: string | undefined;
  #closing: Promise<void> | undefined;
  readonly #readLoop: Promise<void>;

  private constructor(conn: QmpConn, path: string, opts: QmpConnectOptions) {
    this.#conn = conn;
    this.name = opts.name;
    this.path = path;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#transcript = opts.transcript ?? [];
    this.#clock = opts.clock ?? hostClock;
    this.#readLoop = this.#read();
  }

  /**
   * Connects to the QMP socket at `path` (retrying until it exists and accepts, within `timeoutMs`),
   * reads the greeting and negotiates capabilities.
   */
  static async connect(path: string, opts: QmpConnectOptions): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    let conn: Deno.Conn | undefined;
    let lastError = "";
    while (!conn) {
      if (opts.signal?.aborted) {
        throw new QmpClosedError(`${opts.name}: gave up connecting to QMP socket ${path}`);
      }
      try {
        conn = await Deno.connect({ transport: "unix", path });
      } catch (e) {
        // The server may not have bound its socket yet, or a stale file may be left from a previous run.
        if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused)) throw e;
        lastError = e.message;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new QmpTimeoutError(
            `${opts.name}: timed out after ${timeoutMs}ms connecting to QMP socket ${path} (${lastError})`,
          );
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(20, left));
          opts.signal?.addEventListener("abort", () => {
            clearTimeout(t);
            r();
          }, { once: true });
        });
      }
    }
    const client = new QmpClient(conn, path, opts);
    try {
      await client.#negotiate(deadline, opts.oob ?? false);
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  /** A client on a connection already open (the simulated world's QMP link): greeting, capabilities. */
  static async over(conn: QmpConn, path: string, opts: QmpConnectOptions): Promise<QmpClient> {
    const client = new QmpClient(conn, path, opts);
    try {
      await client.#negotiate(Date.now() + client.timeoutMs, opts.oob ?? false);
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  /** The array this client appends its transcript to, for another client of the same side to share. */
  transcriptSink(): QmpTranscriptEntry[] {
    return this.#transcript;
  }

  /** Something is awaited of the server: a reply, an event, the greeting. */
  get waiting(): boolean {
    return this.#pending.size > 0 || this.#waiters.size > 0 || this.#greetingWaiter !== undefined;
  }

  async #negotiate(deadline: number, oob: boolean): Promise<void> {
    const greeting = await this.#bounded<QmpGreeting>(
      "greeting",
      deadline - Date.now(),
      (resolve, reject) => {
        if (this.#greeting) return resolve(this.#greeting);
        if (this.#closedReason) return reject(this.#closedError("the greeting"));
        this.#greetingWaiter = { resolve, reject };
      },
      () => (this.#greetingWaiter = undefined),
    );
    const caps = greeting.QMP.capabilities ?? [];
    if (oob && !caps.includes("oob")) {
      throw new Error(`${this.name}: server does not offer the oob capability (offers: ${brief(caps)})`);
    }
    await this.execute("qmp_capabilities", oob ? { enable: ["oob"] } : undefined, {
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
    this.#oob = oob;
  }

  get greeting(): QmpGreeting {
    if (!this.#greeting) throw new Error(`${this.name}: no greeting received`);
    return this.#greeting;
  }

  /** True when the oob capability was negotiated. */
  get oob(): boolean {
    return this.#oob;
  }

  get transcript(): readonly QmpTranscriptEntry[] {
    return this.#transcript;
  }

  get events(): readonly QmpEvent[] {
    return this.#events;
  }

  get closed(): boolean {
    return this.#closedReason !== undefined;
  }

  /** Runs `command`; resolves to its `return` value, rejects with QmpCommandError on an error reply. */
  async execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts?: QmpWaitOptions,
  ): Promise<T> {
    return this.#unwrap<T>(command, await this.tryExecute<T>(command, args, opts));
  }

  /** Like execute, but sent as `exec-oob` (needs `oob: true` at connect). */
  async executeOob<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts?: QmpWaitOptions,
  ): Promise<T> {
    return this.#unwrap<T>(command, await this.#request<T>("exec-oob", command, args, opts));
  }

  /** Runs `command` and resolves to the raw reply, error replies included. */
  tryExecute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts?: QmpWaitOptions,
  ): Promise<QmpResult<T>> {
    return this.#request<T>("execute", command, args, opts);
  }

  /**
   * Resolves with the first event named `event` (and matching `predicate`) at index >= `since`,
   * whether already received or arriving later.
   */
  waitEvent(
    event: string,
    predicate?: (e: QmpEvent) => boolean,
    opts?: QmpWaitEventOptions,
  ): Promise<QmpEvent> {
    const since = opts?.since ?? 0;
    const what = `event ${event}${opts?.matching ? ` with ${opts.matching}` : ""} on ${this.name}` +
      (since > 0 ? ` (since #${since})` : "");
    return waitFor(what, {
      feed: this.feed,
      since,
      match: (e) => e.event === event && (!predicate || predicate(e)),
    }, {
      timeoutMs: opts?.timeoutMs ?? this.timeoutMs,
      clock: this.#clock,
      diagnose: opts?.diagnose,
      timeoutError: (msg) => new QmpTimeoutError(msg),
    });
  }

  /** The events as a wait watches them (harness/wait.ts): a watcher counts as awaited (`waiting`). */
  readonly feed: EventFeed<QmpEvent> = {
    events: this.#events,
    watch: (what, arrived, ended) => {
      if (this.#closedReason) {
        ended(this.#closedError(what));
        return () => {};
      }
      const w: EventWatcher = { what, arrived, ended };
      this.#waiters.add(w);
      return () => this.#waiters.delete(w);
    },
    describe: (e) => `${e.event} ${brief(e.data, 120)}`,
  };

  /** Calls `cb` for every event received from now on; returns an unsubscribe function. */
  onEvent(cb: (e: QmpEvent) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** Adds a free-form line to the transcript (harness annotations). */
  note(text: string): void {
    this.#record("note", text);
  }

  /** Closes the socket and rejects everything pending. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closedReason ??= "local";
      try {
        this.#conn.close();
      } catch {
        // Already closed by the read loop.
      }
      await this.#readLoop;
      await this.#writes;
    })();
    return this.#closing;
  }

  #unwrap<T>(command: string, r: QmpResult<T>): T {
    if ("error" in r) throw new QmpCommandError(this.name, command, r.error.class, r.error.desc);
    return r.return;
  }

  #request<T>(
    kind: "execute" | "exec-oob",
    command: string,
    args: Record<string, unknown> | undefined,
    opts: QmpWaitOptions | undefined,
  ): Promise<QmpResult<T>> {
    const id = `${this.name}-${this.#nextId++}`;
    const msg: Record<string, unknown> = { [kind]: command };
    if (args !== undefined) msg.arguments = args;
    msg.id = id;
    let line: string;
    try {
      line = stringify(msg);
    } catch (e) {
      return Promise.reject(e);
    }
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    return this.#bounded<QmpResult<T>>(
      `reply to ${command}`,
      timeoutMs,
      (resolve, reject) => {
        if (this.#closedReason) return reject(this.#closedError(command));
        this.#pending.set(id, {
          command,
          untraced: opts?.untraced,
          resolve: resolve as (r: QmpResult) => void,
          reject,
        });
        this.#write(line, opts?.untraced).catch((e) => {
          const p = this.#pending.get(id);
          if (!p) return;
          this.#pending.delete(id);
          p.reject(new QmpClosedError(`${this.name}: failed to send ${command}: ${e}`));
        });
      },
      () => this.#pending.delete(id),
    );
  }

  /**
   * A promise settled by `start`'s callbacks or rejected after `timeoutMs`; `cancel` unregisters the
   * waiter on timeout. The timer is always cleared once settled.
   */
  #bounded<T>(
    what: string,
    timeoutMs: number,
    start: (resolve: (v: T) => void, reject: (e: Error) => void) => void,
    cancel: () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const cancelTimer = this.#clock.timer(() => {
        if (settled) return;
        settled = true;
        cancel();
        this.#record("note", `timed out after ${timeoutMs}ms waiting for ${what}`);
        reject(new QmpTimeoutError(`${this.name}: timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      const settle = () => {
        if (settled) return false;
        settled = true;
        cancelTimer();
        return true;
      };
      start((v) => settle() && resolve(v), (e) => settle() && reject(e));
    });
  }

  #closedError(what: string): QmpClosedError {
    return this.#closedReason === "local"
      ? new QmpClosedError(`QMP client ${this.name} was closed while waiting for ${what}`)
      : new QmpClosedError(
        `connection closed by ${this.name} while waiting for ${what} (${this.#closedReason})`,
      );
  }

  #record(dir: QmpTranscriptEntry["dir"], text: string): void {
    this.#transcript.push({ time: Date.now(), side: this.name, dir, text });
  }

  #write(line: string, untraced = false): Promise<void> {
    if (!untraced) this.#record("send", line);
    const bytes = encoder.encode(line + "\n");
    const w = this.#writes.then(async () => {
      let off = 0;
      while (off < bytes.length) {
        if (this.#closedReason) throw new Error("connection closed");
        off += await this.#conn.write(bytes.subarray(off));
      }
    });
    // Keep the chain alive after a failed write; the caller sees the failure through `w`.
    this.#writes = w.catch(() => {});
    return w;
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    let reason = "end of stream";
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        text += decoder.decode(buf.subarray(0, n), { stream: true });
        let nl: number;
        while ((nl = text.indexOf("\n")) >= 0) {
          const line = text.slice(0, nl).trim();
          text = text.slice(nl + 1);
          if (line) this.#handleLine(line);
        }
      }
    } catch (e) {
      reason = errorMessage(e);
    }
    if (text.trim()) this.#record("note", `unterminated input at end: ${text.trim()}`);
    this.#closedReason ??= reason;
    if (this.#closedReason !== "local") this.#record("note", `connection closed: ${reason}`);
    try {
      this.#conn.close();
    } catch {
      // close() got there first.
    }
    this.#greetingWaiter?.reject(this.#closedError("the greeting"));
    this.#greetingWaiter = undefined;
    for (const p of this.#pending.values()) p.reject(this.#closedError(p.command));
    this.#pending.clear();
    for (const w of [...this.#waiters]) w.ended(this.#closedError(w.what));
    this.#waiters.clear();
  }

  #handleLine(line: string): void {
    let msg: unknown;
    try {
      msg = parseJson(line);
    } catch (e) {
      this.#record("recv", line);
      this.#record("note", `unparsable line ignored: ${errorMessage(e)}`);
      return;
    }
    const id = isObject(msg) && typeof msg.id === "string" ? msg.id : undefined;
    if (!(id !== undefined && this.#pending.get(id)?.untraced)) this.#record("recv", line);
    if (!isObject(msg)) {
      this.#record("note", "non-object line ignored");
    } else if (isObject(msg.QMP)) {
      this.#greeting = msg as unknown as QmpGreeting;
      this.#greetingWaiter?.resolve(this.#greeting);
      this.#greetingWaiter = undefined;
    } else if (typeof msg.event === "string") {
      this.#onEventMsg(msg);
    } else if ("return" in msg || "error" in msg) {
      const p = typeof msg.id === "string" ? this.#pending.get(msg.id) : undefined;
      if (!p) {
        this.#record("note", "reply matches no pending command (late, or id-less error)");
        return;
      }
      this.#pending.delete(msg.id as string);
      if ("return" in msg) p.resolve({ return: msg.return });
      else {
        const err = isObject(msg.error) ? msg.error : {};
        p.resolve({ error: { class: String(err.class ?? "GenericError"), desc: String(err.desc ?? "") } });
      }
    } else {
      this.#record("note", "unrecognized message ignored");
    }
  }

  #onEventMsg(msg: Record<string, unknown>): void {
    const ts = isObject(msg.timestamp) ? msg.timestamp : {};
    const e: QmpEvent = {
      event: msg.event as string,
      data: isObject(msg.data) ? msg.data : {},
      timestamp: { seconds: Number(ts.seconds ?? 0), microseconds: Number(ts.microseconds ?? 0) },
      index: this.#events.length,
    };
    this.#events.push(e);
    for (const cb of this.#listeners) {
      try {
        cb(e);
      } catch (err) {
        this.#record("note", `event listener threw: ${errorMessage(err)}`);
      }
    }
    for (const w of [...this.#waiters]) {
      try {
        w.arrived(e, e.index);
      } catch (err) {
        this.#record("note", `event watcher threw: ${errorMessage(err)}`);
      }
    }
  }
}
