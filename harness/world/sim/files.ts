/**
 * The simulated world's files: the `file:` paths of one pair, in memory, shared by both sides and the
 * flow. Every operation completes at once (no real I/O), so a file migration is a function of the seed
 * like everything else in the simulation; the scheduler decides between the stream's other steps.
 */
import {
  checkDirect,
  type FileOpenOptions,
  type FileStore,
  type OutgoingFile,
  type SeekableLink,
} from "../../../engine/transport/file.ts";

class SimFile {
  data = new Uint8Array(0);
  length = 0;

  write(p: Uint8Array, at: number): void {
    const end = at + p.length;
    if (end > this.data.length) {
      const bigger = new Uint8Array(Math.max(end, this.data.length * 2));
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(p, at);
    this.length = Math.max(this.length, end);
  }

  read(p: Uint8Array, at: number): number {
    const n = Math.max(0, Math.min(p.length, this.length - at));
    p.set(this.data.subarray(at, at + n));
    return n;
  }

  truncate(len: number): void {
    if (len < this.length) this.data.fill(0, len, this.length);
    this.length = len;
  }
}

/** `fn` now, as a settled promise (a refused operation rejects, as a real file's would). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

class SimFileLink implements OutgoingFile {
  #pos: number;
  #extent: number;
  #closed = false;
  constructor(
    private readonly file: SimFile,
    private readonly path: string,
    readonly base: number,
    private readonly direct = false,
  ) {
    this.#pos = base;
    this.#extent = base;
  }
  get description(): string {
    return `file:${this.path}`;
  }
  #check(): void {
    if (this.#closed) throw new Error(`${this.description}: channel closed`);
  }
  read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.resolve(null);
    return settle(() => {
      if (this.direct) checkDirect(this.description, p.length, this.#pos);
      const n = this.file.read(p, this.#pos);
      this.#pos += n;
      return n === 0 && p.length > 0 ? null : n;
    });
  }
  write(p: Uint8Array): Promise<void> {
    return settle(() => {
      this.#check();
      if (this.direct) checkDirect(this.description, p.length, this.#pos);
      this.file.write(p, this.#pos);
      this.#pos += p.length;
      this.#extent = Math.max(this.#extent, this.#pos);
    });
  }
  tell(): number {
    return this.#pos;
  }
  seek(at: number): Promise<void> {
    this.#pos = at;
    return Promise.resolve();
  }
  pwrite(p: Uint8Array, at: number): Promise<void> {
    return settle(() => {
      this.#check();
      if (this.direct) checkDirect(this.description, p.length, at);
      this.file.write(p, at);
      this.#extent = Math.max(this.#extent, at + p.length);
    });
  }
  pread(p: Uint8Array, at: number): Promise<number> {
    return settle(() => {
      this.#check();
      if (this.direct) checkDirect(this.description, p.length, at);
      return this.file.read(p, at);
    });
  }
  truncateToEnd(): void {
    this.file.truncate(this.#extent);
  }
  close(): void {
    this.#closed = true;
  }
}

export class SimFiles implements FileStore {
  readonly #files = new Map<string, SimFile>();

  outgoing(path: string, offset: number, opts: FileOpenOptions = {}): Promise<OutgoingFile> {
    let f = this.#files.get(path);
    if (!f) this.#files.set(path, f = new SimFile());
    return Promise.resolve(new SimFileLink(f, path, offset, opts.direct));
  }

  incoming(path: string, offset: number, opts: FileOpenOptions = {}): Promise<SeekableLink> {
    const f = this.#files.get(path);
    if (!f) return Promise.reject(new Error(`No such file or directory (os error 2): open '${path}'`));
    return Promise.resolve(new SimFileLink(f, path, offset, opts.direct));
  }
}
