/**
 * A proxy on the wire between the two sides: the source connects to it, it connects to the destination
 * and relays every connection both ways, and on the connection a fault names it breaks what the source
 * sends — a corrupted byte at an offset, the stream cut there (both directions closed, as a broken link),
 * a multifd channel held once or slowed on every read. This is how a world without the model's
 * x-test-inject-fault (real QEMU) gets byte and channel faults: QEMU writes the stream, the proxy breaks
 * it, QEMU must refuse it or survive it.
 *
 * A connection is told by its first bytes, as QEMU's destination tells them: the main channel starts with
 * the stream's magic "QEVM", a multifd channel with its handshake (magic 0x11223344, the channel's id at
 * byte 24). Only faults whose place is the same in every stream go on the wire (`wireFaultOf`): on the
 * main channel a cut anywhere, or a corrupted byte of the header (magic 0–3, version 4–7) or of the first
 * section's type (8), or a place the fault names (StreamPoint: the RAM setup's MEM_SIZE flags, a block's
 * length), which the proxy finds in the stream's first bytes; on a multifd channel a byte of the handshake
 * or of the first packet's magic and version (0–71), and the receiving side's delays. Other offsets name
 * places in the model's own layout.
 */
import type { FaultSpec, SideId, StreamPoint } from "./case.ts";

/** The bytes every main stream has at the same offset: the header and the type of the section after it. */
const MAIN_PORTABLE = 9;
/** A multifd channel's handshake (64 bytes) and its first packet's magic and version. */
const MULTIFD_PORTABLE = 72;
const QEVM = 0x5145564d;
const MULTIFD_MAGIC = 0x11223344;
/** A multifd handshake's channel id. */
const MULTIFD_ID_OFFSET = 24;
/** Enough of a connection's first bytes to tell which it is. */
const ROLE_BYTES = MULTIFD_ID_OFFSET + 1;

/** Which connection a fault acts on: the main channel, or the multifd channel of that id. */
export type WireChannel = "main" | number;

/** A fault as the proxy applies it. */
export type WireFault =
  /** `offset` a number, or a named place the proxy finds in the stream's first bytes. */
  | { kind: "corrupt"; channel: WireChannel; offset: number | StreamPoint; xor: number }
  | { kind: "truncate"; channel: WireChannel; offset: number }
  /** The channel's data (after its handshake) held once for `delayMs`: the destination reads it late. */
  | { kind: "delay"; channel: number; delayMs: number }
  /** Every read of the channel's data held `delayMs`: a slow path. */
  | { kind: "slow"; channel: number; delayMs: number };

/**
 * The wire form of a fault injected on `side` (offsets resolved from the seed), or null when its place
 * is the model's own (a structural record, an offset in the model's layout) and only x-test can make it.
 */
export function wireFaultOf(f: FaultSpec, side: SideId, seed: number): WireFault | null {
  const offset = typeof f.offset === "function" ? f.offset(seed) : f.offset;
  if (side === "dst") {
    if (f.channel === undefined || f.delayMs === undefined) return null;
    if (f.kind === "multifd-channel-delay") return { kind: "delay", channel: f.channel, delayMs: f.delayMs };
    if (f.kind === "multifd-channel-slow") return { kind: "slow", channel: f.channel, delayMs: f.delayMs };
    return null;
  }
  if (f.kind === "corrupt" && f.at && f.channel === undefined) {
    return { kind: "corrupt", channel: "main", offset: f.at, xor: f.xor ?? 0xff };
  }
  if ((f.kind !== "corrupt" && f.kind !== "truncate") || offset === undefined) return null;
  const channel: WireChannel = f.channel ?? "main";
  const portable = channel === "main" ? (f.kind === "truncate" ? Infinity : MAIN_PORTABLE) : MULTIFD_PORTABLE;
  if (offset >= portable) return null;
  return f.kind === "truncate"
    ? { kind: "truncate", channel, offset }
    : { kind: "corrupt", channel, offset, xor: f.xor ?? 0xff };
}

/** Whether the fault can go on the wire (the same for every seed: only an offset's range decides). */
export function isWireFault(f: FaultSpec, side: SideId): boolean {
  return wireFaultOf(f, side, 0) !== null;
}

type Address = { transport: "unix"; path: string } | { transport: "tcp"; hostname: string; port: number };

function parseUri(uri: string): Address {
  if (uri.startsWith("unix:")) return { transport: "unix", path: uri.slice(5) };
  const m = /^tcp:(.+):(\d+)$/.exec(uri);
  if (m) return { transport: "tcp", hostname: m[1], port: Number(m[2]) };
  throw new Error(`the wire proxy relays unix: and tcp: URIs, not '${uri}'`);
}

/** What a connection is, from its first bytes. */
export function connectionRole(first: Uint8Array): WireChannel | "other" {
  if (first.length < 4) return "other";
  const magic = new DataView(first.buffer, first.byteOffset, 4).getUint32(0);
  if (magic === QEVM) return "main";
  if (magic === MULTIFD_MAGIC && first.length > MULTIFD_ID_OFFSET) return first[MULTIFD_ID_OFFSET];
  return "other";
}

/** How far into the main stream the proxy looks for a named place (the RAM setup comes first). */
const POINT_SEARCH = 64 * 1024;

/**
 * Where `point` is in a main stream's first bytes, or null when they do not reach it yet. The RAM
 * section's start header is found by its shape — SECTION_START (0x01), a be32 section id, "ram" as a
 * counted string, be32 instance and version — and after it come the be64 MEM_SIZE word and the block
 * list (a counted idstr, then the be64 length), in every QEMU stream and in the model's.
 */
export function findStreamPoint(stream: Uint8Array, point: StreamPoint): number | null {
  const ram = [0x03, 0x72, 0x61, 0x6d];
  let at = -1;
  for (let i = 5; i + 4 <= stream.length; i++) {
    if (stream[i - 5] === 0x01 && ram.every((b, k) => stream[i + k] === b)) {
      at = i;
      break;
    }
  }
  if (at < 0) return null;
  const memSize = at + 4 + 8;
  if (point.point === "mem-size-flags") return memSize + 7 < stream.length ? memSize + 7 : null;
  const name = new TextEncoder().encode(point.block);
  for (let i = memSize + 8; i + 1 + name.length + 8 <= stream.length; i++) {
    if (stream[i] === name.length && name.every((b, k) => stream[i + 1 + k] === b)) {
      return i + 1 + name.length + point.byte;
    }
  }
  return null;
}

/** What the proxy saw, for the case's log. */
export interface WireReport {
  connections: number;
  /** Each connection's role and the bytes the source sent through it (up to a cut). */
  channels: { role: string; bytes: number }[];
  /** The faults whose place the stream reached. */
  applied: number;
  /** What went wrong in the proxy itself (a named place it could not find). */
  problems?: string[];
}

export class WireProxy {
  readonly uri: string;
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #relays: Promise<void>[] = [];
  readonly #accepting: Promise<void>;
  readonly #channels: { role: string; bytes: number }[] = [];
  readonly #applied = new Set<WireFault>();
  readonly #problems: string[] = [];
  #closed = false;

  private constructor(
    listener: Deno.Listener,
    uri: string,
    readonly target: Address,
    readonly faults: readonly WireFault[],
  ) {
    this.#listener = listener;
    this.uri = uri;
    this.#accepting = this.#accept();
  }

  /**
   * Listens beside `targetUri` (a unix socket at `path`, or TCP on 127.0.0.1 when the target is TCP) and
   * relays to it, applying `faults`.
   */
  static start(targetUri: string, path: string, faults: readonly WireFault[]): WireProxy {
    const target = parseUri(targetUri);
    if (target.transport === "unix") {
      return new WireProxy(Deno.listen({ transport: "unix", path }), `unix:${path}`, target, faults);
    }
    const listener = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
    return new WireProxy(listener, `tcp:127.0.0.1:${(listener.addr as Deno.NetAddr).port}`, target, faults);
  }

  report(): WireReport {
    return {
      connections: this.#channels.length,
      channels: this.#channels.map((c) => ({ ...c })),
      applied: this.#applied.size,
      ...(this.#problems.length ? { problems: [...this.#problems] } : {}),
    };
  }

  async #accept(): Promise<void> {
    try {
      for await (const from of this.#listener) {
        this.#conns.add(from);
        this.#relays.push(this.#relay(from));
      }
    } catch (e) {
      if (!this.#closed) throw e;
    }
  }

  async #relay(from: Deno.Conn): Promise<void> {
    let to: Deno.Conn;
    try {
      to = this.target.transport === "unix"
        ? await Deno.connect({ transport: "unix", path: this.target.path })
        : await Deno.connect({ transport: "tcp", hostname: this.target.hostname, port: this.target.port });
    } catch {
      // The destination is gone: the source sees its connection closed.
      this.#drop(from);
      return;
    }
    this.#conns.add(to);
    await Promise.allSettled([this.#forward(from, to), this.#pump(to, from)]);
    this.#drop(from);
    this.#drop(to);
  }

  /** Replies, untouched. */
  async #pump(a: Deno.Conn, b: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await a.read(buf);
        if (n === null) break;
        await writeAll(b, buf.subarray(0, n));
      }
      await b.closeWrite().catch(() => {});
    } catch {
      // Either end went away: the relay drops both.
    }
  }

  /** What the source sends: its first bytes say which connection it is, then that one's faults apply. */
  async #forward(a: Deno.Conn, b: Deno.Conn): Promise<void> {
    const entry = { role: "other", bytes: 0 };
    this.#channels.push(entry);
    const buf = new Uint8Array(64 * 1024);
    let held: Uint8Array = new Uint8Array(0);
    let faults: WireFault[] | null = null;
    let at = 0;
    try {
      while (true) {
        const n = await a.read(buf);
        if (n === null) break;
        let chunk: Uint8Array = buf.subarray(0, n);
        if (!faults) {
          // Hold the first bytes until they say which connection this is, and where its named places are.
          held = concat(held, chunk);
          if (held.length < ROLE_BYTES) continue;
          const role = connectionRole(held);
          entry.role = role === "main" ? "main" : role === "other" ? "other" : `multifd ${role}`;
          const mine = this.faults.filter((f) => f.channel === role);
          const resolved = resolvePoints(mine, held);
          if (!resolved) {
            if (held.length < POINT_SEARCH) continue;
            this.#problems.push(
              `${entry.role}: a named place of ${JSON.stringify(mine)} is not in its first ` +
                `${held.length} bytes; the connection was dropped`,
            );
            throw new Error("named place not found");
          }
          faults = resolved;
          chunk = held;
        }
        if (!await this.#apply(faults, chunk, at, b, a, entry)) return;
        at += chunk.length;
      }
      if (!faults && held.length) await writeAll(b, held);
      await b.closeWrite().catch(() => {});
    } catch {
      // Either end went away: the relay drops both.
    }
  }

  /** Sends `chunk` (stream offset `at`) through the faults; false when a cut ended the connection. */
  async #apply(
    faults: WireFault[],
    chunk: Uint8Array,
    at: number,
    to: Deno.Conn,
    from: Deno.Conn,
    entry: { bytes: number },
  ): Promise<boolean> {
    const end = at + chunk.length;
    for (const f of faults) {
      switch (f.kind) {
        case "corrupt":
          if (typeof f.offset === "number" && f.offset >= at && f.offset < end) {
            chunk[f.offset - at] ^= f.xor;
            this.#applied.add(f);
          }
          break;
        case "truncate":
          if (f.offset >= at && f.offset < end) {
            this.#applied.add(f);
            const kept = chunk.subarray(0, f.offset - at);
            if (kept.length) await writeAll(to, kept);
            entry.bytes = f.offset;
            // The link breaks: both ends see their connection closed.
            this.#drop(from);
            this.#drop(to);
            return false;
          }
          break;
        case "delay":
        case "slow":
          // Past the handshake: the channel's data.
          if (end > 64 && (f.kind === "slow" || !this.#applied.has(f))) {
            this.#applied.add(f);
            await new Promise((r) => setTimeout(r, f.delayMs));
          }
          break;
      }
    }
    entry.bytes = end;
    await writeAll(to, chunk);
    return true;
  }

  #drop(c: Deno.Conn): void {
    if (!this.#conns.delete(c)) return;
    try {
      c.close();
    } catch {
      // Already closed.
    }
  }

  /** Stops listening and closes every relayed connection; waits for the relays to end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const c of [...this.#conns]) this.#drop(c);
    await this.#accepting.catch(() => {});
    await Promise.allSettled(this.#relays);
  }
}

/** The faults with their named places as offsets, or null while `held` does not reach one yet. */
function resolvePoints(faults: WireFault[], held: Uint8Array): WireFault[] | null {
  const out: WireFault[] = [];
  for (const f of faults) {
    if (f.kind !== "corrupt" || typeof f.offset === "number") {
      out.push(f);
      continue;
    }
    const offset = findStreamPoint(held, f.offset);
    if (offset === null) return null;
    out.push({ ...f, offset });
  }
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function writeAll(c: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await c.write(data.subarray(off));
}
