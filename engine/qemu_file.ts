/**
 * QEMUFile: buffered big-endian reader and writer over a Link, as migration/qemu-file.c is over a
 * QIOChannel. Every main-stream integer is big-endian. Both sides track their absolute stream offset so
 * that errors can say where in the stream they happened.
 */
import { asError, errorMessage } from "./error.ts";
import { isSeekable } from "./transport/file.ts";
import type { Link } from "./transport/link.ts";

/** A malformed or truncated incoming stream; `offset` is the stream position where it was detected. */
export class StreamError extends Error {
  constructor(readonly detail: string, readonly offset: number) {
    super(`${detail} (at stream offset ${offset})`);
    this.name = "StreamError";
  }
}

/** The stream ended or its channel broke (not a malformed stream): postcopy pauses on this. */
export class ChannelLostError extends StreamError {}

const TWO32 = 0x1_0000_0000;

/** Byte-level faults applied on the way out, for bad-stream and lost-peer cases. */
export interface OutputFaults {
  /** XOR `xor` into the byte at this absolute stream offset. */
  corruptAt?: number;
  xor?: number;
  /** Deliver exactly this many bytes, then close the link (the peer sees a truncated stream). */
  truncateAt?: number;
}

export class QEMUFileWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;
  /** Bytes handed to the link so far (written or being written). */
  #handed = 0;
  faults: OutputFaults = {};
  #error: Error | null = null;
  #spare: Uint8Array | null = null;
  #inflight: Promise<void> = Promise.resolve();

  constructor(readonly link: Link, readonly flushThreshold = 1 << 20) {
    this.#buf = new Uint8Array(flushThreshold + 65536);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Total bytes written (buffered or not): the stream position of the next byte. */
  get position(): number {
    return this.#handed + this.#len;
  }

  /** The first write error, if the link broke. */
  get error(): Error | null {
    return this.#error;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const bigger = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    bigger.set(this.#buf.subarray(0, this.#len));
    this.#buf = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  put8(v: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = v;
  }
  putBe16(v: number): void {
    this.#reserve(2);
    this.#view.setUint16(this.#len, v);
    this.#len += 2;
  }
  putBe32(v: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.#len, v >>> 0);
    this.#len += 4;
  }
  /** Writes a non-negative integer below 2^53 as be64. */
  putBe64(v: number): void {
    this.#reserve(8);
    this.#view.setUint32(this.#len, Math.floor(v / TWO32));
    this.#view.setUint32(this.#len + 4, v >>> 0);
    this.#len += 8;
  }
  putBytes(p: Uint8Array): void {
    this.#reserve(p.length);
    this.#buf.set(p, this.#len);
    this.#len += p.length;
  }
  /** u8 length + bytes, as QEMU writes idstrs and capability names. */
  putCountedString(s: string): void {
    const b = new TextEncoder().encode(s);
    if (b.length > 255) throw new Error(`string too long for a u8 length: ${s}`);
    this.put8(b.length);
    this.putBytes(b);
  }

  /** The buffer passed the threshold (hot paths test this instead of awaiting maybeFlush per record). */
  get needsFlush(): boolean {
    return this.#len >= this.flushThreshold;
  }

  /** Flushes when the buffer passed the threshold. */
  async maybeFlush(): Promise<void> {
    if (this.#len >= this.flushThreshold) await this.flush();
  }

  /** Writes everything buffered and waits until the link has taken it. */
  async flush(): Promise<void> {
    await this.push();
    await this.#inflight;
    if (this.#error) throw this.#error;
  }

  /**
   * Hands the buffered bytes to the link and returns once the *previous* hand-off completed, so filling
   * the next buffer overlaps with the socket write of this one (double buffering).
   */
  async push(): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#len === 0) return;
    const buf = this.#buf;
    const len = this.#len;
    // Swap to the spare buffer; the one being written must not be touched until its write completes.
    this.#buf = this.#spare ?? new Uint8Array(buf.length);
    this.#view = new DataView(this.#buf.buffer);
    this.#spare = null;
    this.#len = 0;
    await this.#inflight;
    if (this.#error) throw this.#error;
    const start = this.#handed;
    this.#handed += len;
    this.#inflight = this.#write(buf, len, start).finally(() => (this.#spare = buf));
    // Surface errors of this write on the next call, not as an unhandled rejection.
    this.#inflight.catch(() => {});
  }

  async #write(buf: Uint8Array, len: number, start: number): Promise<void> {
    let out = buf.subarray(0, len);
    const f = this.faults;
    if (f.corruptAt !== undefined && f.corruptAt >= start && f.corruptAt < start + out.length) {
      out[f.corruptAt - start] ^= f.xor ?? 0xff;
    }
    let truncate = false;
    if (f.truncateAt !== undefined && f.truncateAt < start + out.length) {
      out = out.subarray(0, Math.max(0, f.truncateAt - start));
      truncate = true;
    }
    try {
      if (out.length) await this.link.write(out);
      if (truncate) {
        this.link.close();
        throw new Error(`${this.link.description}: connection dropped after ${f.truncateAt} bytes (fault)`);
      }
    } catch (e) {
      this.#error = asError(e);
      throw this.#error;
    }
  }
}

export class QEMUFileReader {
  #buf: Uint8Array;
  #view: DataView;
  #start = 0;
  #end = 0;
  /** Stream offset of #buf[0]. */
  #base = 0;
  #eof = false;

  constructor(readonly link: Link, bufSize = 1 << 20) {
    this.#buf = new Uint8Array(bufSize);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Stream offset of the next unread byte. */
  get position(): number {
    return this.#base + this.#start;
  }

  /** Bytes buffered and ready to be consumed without waiting. */
  get available(): number {
    return this.#end - this.#start;
  }

  has(n: number): boolean {
    return this.#end - this.#start >= n;
  }

  error(detail: string, offset = this.position): StreamError {
    return new StreamError(detail, offset);
  }

  /** Waits until `n` bytes are buffered; a stream that ends first is an error naming `what`. */
  async need(n: number, what: string): Promise<void> {
    if (this.#end - this.#start >= n) return;
    if (n > this.#buf.length) {
      const bigger = new Uint8Array(n);
      bigger.set(this.#buf.subarray(this.#start, this.#end));
      this.#base += this.#start;
      this.#end -= this.#start;
      this.#start = 0;
      this.#buf = bigger;
      this.#view = new DataView(bigger.buffer);
    } else if (this.#start + n > this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#base += this.#start;
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < n) {
      const at = this.#base + this.#end;
      if (this.#eof) throw new ChannelLostError(`Unexpected end of stream while reading ${what}`, at);
      let got: number | null;
      try {
        got = await this.link.read(this.#buf.subarray(this.#end));
      } catch (e) {
        // A reset connection is a stream error too: say where the stream stopped and what was expected.
        const why = errorMessage(e);
        throw new ChannelLostError(`${this.link.description}: ${why} while reading ${what}`, at);
      }
      if (got === null || got === 0) this.#eof = true;
      else this.#end += got;
    }
  }

  /** True once the peer closed and every byte has been consumed (a clean end of stream). */
  async atEnd(): Promise<boolean> {
    if (this.#end > this.#start) return false;
    try {
      await this.need(1, "");
      return false;
    } catch (e) {
      if (e instanceof StreamError) return true;
      throw e;
    }
  }

  get8(): number {
    return this.#buf[this.#start++];
  }
  getBe16(): number {
    const v = this.#view.getUint16(this.#start);
    this.#start += 2;
    return v;
  }
  getBe32(): number {
    const v = this.#view.getUint32(this.#start);
    this.#start += 4;
    return v;
  }
  /** High and low be32 halves of a be64, for callers that split flags from an address. */
  getBe64Parts(): [number, number] {
    const hi = this.#view.getUint32(this.#start);
    const lo = this.#view.getUint32(this.#start + 4);
    this.#start += 8;
    return [hi, lo];
  }
  /** A be64 that must fit in a JS number (sizes, offsets); larger values are stream errors. */
  getBe64(what: string): number {
    const at = this.position;
    const [hi, lo] = this.getBe64Parts();
    if (hi >= 0x20_0000) {
      throw this.error(`${what} 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} is out of range`, at);
    }
    return hi * TWO32 + lo;
  }
  /** Copies `n` buffered bytes out. */
  getBytes(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }
  /** Copies `dest.length` buffered bytes into `dest` (a page of guest RAM, a cache page). */
  copyTo(dest: Uint8Array): void {
    dest.set(this.#buf.subarray(this.#start, this.#start + dest.length));
    this.#start += dest.length;
  }
  /** A view of the next `n` buffered bytes without consuming them. */
  peek(n: number): Uint8Array {
    return this.#buf.subarray(this.#start, this.#start + n);
  }
  skip(n: number): void {
    this.#start += n;
  }

  /**
   * qemu_set_offset on a seekable channel: the stream goes on at absolute file offset `at`; what was
   * buffered is dropped. Stream offsets keep counting from the file's base offset.
   */
  async seekTo(at: number): Promise<void> {
    const link = this.link;
    if (!isSeekable(link)) throw this.error(`${link.description} is not seekable`);
    await link.seek(at);
    this.#base = at - link.base;
    this.#start = this.#end = 0;
    this.#eof = false;
  }

  /** Reads a u8-counted string (idstr). */
  async getCountedString(what: string): Promise<string> {
    await this.need(1, `${what} length`);
    const n = this.get8();
    await this.need(n, what);
    return new TextDecoder().decode(this.getBytes(n));
  }
}
