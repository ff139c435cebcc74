/**
 * A client for QEMU's qtest text protocol (`-qtest unix:PATH`), the subset the migration tests use:
 * `readb ADDR`, `readq ADDR`, `read ADDR SIZE` and `writeq ADDR VALUE`, one command per line, hex numbers.
 * Replies are one line each, in order: `OK [VALUE]` or `FAIL reason`. QEMU may interleave asynchronous
 * `IRQ raise|lower N` lines (only after `irq_intercept_*`, which we never send); they are skipped.
 *
 * Who listens differs between the two peers:
 * - qemu-system-x86_64 (checked on 7.2) parses `-qtest unix:PATH` as a *client* chardev: it connects to
 *   PATH during startup and exits with "Failed to connect to 'PATH'" if nobody listens. So the harness
 *   listens first (`QtestClient.listen`), like libqtest, then spawns QEMU and accepts.
 * - Our engine (`engine/main.ts --qtest unix:PATH`) is the server; `QtestClient.connect` retries until
 *   its socket accepts.
 *
 * Replies carry no id, so they match requests only by order. A request that times out therefore leaves
 * the stream out of step: the client then closes itself and fails everything pending, instead of handing
 * a late reply to the next caller. Requests may be issued concurrently; they are pipelined.
 */
import { errorMessage } from "../engine/error.ts";
import { setTimeout as sleep } from "node:timers/promises";

export interface QtestOptions {
  /** Side name used in errors (e.g. "source", "target"). */
  name: string;
  /** Default bound for connecting and for every request. */
  timeoutMs?: number;
}

export interface QtestRequestOptions {
  timeoutMs?: number;
}

export class QtestTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QtestTimeoutError";
  }
}

export class QtestClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QtestClosedError";
  }
}

/** A `FAIL ...` reply. */
export class QtestCommandError extends Error {
  constructor(readonly side: string, readonly command: string, readonly reply: string) {
    super(`${side}: qtest '${command}' failed: ${reply}`);
    this.name = "QtestCommandError";
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Commands per write in `readbMany`: keeps single writes small while still pipelining everything. */
const BATCH_LINES = 4096;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Addr = number | bigint;

function hex(v: Addr, what: string): string {
  const b = BigInt(v);
  if (b < 0n || b > 0xffff_ffff_ffff_ffffn) throw new RangeError(`qtest: ${what} ${v} is not a u64`);
  return `0x${b.toString(16)}`;
}

/** `OK 0x...` → the value; throws on anything else. */
function okValue(side: string, command: string, reply: string): bigint {
  const m = /^OK 0x([0-9a-fA-F]+)$/.exec(reply);
  if (!m) throw new Error(`${side}: qtest '${command}': unexpected reply '${brief(reply)}'`);
  return BigInt(`0x${m[1]}`);
}

function brief(s: string, max = 120): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s;
}

interface Pending {
  /** What the error messages call this request (the command, or a summary for a batch). */
  label: string;
  /** The command lines sent, to name the one that failed. */
  lines: string[];
  /** Reply lines still expected. */
  left: number;
  replies: string[];
  resolve(replies: string[]): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class QtestClient {
  readonly name: string;
  readonly path: string;
  readonly timeoutMs: number;
  readonly #conn: Deno.Conn;
  /** FIFO of requests awaiting replies; `#head` indexes the oldest. */
  #queue: (Pending | undefined)[] = [];
  #head = 0;
  #writes: Promise<void> = Promise.resolve();
  #closedReason: string | undefined;
  #closing: Promise<void> | undefined;
  readonly #readLoop: Promise<void>;

  private constructor(conn: Deno.Conn, path: string, opts: QtestOptions) {
    this.#conn = conn;
    this.path = path;
    this.name = opts.name;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#readLoop = this.#read();
  }

  /** Connects to a qtest server at `path` (our engine), retrying until it accepts within `timeoutMs`. */
  static async connect(path: string, opts: QtestOptions): Promise<QtestClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    while (true) {
      try {
        const conn = await Deno.connect({ transport: "unix", path });
        return new QtestClient(conn, path, opts);
      } catch (e) {
        // Not bound yet, or a stale file from an earlier run.
        if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused)) throw e;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new QtestTimeoutError(
            `${opts.name}: timed out after ${timeoutMs}ms connecting to qtest socket ${path} (${e.message})`,
          );
        }
        await sleep(Math.min(20, left));
      }
    }
  }

  /**
   * Listens on `path` for a QEMU started with `-qtest unix:PATH` (QEMU is the connecting side). Call
   * before spawning QEMU; a stale file at `path` is removed first.
   */
  static listen(path: string, opts: QtestOptions): QtestListener {
    return new QtestListener(path, opts);
  }

  /** @internal Wraps an accepted connection (used by QtestListener). */
  static fromConn(conn: Deno.Conn, path: string, opts: QtestOptions): QtestClient {
    return new QtestClient(conn, path, opts);
  }

  get closed(): boolean {
    return this.#closedReason !== undefined;
  }

  /** One byte of guest-physical memory. */
  async readb(addr: Addr, opts?: QtestRequestOptions): Promise<number> {
    const cmd = `readb ${hex(addr, "address")}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    return Number(okValue(this.name, cmd, reply) & 0xffn);
  }

  /** A little-endian u64 of guest-physical memory. */
  async readq(addr: Addr, opts?: QtestRequestOptions): Promise<bigint> {
    const cmd = `readq ${hex(addr, "address")}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    return okValue(this.name, cmd, reply);
  }

  /** `size` bytes of guest-physical memory (the reply is hex, so 2 bytes on the wire per byte). */
  async read(addr: Addr, size: number, opts?: QtestRequestOptions): Promise<Uint8Array> {
    if (!Number.isSafeInteger(size) || size <= 0) {
      // QEMU asserts on a zero size instead of replying FAIL; never send one.
      throw new RangeError(`${this.name}: qtest read: size must be a positive integer, got ${size}`);
    }
    const cmd = `read ${hex(addr, "address")} ${hex(size, "size")}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    const m = /^OK 0x([0-9a-fA-F]*)$/.exec(reply);
    if (!m || m[1].length !== size * 2) {
      throw new Error(`${this.name}: qtest '${cmd}': unexpected reply '${brief(reply)}'`);
    }
    return Uint8Array.fromHex(m[1]);
  }

  /** Writes a little-endian u64 to guest-physical memory. */
  async writeq(addr: Addr, value: Addr, opts?: QtestRequestOptions): Promise<void> {
    const cmd = `writeq ${hex(addr, "address")} ${hex(value, "value")}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    if (reply !== "OK") throw new Error(`${this.name}: qtest '${cmd}': unexpected reply '${brief(reply)}'`);
  }

  /** Writes `data` to guest-physical memory (`write ADDR SIZE 0xHEX`). */
  async write(addr: Addr, data: Uint8Array, opts?: QtestRequestOptions): Promise<void> {
    if (data.length === 0) throw new RangeError(`${this.name}: qtest write: nothing to write`);
    const cmd = `write ${hex(addr, "address")} ${hex(data.length, "size")} 0x${data.toHex()}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    if (reply !== "OK") {
      throw new Error(`${this.name}: qtest '${brief(cmd)}': unexpected reply '${brief(reply)}'`);
    }
  }

  /** Writes `data` as base64 (`b64write ADDR SIZE B64`): a third less on the wire than `write`'s hex. */
  async b64write(addr: Addr, data: Uint8Array, opts?: QtestRequestOptions): Promise<void> {
    if (data.length === 0) throw new RangeError(`${this.name}: qtest b64write: nothing to write`);
    const cmd = `b64write ${hex(addr, "address")} ${hex(data.length, "size")} ${data.toBase64()}`;
    const [reply] = await this.#request(cmd, [cmd], opts);
    if (reply !== "OK") {
      throw new Error(`${this.name}: qtest '${brief(cmd)}': unexpected reply '${brief(reply)}'`);
    }
  }

  /**
   * One byte at each address, pipelined (all `readb` lines are sent before the first reply is awaited).
   * For sparse reads such as the first byte of every page: 25,344 pages cost about 0.5 MB of traffic,
   * where one `read` over the range would move 200 MB of hex. One timeout bounds the whole batch.
   */
  async readbMany(addrs: readonly Addr[], opts?: QtestRequestOptions): Promise<Uint8Array> {
    const out = new Uint8Array(addrs.length);
    if (addrs.length === 0) return out;
    const lines = addrs.map((a) => `readb ${hex(a, "address")}`);
    const label = `readb x${addrs.length} (${lines[0].slice(6)} .. ${lines[lines.length - 1].slice(6)})`;
    const replies = await this.#request(label, lines, opts);
    for (let i = 0; i < replies.length; i++) {
      out[i] = Number(okValue(this.name, lines[i], replies[i]) & 0xffn);
    }
    return out;
  }

  /** Closes the connection and fails everything pending. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closedReason ??= "local";
      try {
        this.#conn.close();
      } catch {
        // The read loop closed it already.
      }
      await this.#readLoop;
      await this.#writes;
    })();
    return this.#closing;
  }

  #closedError(what: string): QtestClosedError {
    return this.#closedReason === "local"
      ? new QtestClosedError(`${this.name}: qtest client was closed while waiting for '${what}'`)
      : new QtestClosedError(
        `${this.name}: qtest connection closed while waiting for '${what}' (${this.#closedReason})`,
      );
  }

  /** Sends `lines` and resolves with as many reply lines; rejects on FAIL, timeout or close. */
  #request(label: string, lines: string[], opts?: QtestRequestOptions): Promise<string[]> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    return new Promise<string[]>((resolve, reject) => {
      if (this.#closedReason) return reject(this.#closedError(label));
      const p: Pending = {
        label,
        lines,
        left: lines.length,
        replies: [],
        resolve,
        reject,
        timer: setTimeout(() => {
          // Order is all that pairs replies with requests: after a lost reply nothing can be trusted.
          this.#closedReason ??= `timed out after ${timeoutMs}ms waiting for the reply to '${label}'`;
          p.reject(
            new QtestTimeoutError(
              `${this.name}: qtest: timed out after ${timeoutMs}ms waiting for the reply to '${label}'` +
                ` (${p.replies.length}/${lines.length} reply lines received); connection closed`,
            ),
          );
          p.reject = () => {};
          void this.close();
        }, timeoutMs),
      };
      this.#queue.push(p);
      this.#write(lines).catch((e) => {
        this.#closedReason ??= `write failed: ${errorMessage(e)}`;
        void this.close();
      });
    });
  }

  #write(lines: string[]): Promise<void> {
    const w = this.#writes.then(async () => {
      for (let i = 0; i < lines.length; i += BATCH_LINES) {
        const bytes = encoder.encode(lines.slice(i, i + BATCH_LINES).join("\n") + "\n");
        let off = 0;
        while (off < bytes.length) {
          if (this.#closedReason) throw new Error("connection closed");
          off += await this.#conn.write(bytes.subarray(off));
        }
      }
    });
    // Keep the chain usable after a failure; the caller sees it through `w`.
    this.#writes = w.catch(() => {});
    return w;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    // Bytes of the current, unterminated line (a `read` reply can be megabytes long).
    let parts: Uint8Array[] = [];
    let reason = "end of stream";
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        let start = 0;
        while (start < n) {
          const nl = buf.subarray(start, n).indexOf(10);
          if (nl < 0) {
            parts.push(buf.slice(start, n));
            break;
          }
          const end = start + nl;
          let line: string;
          if (parts.length === 0) line = decoder.decode(buf.subarray(start, end));
          else {
            parts.push(buf.slice(start, end));
            const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
            let o = 0;
            for (const p of parts) {
              all.set(p, o);
              o += p.length;
            }
            line = decoder.decode(all);
            parts = [];
          }
          start = end + 1;
          this.#onLine(line.trimEnd());
        }
      }
    } catch (e) {
      reason = errorMessage(e);
    }
    this.#closedReason ??= reason;
    try {
      this.#conn.close();
    } catch {
      // close() got there first.
    }
    for (let i = this.#head; i < this.#queue.length; i++) {
      const p = this.#queue[i];
      if (!p) continue;
      clearTimeout(p.timer);
      p.reject(this.#closedError(p.label));
    }
    this.#queue = [];
    this.#head = 0;
  }

  #onLine(line: string): void {
    // Asynchronous interrupt notifications are not replies.
    if (line.startsWith("IRQ")) return;
    const p = this.#queue[this.#head];
    if (!p) return; // Nothing pending (e.g. after a timeout closed us): drop.
    p.replies.push(line);
    if (--p.left > 0) return;
    this.#queue[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    clearTimeout(p.timer);
    const failed = p.replies.findIndex((r) => !r.startsWith("OK"));
    if (failed >= 0) {
      p.reject(new QtestCommandError(this.name, p.lines[failed], p.replies[failed]));
    } else p.resolve(p.replies);
  }
}

/** A listening qtest socket that QEMU connects to (see QtestClient.listen). */
export class QtestListener {
  readonly path: string;
  readonly #opts: QtestOptions;
  readonly #listener: Deno.Listener;
  #closed = false;

  constructor(path: string, opts: QtestOptions) {
    this.path = path;
    this.#opts = opts;
    try {
      Deno.removeSync(path);
    } catch {
      // No stale socket.
    }
    this.#listener = Deno.listen({ transport: "unix", path });
  }

  /**
   * Accepts the one connection QEMU makes, then stops listening and unlinks the socket file (as libqtest
   * does). Rejects after `timeoutMs` (default: the options' timeout), or early when `abort` rejects
   * (e.g. the process exited during startup).
   */
  async accept(
    timeoutMs = this.#opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    abort?: Promise<never>,
  ): Promise<QtestClient> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const accepting = this.#listener.accept();
    try {
      const conn = await Promise.race([
        accepting,
        new Promise<never>((_, rej) =>
          timer = setTimeout(
            () =>
              rej(
                new QtestTimeoutError(
                  `${this.#opts.name}: timed out after ${timeoutMs}ms waiting for QEMU to connect to ` +
                    `qtest socket ${this.path}`,
                ),
              ),
            timeoutMs,
          )
        ),
        ...(abort ? [abort] : []),
      ]);
      return QtestClient.fromConn(conn, this.path, this.#opts);
    } catch (e) {
      // If the accept is still pending, closing the listener settles it; drop a late connection.
      await this.close();
      await accepting.then((c) => c.close(), () => {});
      throw e;
    } finally {
      clearTimeout(timer);
      await this.close();
    }
  }

  /** Stops listening and removes the socket file. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // Already closed.
      }
      try {
        Deno.removeSync(this.path);
      } catch {
        // Already gone.
      }
    }
    return Promise.resolve();
  }
}
