/**
 * The multifd compression methods (QEMU's MultiFDMethods): one compression stream per channel for the
 * whole migration. A method is registered by name; adding one is adding a file.
 */
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import process from "node:process";

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
 * Deno's zstd stream (2.9), when a corrupt input's error comes after its first output chunk, throws the
 * error from a callback instead of emitting it, and never calls the flush back: the packet's channel hung
 * and the process died of an uncaught exception (found by deno task fuzz). While a codec that can do
 * that has a packet in flight, such an error fails its in-flight packets (the error names no stream:
 * every one in flight fails, which fails the migration as the corrupt one would); any other uncaught
 * error is thrown on, as if nothing listened.
 */
const strayProne = new Set<StreamCodec>();
/** Errors the workaround took (a harness that counts uncaught errors leaves these out). */
export const strayErrorsHandled = new WeakSet<object>();

function onUncaught(e: unknown): void {
  const ours = [...strayProne].filter((c) => e instanceof Error && c.strayErrors!.test(e.message));
  if (ours.length === 0) {
    process.off("uncaughtException", onUncaught);
    throw e;
  }
  strayErrorsHandled.add(e as Error);
  for (const c of ours) c.fail(e as Error);
}

function watchStrays(c: StreamCodec, on: boolean): void {
  const before = strayProne.size;
  if (on) strayProne.add(c);
  else strayProne.delete(c);
  if (before === 0 && strayProne.size === 1) process.on("uncaughtException", onUncaught);
  if (before > 0 && strayProne.size === 0) process.off("uncaughtException", onUncaught);
}

/**
 * Runs a persistent node:zlib stream one packet at a time: write the input, then flush with the
 * method's sync-flush kind (Z_SYNC_FLUSH / ZSTD_e_flush) so the packet is complete on the wire while the
 * stream's dictionary carries over to the next packet.
 */
export class StreamCodec {
  #chunks: Buffer[] = [];
  #error: Error | null = null;
  #reject: ((e: Error) => void) | null = null;

  constructor(
    private readonly stream: NodeCodec,
    private readonly flushKind: number,
    readonly what: string,
    /** The errors this stream may throw out of band instead of emitting (see strayProne). */
    readonly strayErrors?: RegExp,
  ) {
    stream.on("data", (d: Buffer) => this.#chunks.push(d));
    stream.on("error", (e: Error) => {
      this.#error = e;
      this.#reject?.(e);
    });
  }

  /** The stream failed out of band: the packet in flight, and every later one, fail with `e`. */
  fail(e: Error): void {
    this.#error ??= e;
    this.#reject?.(e);
    this.#reject = null;
    watchStrays(this, false);
  }

  run(inputs: Uint8Array[]): Promise<Uint8Array> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#reject = reject;
      if (this.strayErrors) watchStrays(this, true);
      for (const i of inputs) this.stream.write(i);
      this.stream.flush(this.flushKind, () => {
        if (this.strayErrors) watchStrays(this, false);
        this.#reject = null;
        if (this.#error) return reject(this.#error);
        const out = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
        this.#chunks = [];
        resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      });
    });
  }

  close(): void {
    watchStrays(this, false);
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
