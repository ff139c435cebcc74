/**
 * Descriptors as this process's own (engine/os/libc.ts): what `getfd` and `add-fd` hand the engine
 * between real processes. A socket becomes a migration channel read and written off the event loop; a
 * file a seekable channel whose every read and write is positioned (pread/pwrite), so duplicates of one
 * open file never race on its offset. A descriptor opened with O_DIRECT gets page-aligned buffers.
 */
import type { FdHost } from "../monitor/fds.ts";
import { checkDirect, DIRECT_IO_ALIGN, type OutgoingFile } from "../transport/file.ts";
import { type Link, LinkClosedError } from "../transport/link.ts";
import { FdConn } from "./fd_conn.ts";
import { accessMode, closeFd, dup, fileSize, ftruncate, isDirect, pread, pwrite } from "./libc.ts";

class FdLink implements Link {
  readonly #conn: FdConn;
  constructor(fd: number, readonly description: string) {
    this.#conn = new FdConn(fd, false);
  }
  read(p: Uint8Array): Promise<number | null> {
    return this.#conn.read(p);
  }
  async write(p: Uint8Array): Promise<void> {
    if (this.#conn.closed) throw new LinkClosedError(this.description);
    await this.#conn.write(p);
  }
  close(): void {
    this.#conn.close();
  }
}

/** A buffer whose address is a multiple of DIRECT_IO_ALIGN (O_DIRECT needs the memory aligned too). */
function alignedBuffer(len: number): Uint8Array {
  const raw = new Uint8Array(len + DIRECT_IO_ALIGN);
  const addr = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)));
  const skip = (DIRECT_IO_ALIGN - (addr % DIRECT_IO_ALIGN)) % DIRECT_IO_ALIGN;
  return raw.subarray(skip, skip + len);
}

class FdFileLink implements OutgoingFile {
  #closed = false;
  #pos: number;
  #extent: number;
  readonly #direct: boolean;

  constructor(private readonly fd: number, readonly description: string, readonly base: number) {
    this.#pos = base;
    this.#extent = base;
    this.#direct = isDirect(fd);
  }

  #check(): void {
    if (this.#closed) throw new LinkClosedError(this.description);
  }

  async #pwrite(p: Uint8Array, at: number): Promise<void> {
    if (this.#direct) checkDirect(this.description, p.length, at);
    const src = this.#direct ? alignedBuffer(p.length) : p;
    if (src !== p) src.set(p);
    for (let off = 0; off < src.length;) {
      const n = await pwrite(this.fd, src.subarray(off), at + off);
      if (n <= 0) throw new Error(`${this.description}: short write at ${at + off}`);
      off += n;
    }
    this.#extent = Math.max(this.#extent, at + p.length);
  }

  async #pread(p: Uint8Array, at: number): Promise<number> {
    if (this.#direct) checkDirect(this.description, p.length, at);
    const dst = this.#direct ? alignedBuffer(p.length) : p;
    let got = 0;
    while (got < dst.length) {
      const n = await pread(this.fd, dst.subarray(got), at + got);
      if (n === 0) break;
      got += n;
    }
    if (dst !== p) p.set(dst.subarray(0, got));
    return got;
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    const n = await this.#pread(p, this.#pos);
    if (n === 0) return null;
    this.#pos += n;
    return n;
  }

  async write(p: Uint8Array): Promise<void> {
    this.#check();
    await this.#pwrite(p, this.#pos);
    this.#pos += p.length;
  }

  tell(): number {
    return this.#pos;
  }

  seek(at: number): Promise<void> {
    this.#pos = at;
    return Promise.resolve();
  }

  pwrite(p: Uint8Array, at: number): Promise<void> {
    this.#check();
    return this.#pwrite(p, at);
  }

  async pread(p: Uint8Array, at: number): Promise<number> {
    this.#check();
    return await this.#pread(p, at);
  }

  truncateToEnd(): void {
    if (fileSize(this.fd) > this.#extent) ftruncate(this.fd, this.#extent);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.fd);
  }
}

export const libcFds: FdHost = {
  close: (fd) => closeFd(fd),
  dup: (fd) => dup(fd),
  accessMode: (fd) => accessMode(fd),
  isDirect: (fd) => isDirect(fd),
  link: (fd, description) => new FdLink(fd, description),
  file: (fd, description, base) => Promise.resolve(new FdFileLink(fd, description, base)),
};
