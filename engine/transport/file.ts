/**
 * The `file:` transport (migration/file.c): the stream is written to, or read from, a file starting at
 * `offset`; bytes before the offset are left alone. The file is seekable (QIO_CHANNEL_FEATURE_SEEKABLE):
 * mapped-ram moves the stream past each RAM block's page area and writes or reads pages at their fixed
 * offsets (pwrite/pread) without moving the stream.
 */
import type { Link } from "./link.ts";

/** A Link over a file that can also seek and do positioned I/O (QEMU's seekable QIOChannelFile). */
export interface SeekableLink extends Link {
  /** The URI's offset= (stream offsets in errors count from here). */
  readonly base: number;
  /** Absolute file offset of the next streamed byte. */
  tell(): number;
  /** Moves the stream to absolute offset `at` (qemu_set_offset). */
  seek(at: number): Promise<void>;
  /** Writes all of `p` at absolute offset `at`; the stream's position does not move. */
  pwrite(p: Uint8Array, at: number): Promise<void>;
  /** Reads `p.length` bytes at absolute offset `at`; fewer only at the end of the file. */
  pread(p: Uint8Array, at: number): Promise<number>;
}

/** A file the source writes: cut at the furthest byte written when the migration ends. */
export type OutgoingFile = SeekableLink & { truncateToEnd(): void };

/**
 * How a file is opened. `direct`: the multifd channels' handle under direct-io, which QEMU opens with
 * O_DIRECT. Deno cannot pass O_DIRECT, so the model enforces its rule instead: every read and write at an
 * offset and of a length that are multiples of the block size, or EINVAL (checkDirect).
 */
export interface FileOpenOptions {
  direct?: boolean;
}

/** Where `file:` paths live: the host's filesystem (below), or the simulated world's files in memory. */
export interface FileStore {
  outgoing(path: string, offset: number, opts?: FileOpenOptions): Promise<OutgoingFile>;
  incoming(path: string, offset: number, opts?: FileOpenOptions): Promise<SeekableLink>;
}

export const hostFiles: FileStore = {
  outgoing: (path, offset, opts) => fileOutgoing(path, offset, opts),
  incoming: (path, offset, opts) => fileIncoming(path, offset, opts),
};

/** The block size O_DIRECT aligns to here (the page size; QEMU's pages and their area are aligned so). */
export const DIRECT_IO_ALIGN = 4096;

/** O_DIRECT's rule for a positioned read or write of `len` bytes at `at`: aligned, or EINVAL. */
export function checkDirect(description: string, len: number, at: number): void {
  if (at % DIRECT_IO_ALIGN === 0 && len % DIRECT_IO_ALIGN === 0) return;
  throw new Error(
    `${description}: Invalid argument (os error 22): direct I/O of ${len} bytes at offset ${at} is not ` +
      `${DIRECT_IO_ALIGN}-byte aligned`,
  );
}

export function isSeekable(link: Link): link is SeekableLink {
  return "pwrite" in link && "seek" in link;
}

class FileLink implements SeekableLink {
  #closed = false;
  #pos: number;
  /** The furthest byte written, streamed or positioned: where a writer cuts the file. */
  #extent: number;
  /** Positioned I/O uses its own handle (as pread/pwrite leave the stream's offset alone), one at a time. */
  #positioned: Deno.FsFile | null = null;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: Deno.FsFile,
    private readonly path: string,
    readonly base: number,
    private readonly writable: boolean,
    private readonly direct = false,
  ) {
    this.#pos = base;
    this.#extent = base;
  }

  get description(): string {
    return `file:${this.path}`;
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    if (this.direct) checkDirect(this.description, p.length, this.#pos);
    const n = await this.file.read(p);
    if (n) this.#pos += n;
    return n;
  }

  async write(p: Uint8Array): Promise<void> {
    if (this.direct) checkDirect(this.description, p.length, this.#pos);
    let off = 0;
    while (off < p.length) off += await this.file.write(p.subarray(off));
    this.#pos += p.length;
    this.#extent = Math.max(this.#extent, this.#pos);
  }

  tell(): number {
    return this.#pos;
  }

  async seek(at: number): Promise<void> {
    this.#pos = await this.file.seek(at, Deno.SeekMode.Start);
  }

  async pwrite(p: Uint8Array, at: number): Promise<void> {
    if (this.direct) checkDirect(this.description, p.length, at);
    return await this.#serial(async (f) => {
      await f.seek(at, Deno.SeekMode.Start);
      let off = 0;
      while (off < p.length) off += await f.write(p.subarray(off));
      this.#extent = Math.max(this.#extent, at + p.length);
    });
  }

  async pread(p: Uint8Array, at: number): Promise<number> {
    if (this.direct) checkDirect(this.description, p.length, at);
    return await this.#serial(async (f) => {
      await f.seek(at, Deno.SeekMode.Start);
      let got = 0;
      while (got < p.length) {
        const n = await f.read(p.subarray(got));
        if (n === null) break;
        got += n;
      }
      return got;
    });
  }

  #serial<T>(op: (f: Deno.FsFile) => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      if (this.#closed) throw new Error(`${this.description}: channel closed`);
      this.#positioned ??= await Deno.open(this.path, { read: true, write: this.writable });
      return await op(this.#positioned);
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Writers cut the file at the furthest byte written so an older, longer stream leaves no tail. */
  truncateToEnd(): void {
    this.file.truncateSync(this.#extent);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.file.close();
    // A positioned operation in flight keeps its handle until it settles.
    void this.#queue.then(() => this.#positioned?.close());
  }
}

export async function fileOutgoing(
  path: string,
  offset: number,
  opts: FileOpenOptions = {},
): Promise<OutgoingFile> {
  const file = await Deno.open(path, { write: true, create: true, mode: 0o600 });
  await file.seek(offset, Deno.SeekMode.Start);
  return new FileLink(file, path, offset, true, opts.direct);
}

export async function fileIncoming(
  path: string,
  offset: number,
  opts: FileOpenOptions = {},
): Promise<SeekableLink> {
  const file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  return new FileLink(file, path, offset, false, opts.direct);
}
