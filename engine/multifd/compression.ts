/**
 * The multifd compression methods (QEMU's MultiFDMethods): one compression stream per channel for the
 * whole migration. A method is registered by name; adding one is adding a file.
 */
import zlib from "node:zlib";
import { Buffer } from "node:buffer";

/** Per-channel sender state: compresses one packet's normal pages. */
export interface MultifdCompressor {
  compress(pages: Uint8Array[]): Promise<Uint8Array>;
  close(): void;
}

/** Per-channel receiver state: fills `dests` (the packet's normal pages) from one payload. */
export interface MultifdDecompressor {
  decompress(payload: Uint8Array, dests: Uint8Array[]): Promise<void>;
  close(): void;
}

export interface MultifdMethod {
  name: string;
  /** MULTIFD_FLAG_* value carried in every packet. */
  flag: number;
  /** null: the payload is the raw pages (nocomp). */
  compressor(level: number): MultifdCompressor | null;
  decompressor(): MultifdDecompressor | null;
}

const methods = new Map<string, MultifdMethod>();

export function registerMultifdMethod(m: MultifdMethod): void {
  methods.set(m.name, m);
}

export function multifdMethod(name: string): MultifdMethod {
  const m = methods.get(name);
  if (!m) throw new Error(`multifd compression method '${name}' is not registered`);
  return m;
}

type NodeCodec = zlib.Deflate | zlib.Inflate | zlib.ZstdCompress | zlib.ZstdDecompress;

/**
 * Runs a persistent node:zlib stream one packet at a time: write the input, then flush with the
 * method's sync-flush kind (Z_SYNC_FLUSH / ZSTD_e_flush) so the packet is complete on the wire while the
 * stream's dictionary carries over to the next packet.
 */
export class StreamCodec {
  #chunks: Buffer[] = [];
  #error: Error | null = null;
  #reject: ((e: Error) => void) | null = null;

  constructor(private readonly stream: NodeCodec, private readonly flushKind: number, readonly what: string) {
    stream.on("data", (d: Buffer) => this.#chunks.push(d));
    stream.on("error", (e: Error) => {
      this.#error = e;
      this.#reject?.(e);
    });
  }

  run(inputs: Uint8Array[]): Promise<Uint8Array> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#reject = reject;
      for (const i of inputs) this.stream.write(i);
      this.stream.flush(this.flushKind, () => {
        this.#reject = null;
        if (this.#error) return reject(this.#error);
        const out = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
        this.#chunks = [];
        resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      });
    });
  }

  close(): void {
    this.stream.close();
  }
}

/** Copies a decompressed packet into its pages, insisting on exactly normal × page size bytes. */
export function scatter(out: Uint8Array, dests: Uint8Array[], what: string): void {
  const want = dests.reduce((n, d) => n + d.length, 0);
  if (out.length !== want) {
    throw new Error(`${what}: packet decompressed to ${out.length} bytes, expected ${want}`);
  }
  let off = 0;
  for (const d of dests) {
    d.set(out.subarray(off, off + d.length));
    off += d.length;
  }
}
