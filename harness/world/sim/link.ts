/**
 * The simulated world's connections: what a socket is to the engine (a Link) and to a QMP client (a
 * Deno.Conn's read/write/close). Bytes stay in order within a direction; when they arrive, and in
 * chunks of what size, is the scheduler's decision, so a reader sees the partial reads and the
 * interleavings across connections a real socket can give. A writer waits once its direction holds
 * the link's capacity in flight, as a full socket buffer makes it wait.
 */
import { LinkClosedError } from "../../../engine/transport/link.ts";
import type { SimActor, Simulation } from "./scheduler.ts";
import type { StreamMutator } from "../../wire_mutate.ts";

/** Virtual milliseconds per byte delivered (about 4 GB/s, the raw unix socket here). */
const MS_PER_BYTE = 1 / 4e6;
/** Virtual cost of any delivery (a wakeup). */
const DELIVERY_MS = 0.002;

/**
 * Bytes in order as a list of chunks, taken from the front by an index: a direction can hold hundreds of
 * thousands of small writes, and Array#shift on that many is quadratic.
 */
class Chunks {
  #list: Uint8Array[] = [];
  #head = 0;
  bytes = 0;

  push(c: Uint8Array): void {
    this.#list.push(c);
    this.bytes += c.length;
  }

  /** Moves up to n bytes to `into` (or drops them), in chunks; returns how many moved. */
  take(n: number, into: ((part: Uint8Array) => void) | null): number {
    let moved = 0;
    while (moved < n && this.#head < this.#list.length) {
      const c = this.#list[this.#head];
      const k = Math.min(c.length, n - moved);
      into?.(c.subarray(0, k));
      if (k === c.length) this.#head++;
      else this.#list[this.#head] = c.subarray(k);
      moved += k;
    }
    this.bytes -= moved;
    if (this.#head > 1024 && this.#head * 2 > this.#list.length) {
      this.#list = this.#list.slice(this.#head);
      this.#head = 0;
    }
    return moved;
  }

  clear(): void {
    this.#list = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

/** One direction of a connection, and the scheduler's actor that delivers it. */
class SimPipe implements SimActor {
  readonly #inflight = new Chunks();
  readonly #arrived = new Chunks();
  /** The writer's end closed: what is in flight still arrives, then end of stream. */
  #writerClosed = false;
  #eof = false;
  /** The reader's end closed: nothing more is kept, writes fail. */
  #readerClosed = false;
  #readWaiter: (() => void) | null = null;
  #writeWaiters: (() => void)[] = [];

  /**
   * A link with time (the knobs linkMBps, linkLatencyMs): each write's end and the virtual time it is
   * due at, oldest first; bytes are delivered only once due. Null: bytes are due at once.
   */
  readonly #dues: { end: number; at: number }[] | null;
  #duesHead = 0;
  /** Bytes written into the direction, and moved out of flight, since it opened. */
  #written = 0;
  #moved = 0;
  /** The link is busy sending what was written before until then. */
  #busyUntil = 0;
  /** The wake-up armed for the next due bytes (the scheduler jumps to a timer when nothing is ready). */
  #wakeAt = -1;

  constructor(
    readonly label: string,
    private readonly capacity: number,
    private readonly latencyMs: number,
    readonly weight: number,
    /** Called with the bytes of each delivery (a fault counting down to a reset). */
    private readonly onDelivered?: (n: number) => void,
    /** What the bytes become on the way (a fuzzer's edits); `cut` resets the connection after them. */
    private readonly transform?: { apply(part: Uint8Array): Uint8Array; readonly cut: boolean },
    /** Sees the bytes as they were sent (the other direction's mutator follows this one). */
    private readonly observe?: (part: Uint8Array) => void,
    /** A link with time: its bandwidth (bytes per virtual ms) and one-way latency. */
    private readonly timing?: { sim: Simulation; bytesPerMs: number; latencyMs: number },
  ) {
    this.#dues = timing ? [] : null;
  }

  /** Bytes in flight that are due now (all of them on a link without time). */
  #dueBytes(): number {
    const dues = this.#dues;
    if (!dues) return this.#inflight.bytes;
    const now = this.timing!.sim.now;
    let end = this.#moved;
    for (let i = this.#duesHead; i < dues.length && dues[i].at <= now; i++) end = dues[i].end;
    return end - this.#moved;
  }

  /** Arms a wake-up for the first bytes not yet due, so that time moves to them. */
  #armWake(): void {
    const dues = this.#dues;
    if (!dues) return;
    while (this.#duesHead < dues.length && dues[this.#duesHead].end <= this.#moved) this.#duesHead++;
    if (this.#duesHead > 1024 && this.#duesHead * 2 > dues.length) {
      dues.splice(0, this.#duesHead);
      this.#duesHead = 0;
    }
    const next = dues[this.#duesHead];
    const sim = this.timing!.sim;
    if (!next || next.at <= sim.now || (this.#wakeAt > sim.now && this.#wakeAt <= next.at)) return;
    this.#wakeAt = next.at;
    sim.engineClock.timer(() => {}, next.at - sim.now);
  }

  ready(): boolean {
    if (this.#readerClosed) return false;
    if (this.#inflight.bytes > 0) return this.#dueBytes() > 0;
    return this.#writerClosed && !this.#eof;
  }

  step(sim: Simulation): number {
    if (this.#inflight.bytes === 0) {
      this.#eof = true;
      this.#wakeReader();
      return DELIVERY_MS + this.latencyMs;
    }
    const max = Math.min(this.#dueBytes(), sim.knobs.maxChunk);
    // Mostly whole chunks, sometimes a short read of a few bytes (a header split across reads).
    const n = sim.int(0, 7) === 0 ? sim.int(1, Math.min(max, 16)) : sim.int(1, max);
    const t = this.transform;
    this.#inflight.take(n, (part) => {
      this.observe?.(part);
      const out = t ? t.apply(part) : part;
      if (out.length > 0) this.#arrived.push(out);
    });
    this.#moved += n;
    this.#armWake();
    this.#wakeReader();
    this.onDelivered?.(n);
    if (t?.cut) this.onCut?.();
    // A link with time spent it in its due times: the delivery itself is a wakeup.
    return this.#dues ? DELIVERY_MS : DELIVERY_MS + this.latencyMs + n * MS_PER_BYTE;
  }

  async write(p: Uint8Array, what: string): Promise<void> {
    let off = 0;
    while (off < p.length) {
      if (this.#writerClosed || this.#readerClosed) throw new LinkClosedError(what);
      const room = this.capacity - this.#inflight.bytes - this.#arrived.bytes;
      // As a socket wakes its writer only once a third of its buffer is free, not per byte read.
      if (room < Math.min(p.length - off, Math.ceil(this.capacity / 3))) {
        await new Promise<void>((r) => this.#writeWaiters.push(r));
        continue;
      }
      const n = Math.min(room, p.length - off);
      this.#inflight.push(p.slice(off, off + n));
      off += n;
      this.#written += n;
      if (this.#dues) {
        const { sim, bytesPerMs, latencyMs } = this.timing!;
        this.#busyUntil = Math.max(sim.now, this.#busyUntil) + (bytesPerMs > 0 ? n / bytesPerMs : 0);
        this.#dues.push({ end: this.#written, at: this.#busyUntil + latencyMs });
        this.#armWake();
      }
    }
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#arrived.bytes === 0) {
      if (this.#eof || this.#readerClosed) return null;
      await new Promise<void>((r) => (this.#readWaiter = r));
    }
    let n = 0;
    this.#arrived.take(p.length, (part) => {
      p.set(part, n);
      n += part.length;
    });
    this.#wakeWriters();
    return n;
  }

  closeWriter(): void {
    this.#writerClosed = true;
    this.#wakeWriters();
  }

  closeReader(): void {
    this.#readerClosed = true;
    this.#moved += this.#inflight.bytes;
    this.#inflight.clear();
    this.#arrived.clear();
    this.#wakeReader();
    this.#wakeWriters();
  }

  /** Set by the connection: a transform's cut resets it. */
  onCut?: () => void;

  /** A reset (fault or stall report): both ends see the connection gone at once. */
  reset(): void {
    this.#writerClosed = true;
    this.#eof = true;
    this.closeReader();
  }

  /** What the direction holds, for a failure report. */
  describe(): string {
    const state = this.#readerClosed ? "closed" : this.#eof ? "eof" : this.#writerClosed ? "closing" : "open";
    return `${this.label}: ${this.#inflight.bytes} B in flight, ${this.#arrived.bytes} B unread, ${state}`;
  }

  #wakeReader(): void {
    const r = this.#readWaiter;
    this.#readWaiter = null;
    r?.();
  }

  #wakeWriters(): void {
    const ws = this.#writeWaiters;
    this.#writeWaiters = [];
    for (const w of ws) w();
  }
}

/** One end of a simulated connection: a Link for the engine, a Conn-like for a QMP client. */
export class SimEnd {
  #closed = false;
  constructor(
    private readonly rx: SimPipe,
    private readonly tx: SimPipe,
    readonly description: string,
  ) {}

  read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.resolve(null);
    return this.rx.read(p);
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new LinkClosedError(this.description);
    await this.tx.write(p, this.description);
    return p.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.tx.closeWriter();
    this.rx.closeReader();
  }
}

/** Both directions of a connection, registered with the scheduler as two actors. */
export class SimConnection {
  readonly a: SimEnd;
  readonly b: SimEnd;
  readonly #ab: SimPipe;
  readonly #ba: SimPipe;

  constructor(
    private readonly sim: Simulation,
    readonly name: string,
    opts: {
      capacity: number;
      latencyMs?: number;
      weight?: number;
      names?: [string, string];
      /** Resets the connection once this many bytes have arrived, both directions counted (a fault). */
      resetAfter?: number;
      /** Edits on the bytes a>b (forward) or b>a (back) deliver (the fuzzer's). */
      mutate?: { direction: "forward" | "back"; mutator: StreamMutator };
      /** A migration link: the knobs' bandwidth and latency apply (in both directions). */
      timed?: boolean;
    },
  ) {
    const [na, nb] = opts.names ?? ["a", "b"];
    const [lat, weight] = [opts.latencyMs ?? 0, opts.weight ?? 1];
    let left = opts.resetAfter ?? Infinity;
    const count = (n: number) => {
      left -= n;
      if (left > 0 || left === -Infinity) return;
      left = -Infinity;
      sim.traceLine(`fault: reset ${name}`);
      this.reset();
    };
    const m = opts.mutate;
    const fwd = m?.direction === "forward" ? m.mutator : undefined;
    const back = m?.direction === "back" ? m.mutator : undefined;
    // A forward mutation placed in a COLO checkpoint follows the secondary's answers too.
    const answers = fwd ? (part: Uint8Array) => fwd.other(part) : undefined;
    const { linkMBps, linkLatencyMs } = sim.knobs;
    // MB/s are bytes per µs: bytes per virtual ms are a thousand times that.
    const timing = opts.timed && (linkMBps > 0 || linkLatencyMs > 0)
      ? { sim, bytesPerMs: linkMBps * 1000, latencyMs: linkLatencyMs }
      : undefined;
    this.#ab = new SimPipe(
      `link ${name} ${na}>${nb}`,
      opts.capacity,
      lat,
      weight,
      count,
      fwd,
      undefined,
      timing,
    );
    this.#ba = new SimPipe(
      `link ${name} ${nb}>${na}`,
      opts.capacity,
      lat,
      weight,
      count,
      back,
      answers,
      timing,
    );
    const cut = () => {
      sim.traceLine(`fault: mutation cut ${name}`);
      this.reset();
    };
    this.#ab.onCut = this.#ba.onCut = cut;
    this.a = new SimEnd(this.#ba, this.#ab, `${name}:${na}`);
    this.b = new SimEnd(this.#ab, this.#ba, `${name}:${nb}`);
    sim.add(this.#ab);
    sim.add(this.#ba);
  }

  reset(): void {
    this.#ab.reset();
    this.#ba.reset();
  }

  /** Leaves the scheduler (both ends closed and drained). */
  dispose(): void {
    this.reset();
    this.sim.remove(this.#ab);
    this.sim.remove(this.#ba);
  }

  describe(): string[] {
    return [this.#ab.describe(), this.#ba.describe()];
  }
}
