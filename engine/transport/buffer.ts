/** Links over memory buffers: the COLO device-state buffer is written to one and loaded from another. */
import type { Link } from "./link.ts";

/** Collects everything written; reads see end of stream. */
export class CollectLink implements Link {
  readonly description = "buffer";
  #chunks: Uint8Array[] = [];
  #len = 0;
  read(): Promise<number | null> {
    return Promise.resolve(null);
  }
  write(p: Uint8Array): Promise<void> {
    this.#chunks.push(p.slice());
    this.#len += p.length;
    return Promise.resolve();
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#len);
    let off = 0;
    for (const c of this.#chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
  close(): void {}
}

/** Reads `bytes`, then end of stream. */
export class BytesLink implements Link {
  readonly description = "buffer";
  #off = 0;
  constructor(private readonly data: Uint8Array) {}
  read(p: Uint8Array): Promise<number | null> {
    if (this.#off >= this.data.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.data.length - this.#off);
    p.set(this.data.subarray(this.#off, this.#off + n));
    this.#off += n;
    return Promise.resolve(n);
  }
  write(): Promise<void> {
    return Promise.reject(new Error("buffer link is read-only"));
  }
  close(): void {}
}
