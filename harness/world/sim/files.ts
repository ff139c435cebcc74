/**
 * The simulated world's files: the `file:` paths of one pair, in memory, shared by both sides and the
 * flow. Every operation completes at once (no real I/O), so a file migration is a function of the seed
 * like everything else in the simulation; the scheduler decides between the stream's other steps.
 */
import type { FileStore, OutgoingFile, SeekableLink } from "../../../engine/transport/file.ts";

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

class SimFileLink implements OutgoingFile {
  #pos: number;
  #extent: number;
  #closed = false;
  constructor(private readonly file: SimFile, private readonly path: string, readonly base: number) {
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
    const n = this.file.read(p, this.#pos);
    this.#pos += n;
    return Promise.resolve(n === 0 && p.length > 0 ? null : n);
  }
  write(p: Uint8Array): Promise<void> {
    this.#check();
    this.file.write(p, this.#pos);
    this.#pos += p.length;
    this.#extent = Math.max(this.#extent, this.#pos);
    return Promise.resolve();
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
    this.file.write(p, at);
    this.#extent = Math.max(this.#extent, at + p.length);
    return Promise.resolve();
  }
  pread(p: Uint8Array, at: number): Promise<number> {
    this.#check();
    return Promise.resolve(this.file.read(p, at));
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

  outgoing(path: string, offset: number): Promise<OutgoingFile> {
    let f = this.#files.get(path);
    if (!f) this.#files.set(path, f = new SimFile());
    return Promise.resolve(new SimFileLink(f, path, offset));
  }

  incoming(path: string, offset: number): Promise<SeekableLink> {
    const f = this.#files.get(path);
    if (!f) return Promise.reject(new Error(`No such file or directory (os error 2): open '${path}'`));
    return Promise.resolve(new SimFileLink(f, path, offset));
  }
}
