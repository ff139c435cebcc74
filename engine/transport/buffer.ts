/** Links over memory buffers: the COLO device-state buffer is written to one and loaded from another. */
import type { Link } from "./link.ts";

/** Collects everything written; reads see end of stream. */
export class CollectLink implements Link {
  readonly description = "buffer";
  #chunks: Uint8Array[] = [];
  read(): Promise<number | null> {
    return Promise.resolve(null);
  }
  write(p: Uint8Array): Promise<void> {
    this.#chunks.push(p.slice());
    return Promise.resolve();
  }
  bytes(): Uint8Array {
    return concatBytes(this.#chunks);
  }
  close(): void {}
}

/** Reads `bytes`, then end of stream. */
export class BytesLink implements Link {
  #off = 0;
  constructor(private readonly data: Uint8Array, readonly description = "buffer") {}
  read(p: Uint8Array): Promise<number | null> {
    if (this.#off >= this.data.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.data.length - this.#off);
    p.set(this.data.subarray(this.#off, this.#off + n));
    this.#off += n;
    return Promise.resolve(n);
  }
  write(): Promise<void> {
    return Promise.reject(new Error(`${this.description}: read-only`));
  }
  close(): void {
    this.#off = this.data.length;
  }
}

/** Reads a link until its peer closes and returns everything read. */
export async function readAll(link: Link): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(1 << 16);
  for (let n = await link.read(buf); n !== null && n > 0; n = await link.read(buf)) {
    chunks.push(buf.slice(0, n));
  }
  return concatBytes(chunks);
}

function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
