/**
 * A byte link between a migration source and destination: what a QIOChannel is to QEMU.
 *
 * The protocol code (savevm, ram, the migration state machines) only sees this interface, so the same
 * code runs over real sockets in the engine process and over in-memory links in one-process unit tests.
 */
export interface Link {
  /** Reads up to `p.length` bytes into `p`; resolves to the count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes all of `p` (resolves once the link has taken it). */
  write(p: Uint8Array): Promise<void>;
  /** Closes both directions; pending and later reads/writes fail or see end of stream. Idempotent. */
  close(): void;
  /** Human-readable peer description for error messages ("unix:/tmp/x", "tcp:127.0.0.1:4444"). */
  readonly description: string;
}

/** Error raised by a link operation after `close()` or on a broken peer. */
export class LinkClosedError extends Error {
  constructor(what: string) {
    super(`${what}: channel closed`);
    this.name = "LinkClosedError";
  }
}

/** Wraps a Deno connection (unix or TCP socket) as a Link. */
export class ConnLink implements Link {
  #closed = false;
  constructor(private readonly conn: Deno.Conn, readonly description: string) {}

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    try {
      return await this.conn.read(p);
    } catch (e) {
      if (this.#closed) return null;
      throw e;
    }
  }

  async write(p: Uint8Array): Promise<void> {
    let off = 0;
    while (off < p.length) {
      if (this.#closed) throw new LinkClosedError(this.description);
      off += await this.conn.write(off === 0 ? p : p.subarray(off));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by the peer side of a failed operation.
    }
  }
}

/**
 * One direction of an in-memory link with bounded buffering, so a fast writer is paced by its reader
 * like a socket would pace it.
 */
class Pipe {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #closed = false;
  #readWaiter: (() => void) | null = null;
  #writeWaiter: (() => void) | null = null;

  constructor(private readonly capacity: number) {}

  async write(p: Uint8Array, what: string): Promise<void> {
    let off = 0;
    while (off < p.length) {
      if (this.#closed) throw new LinkClosedError(what);
      if (this.#buffered >= this.capacity) {
        await new Promise<void>((r) => (this.#writeWaiter = r));
        continue;
      }
      const n = Math.min(p.length - off, this.capacity - this.#buffered);
      this.#chunks.push(p.slice(off, off + n));
      this.#buffered += n;
      off += n;
      this.#wakeReader();
    }
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((r) => (this.#readWaiter = r));
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const c = this.#chunks[0];
      const take = Math.min(c.length, p.length - n);
      p.set(c.subarray(0, take), n);
      n += take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#buffered -= n;
    const w = this.#writeWaiter;
    this.#writeWaiter = null;
    w?.();
    return n;
  }

  close(): void {
    this.#closed = true;
    this.#wakeReader();
    const w = this.#writeWaiter;
    this.#writeWaiter = null;
    w?.();
  }

  #wakeReader(): void {
    const r = this.#readWaiter;
    this.#readWaiter = null;
    r?.();
  }
}

class MemoryLink implements Link {
  constructor(
    private readonly rx: Pipe,
    private readonly tx: Pipe,
    readonly description: string,
  ) {}
  read(p: Uint8Array): Promise<number | null> {
    return this.rx.read(p);
  }
  write(p: Uint8Array): Promise<void> {
    return this.tx.write(p, this.description);
  }
  close(): void {
    this.rx.close();
    this.tx.close();
  }
}

/** A connected pair of in-memory links (`[a, b]`: what a writes, b reads, and back). */
export function memoryLinkPair(capacity = 4 << 20, name = "memory"): [Link, Link] {
  const ab = new Pipe(capacity);
  const ba = new Pipe(capacity);
  return [new MemoryLink(ba, ab, `${name}:a`), new MemoryLink(ab, ba, `${name}:b`)];
}
