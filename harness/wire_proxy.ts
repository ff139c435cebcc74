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
import { type ColoWirePlace, ColoWireTracker, FORWARD_PLACES } from "./wire_colo.ts";
import type { StreamMutator } from "./wire_mutate.ts";

/**
 * A place of a connection's return path or of a postcopy recovery's handshake, before the message that
 * names it: the destination's RP_SWITCHOVER_ACK, its first RP_RECV_BITMAP, its RP_RESUME_ACK; the
 * source's MIG_CMD_POSTCOPY_RESUME (it has reloaded every bitmap).
 */
export type ReturnPathPlace = "switchover-ack" | "recv-bitmap" | "resume-ack" | "postcopy-resume";
/** A place the proxy can hold a connection at. */
export type WirePlace = ColoWirePlace | ReturnPathPlace;
/** A place reached in the chunk just read, `at` bytes in; `checkpoint` counts COLO checkpoints (else 0). */
export interface WireMark {
  place: WirePlace;
  checkpoint: number;
  at: number;
}

/** QEMU's return-path message types (enum mig_rp_message_type) the proxy names. */
const RP_RECV_BITMAP = 5;
const RP_PLACES: Record<number, ReturnPathPlace> = {
  [RP_RECV_BITMAP]: "recv-bitmap",
  6: "resume-ack",
  7: "switchover-ack",
};
/** QEMU_VM_COMMAND and the command a recovery's handshake ends with (MIG_CMD_POSTCOPY_RESUME). */
const VM_COMMAND = 0x08;
const CMD_POSTCOPY_RESUME = 9;
/** The places in what the source sends (the others are in the destination's answers). */
const SOURCE_PLACES: ReadonlySet<string> = new Set([...FORWARD_PLACES, "postcopy-resume"]);

/**
 * The destination's side of a main connection with return-path: messages of a be16 type, a be16 length
 * and that many bytes. Only its places are reported.
 */
export class ReturnPathTracker {
  #buf: Uint8Array = new Uint8Array(0);

  back(chunk: Uint8Array): WireMark[] {
    const marks: WireMark[] = [];
    const start = this.#buf.length;
    this.#buf = concat(this.#buf, chunk);
    const v = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    let off = 0;
    while (off + 4 <= this.#buf.length) {
      const type = v.getUint16(off);
      let end = off + 4 + v.getUint16(off + 2);
      if (type === RP_RECV_BITMAP) {
        // The bitmap follows outside the message: a be64 size, that many bytes, a be64 end marker.
        if (end + 8 > this.#buf.length) break;
        end += 8 + Number(v.getBigUint64(end)) + 8;
      }
      if (end > this.#buf.length) break;
      const place = RP_PLACES[type];
      if (place) marks.push({ place, checkpoint: 0, at: Math.max(0, off - start) });
      off = end;
    }
    this.#buf = this.#buf.slice(off);
    return marks;
  }
}

/**
 * The source's side of a postcopy recovery's new main channel: it starts with commands (QEMU_VM_COMMAND,
 * a be16 command, a be16 length, that many bytes: RECV_BITMAP for each block), and POSTCOPY_RESUME ends
 * the handshake; what follows (pages) is not read.
 */
export class RecoveryTracker {
  #buf: Uint8Array = new Uint8Array(0);
  #done = false;

  forward(chunk: Uint8Array): WireMark[] {
    if (this.#done) return [];
    const start = this.#buf.length;
    this.#buf = concat(this.#buf, chunk);
    const v = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    let off = 0;
    while (off + 5 <= this.#buf.length) {
      if (this.#buf[off] !== VM_COMMAND) {
        this.#done = true;
        return [];
      }
      if (v.getUint16(off + 1) === CMD_POSTCOPY_RESUME) {
        this.#done = true;
        return [{ place: "postcopy-resume", checkpoint: 0, at: Math.max(0, off - start) }];
      }
      const len = v.getUint16(off + 3);
      if (off + 5 + len > this.#buf.length) break;
      off += 5 + len;
    }
    this.#buf = this.#buf.slice(off);
    return [];
  }
}

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
  | { kind: "truncate"; channel: WireChannel; offset: number | StreamPoint }
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
  if (f.at) {
    // A named place: the proxy finds it in what the source sends on that channel (a multifd place
    // with no channel named: channel 0).
    const channel: WireChannel = f.channel ?? (f.at.point.startsWith("multifd-") ? 0 : "main");
    if (f.kind === "truncate") return { kind: "truncate", channel, offset: f.at };
    return { kind: "corrupt", channel, offset: f.at, xor: f.xor ?? 0xff };
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
  // A postcopy recovery's main channel has no header: its first bytes are a command.
  if (first[0] === VM_COMMAND) return "main";
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
  if (point.point === "multifd-offset" || point.point === "multifd-payload") {
    const at = findMultifdPages(stream);
    if (!at) return null;
    const where = point.point === "multifd-offset" ? at.offsets : at.payload;
    return where + point.byte < stream.length ? where + point.byte : null;
  }
  if (point.point === "machine-type") {
    // QEMU_VM_CONFIGURATION after the header, then the name's be32 length and its bytes.
    if (stream.length < 13 || stream[8] !== 0x07) return null;
    const len = new DataView(stream.buffer, stream.byteOffset + 9, 4).getUint32(0);
    return point.byte < len && 13 + point.byte < stream.length ? 13 + point.byte : null;
  }
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
  if (point.point === "ram-first-record" || point.point === "ram-setup-footer") {
    const after = afterRamSetup(stream, memSize);
    const at = point.point === "ram-first-record" ? after?.record : after?.footer;
    return at != null && at + point.byte < stream.length ? at + point.byte : null;
  }
  if (point.point !== "block-length") return memSize + 7 < stream.length ? memSize + 7 : null;
  const name = new TextEncoder().encode(point.block);
  for (let i = memSize + 8; i + 1 + name.length + 8 <= stream.length; i++) {
    if (stream[i] === name.length && name.every((b, k) => stream[i + 1 + k] === b)) {
      return i + 1 + name.length + point.byte;
    }
  }
  return null;
}

/**
 * Where the RAM setup ends: past the block list (a counted name and a be64 length per block, until the
 * lengths add up to MEM_SIZE) and its EOS come the section's footer (0x7e, be32 id) and then the first
 * part section (QEMU_VM_SECTION_PART, be32 id) with the first page record. Null while the stream does
 * not reach them, or when it has another shape (a block list with extra fields: ignore-shared, mapped-ram).
 */
function afterRamSetup(stream: Uint8Array, memSize: number): { footer: number; record: number } | null {
  const v = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  if (memSize + 8 > stream.length) return null;
  const total = v.getBigUint64(memSize) & ~0xfffn;
  let pos = memSize + 8;
  for (let sum = 0n; sum < total;) {
    if (pos >= stream.length) return null;
    pos += 1 + stream[pos];
    if (pos + 8 > stream.length) return null;
    sum += v.getBigUint64(pos);
    pos += 8;
  }
  if (pos + 8 > stream.length || v.getBigUint64(pos) !== 0x10n) return null;
  const footer = pos + 8;
  if (footer + 5 > stream.length || stream[footer] !== 0x7e) return null;
  const part = footer + 5;
  if (part + 5 > stream.length || stream[part] !== 0x02) return null;
  return { footer, record: part + 5 };
}

/** A multifd packet's fixed part: magic, version, flags, pages_alloc, normal_pages, next_packet_size,
 * packet_num, reserved words (10.0: zero_pages among them), the block's name; then pages_alloc be64
 * offsets. The same size in 7.2 and 10.0. */
const MULTIFD_PACKET_FIXED = 64 + 256;
/** A packet's page slots on x86 (512 KiB of 4 KiB pages): its offsets array, even when unused. */
const MULTIFD_PAGES_PER_PACKET = 128;
/** The compression methods' packet flags (zlib, zstd, and the accelerators' after them). */
const MULTIFD_FLAG_COMPRESSION = 0xe;

/**
 * Where a multifd channel's first packet with pages has its offsets and its payload: packets are read
 * from the end of the handshake, each its fixed part, its offsets, then its payload (next_packet_size
 * bytes when compressed, else a page per normal page).
 */
export function findMultifdPages(stream: Uint8Array): { offsets: number; payload: number } | null {
  return multifdPagesSearch(stream).found;
}

/** The search of findMultifdPages, and how far it got: the packets before `parsed` carry no pages. */
function multifdPagesSearch(
  stream: Uint8Array,
): { found: { offsets: number; payload: number } | null; parsed: number } {
  const v = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  let at = 64;
  while (at + MULTIFD_PACKET_FIXED <= stream.length) {
    if (v.getUint32(at) !== MULTIFD_MAGIC) break;
    const flags = v.getUint32(at + 8);
    // A SYNC packet of 10.0 leaves pages_alloc 0 but has the same length as the others.
    const alloc = v.getUint32(at + 12) || MULTIFD_PAGES_PER_PACKET;
    const normal = v.getUint32(at + 16);
    const offsets = at + MULTIFD_PACKET_FIXED;
    const payload = offsets + 8 * alloc;
    if (normal > 0) return { found: { offsets, payload }, parsed: at };
    at = payload + (flags & MULTIFD_FLAG_COMPRESSION ? v.getUint32(at + 20) : 0);
  }
  return { found: null, parsed: Math.min(at, stream.length) };
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
  readonly #holds: WireHold[] = [];
  /** The main connection's COLO checkpoints, once one is held for. */
  #colo: ColoWireTracker | null = null;
  #closed = false;

  private constructor(
    listener: Deno.Listener,
    uri: string,
    readonly target: Address,
    readonly faults: readonly WireFault[],
    /** Track COLO checkpoints on the main connection (holdColo). */
    readonly colo: boolean,
    /** Track the main connection's return path (holdReturnPath). */
    readonly returnPath: boolean,
    /** The fuzzer's edits on one connection (by the order they come); every connection then relays plainly. */
    readonly mutator: StreamMutator | null = null,
  ) {
    this.#listener = listener;
    this.uri = uri;
    this.#accepting = this.#accept();
  }

  /**
   * Listens beside `targetUri` (a unix socket at `path`, or TCP on 127.0.0.1 when the target is TCP) and
   * relays to it, applying `faults`.
   */
  static start(
    targetUri: string,
    path: string,
    faults: readonly WireFault[],
    /** holds: return-path holds made before the proxy (they make it read the return path). */
    opts: { colo?: boolean; holds?: readonly WireHold[]; mutator?: StreamMutator } = {},
  ): WireProxy {
    const target = parseUri(targetUri);
    const [listener, uri] = target.transport === "unix"
      ? [Deno.listen({ transport: "unix", path }), `unix:${path}`]
      : (() => {
        const l = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
        return [l, `tcp:127.0.0.1:${(l.addr as Deno.NetAddr).port}`] as const;
      })();
    const proxy = new WireProxy(
      listener,
      uri,
      target,
      faults,
      opts.colo ?? false,
      (opts.holds ?? []).length > 0,
      opts.mutator ?? null,
    );
    proxy.#holds.push(...opts.holds ?? []);
    return proxy;
  }

  /**
   * Holds the main connection at `place` of COLO checkpoint `checkpoint` (by default the first whose
   * request comes after this call): the bytes before the place go through, the ones after it wait,
   * read but not sent, until `release`. Both directions keep being read, so neither side blocks on a
   * full socket (a primary saving its RAM holds no lock the harness's queries need then).
   */
  holdColo(place: ColoWirePlace, checkpoint?: number): WireHold {
    const hold = new WireHold(place, checkpoint ?? (this.#colo?.checkpoints ?? 0) + 1);
    this.#holds.push(hold);
    return hold;
  }

  report(): WireReport {
    return {
      connections: this.#channels.length,
      channels: this.#channels.map((c) => ({ ...c })),
      applied: this.#applied.size,
      ...(this.#problems.length || this.#colo?.problem
        ? { problems: [...this.#problems, ...(this.#colo?.problem ? [`COLO: ${this.#colo.problem}`] : [])] }
        : {}),
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
    if (this.mutator) return await this.#relayMutated(from, to, this.#channels.length);
    const side: RelaySide = { colo: null, rp: null };
    await Promise.allSettled([this.#forward(from, to, side), this.#pump(to, from, side)]);
    this.#drop(from);
    this.#drop(to);
  }

  /**
   * A connection relayed through the fuzzer's mutator: the one it names (`index`: the order connections
   * came in; multifd channels connect at once, so which channel is which varies) in the direction it
   * names, edited; a cut drops both ends.
   */
  async #relayMutated(from: Deno.Conn, to: Deno.Conn, index: number): Promise<void> {
    const entry = { role: "other", bytes: 0 };
    this.#channels.push(entry);
    const m = this.mutator!;
    const mine = m.mutation.connection === index;
    const pump = async (a: Deno.Conn, b: Deno.Conn, dir: "forward" | "back") => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await a.read(buf);
          if (n === null) break;
          let chunk: Uint8Array = buf.slice(0, n);
          if (dir === "forward") {
            if (entry.bytes === 0) {
              const role = connectionRole(chunk);
              entry.role = role === "main" || role === "other" ? role : `multifd ${role}`;
            }
            entry.bytes += n;
          }
          if (mine && dir !== m.mutation.direction) m.other(chunk);
          if (mine && dir === m.mutation.direction) chunk = m.apply(chunk);
          if (chunk.length) await writeAll(b, chunk);
          if (mine && m.cut) break;
        }
        if (!(mine && m.cut)) await b.closeWrite().catch(() => {});
      } catch {
        // Either end went away: the relay drops both.
      }
      if (mine && m.cut) (this.#drop(a), this.#drop(b));
    };
    await Promise.allSettled([pump(from, to, "forward"), pump(to, from, "back")]);
    this.#drop(from);
    this.#drop(to);
  }

  /** Replies, untouched; on a main connection COLO tracks, its places can hold them. */
  async #pump(a: Deno.Conn, b: Deno.Conn, side: RelaySide): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    const out = new HeldPipe(b, (m) => this.#holdAt(m), () => (this.#drop(a), this.#drop(b)));
    try {
      while (true) {
        const n = await a.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        out.push(chunk, side.colo?.back(chunk) ?? side.rp?.back(chunk) ?? []);
      }
    } catch {
      // Either end went away: the relay drops both.
    }
    await out.end();
  }

  #holdAt(m: WireMark): WireHold | null {
    return this.#holds.find((h) => h.place === m.place && h.checkpoint === m.checkpoint && !h.isReached) ??
      null;
  }

  /** What the source sends: its first bytes say which connection it is, then that one's faults apply. */
  async #forward(a: Deno.Conn, b: Deno.Conn, side: RelaySide): Promise<void> {
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
          // A recovery's first command may be shorter than a handshake, and waits for its answer.
          if (held.length < ROLE_BYTES && held[0] !== VM_COMMAND) continue;
          const role = connectionRole(held);
          entry.role = role === "main" ? "main" : role === "other" ? "other" : `multifd ${role}`;
          const mine = this.faults.filter((f) => f.channel === role);
          const resolved = resolvePoints(mine, held);
          if (!resolved) {
            // What is surely before every named place goes on meanwhile: a multifd channel's first packet
            // with pages comes only once its handshake and first SYNC are through.
            const safe = Math.min(...mine.map((f) => safeBefore(f, held)));
            if (safe > at) {
              await writeAll(b, held.subarray(at, safe));
              entry.bytes = at = safe;
            }
            if (held.length < POINT_SEARCH) continue;
            this.#problems.push(
              `${entry.role}: a named place of ${JSON.stringify(mine)} is not in its first ` +
                `${held.length} bytes; the connection was dropped`,
            );
            throw new Error("named place not found");
          }
          faults = resolved;
          chunk = held.subarray(at);
          if (role === "main" && this.colo && !this.#colo && !faults.length) {
            const colo = side.colo = this.#colo = new ColoWireTracker();
            return await this.#forwardTracked(a, b, (c) => colo.ready ? colo.forward(c) : [], chunk, entry);
          }
          if (role === "main" && this.returnPath && !faults.length) {
            side.rp = new ReturnPathTracker();
            const recovery = new RecoveryTracker();
            return await this.#forwardTracked(a, b, (c) => recovery.forward(c), chunk, entry);
          }
        }
        if (!await this.#apply(faults, chunk, at, b, a, entry)) return;
        at += chunk.length;
      }
      if (!faults && held.length > at) await writeAll(b, held.subarray(at));
      await b.closeWrite().catch(() => {});
    } catch {
      // Either end went away: the relay drops both.
    }
  }

  /**
   * A main connection whose places are tracked (a COLO pair's checkpoints, a recovery's handshake): what
   * the source sends goes on, held at a place a hold is armed for.
   */
  async #forwardTracked(
    a: Deno.Conn,
    b: Deno.Conn,
    track: (chunk: Uint8Array) => WireMark[],
    first: Uint8Array,
    entry: { bytes: number },
  ): Promise<void> {
    const out = new HeldPipe(
      b,
      (m) => SOURCE_PLACES.has(m.place) ? this.#holdAt(m) : null,
      () => (this.#drop(a), this.#drop(b)),
    );
    out.push(first, track(first));
    entry.bytes = first.length;
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await a.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        entry.bytes += n;
        out.push(chunk, track(chunk));
      }
    } catch {
      // The source went away (killed, at a hold): what it sent is delivered or dropped by the hold.
    }
    await out.end();
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
          if (typeof f.offset === "number" && f.offset >= at && f.offset < end) {
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
    for (const h of this.#holds) h.release("drop");
    this.#listener.close();
    for (const c of [...this.#conns]) this.#drop(c);
    await this.#accepting.catch(() => {});
    await Promise.allSettled(this.#relays);
  }
}

/** How many of a connection's first bytes are surely before `f`'s named place (none for a main place). */
function safeBefore(f: WireFault, held: Uint8Array): number {
  if ((f.kind !== "corrupt" && f.kind !== "truncate") || typeof f.offset === "number") return held.length;
  if (f.offset.point !== "multifd-offset" && f.offset.point !== "multifd-payload") return 0;
  return multifdPagesSearch(held).parsed;
}

/** The faults with their named places as offsets, or null while `held` does not reach one yet. */
function resolvePoints(faults: WireFault[], held: Uint8Array): WireFault[] | null {
  const out: WireFault[] = [];
  for (const f of faults) {
    if ((f.kind !== "corrupt" && f.kind !== "truncate") || typeof f.offset === "number") {
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

/** What a relay's two directions share: the main connection's COLO tracker, once it has one. */
interface RelaySide {
  colo: ColoWireTracker | null;
  rp: ReturnPathTracker | null;
}

/** How a hold ends: the held bytes go on, are lost with the connection, or go and the connection ends. */
export type HoldRelease = "continue" | "drop" | "deliver";

/** The main connection held at a place (WireProxy.holdColo, holdReturnPath). */
export class WireHold {
  #reached = false;
  readonly reached: Promise<void>;
  #reach!: () => void;
  readonly released: Promise<HoldRelease>;
  #release!: (how: HoldRelease) => void;

  constructor(readonly place: WirePlace, readonly checkpoint: number) {
    this.reached = new Promise((r) => (this.#reach = r));
    this.released = new Promise((r) => (this.#release = r));
  }

  get isReached(): boolean {
    return this.#reached;
  }

  reach(): void {
    this.#reached = true;
    this.#reach();
  }

  release(how: HoldRelease): void {
    this.#release(how);
  }
}

/**
 * One direction's writer: bytes go out in order, except that at a mark a hold is armed for it stops
 * (the bytes before the mark sent, the rest queued) until the hold is released. The reader keeps
 * reading meanwhile.
 */
class HeldPipe {
  readonly #queue: { bytes: Uint8Array; marks: WireMark[] }[] = [];
  #wake: (() => void) | null = null;
  #ended = false;
  readonly #done: Promise<void>;

  constructor(
    readonly to: Deno.Conn,
    readonly holdFor: (m: WireMark) => WireHold | null,
    /** Ends the connection both ways (a hold released with "drop"). */
    readonly dropBoth: () => void,
  ) {
    this.#done = this.#run();
  }

  push(bytes: Uint8Array, marks: WireMark[]): void {
    this.#queue.push({ bytes, marks });
    this.#wake?.();
  }

  /** The reader saw its end: send what is queued (or what the holds let through), then close. */
  async end(): Promise<void> {
    this.#ended = true;
    this.#wake?.();
    await this.#done;
  }

  async #run(): Promise<void> {
    let holding = true;
    try {
      while (true) {
        const item = this.#queue.shift();
        if (!item) {
          if (this.#ended) break;
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = null;
          continue;
        }
        let off = 0;
        for (const m of holding ? item.marks : []) {
          const hold = this.holdFor(m);
          if (!hold) continue;
          if (m.at > off) await writeAll(this.to, item.bytes.subarray(off, m.at));
          off = m.at;
          hold.reach();
          const how = await hold.released;
          if (how === "drop") {
            // The link is gone with the side that died: nothing more reaches the other.
            // A FIN now: a close alone waits for the other direction's pending read to give up the fd.
            await this.to.closeWrite().catch(() => {});
            this.dropBoth();
            return;
          }
          if (how === "deliver") holding = false;
        }
        if (off < item.bytes.length) await writeAll(this.to, item.bytes.subarray(off));
      }
      await this.to.closeWrite().catch(() => {});
    } catch {
      // Either end went away.
    }
  }
}
