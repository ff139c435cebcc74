/**
 * The `file:` transport (migration/file.c): the stream is written to, or read from, a file starting at
 * `offset`; bytes before the offset are left alone.
 */
import type { Link } from "./link.ts";

class FileLink implements Link {
  #closed = false;
  #written = 0;
  constructor(
    private readonly file: Deno.FsFile,
    readonly description: string,
    private readonly offset: number,
  ) {}

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    return await this.file.read(p);
  }

  async write(p: Uint8Array): Promise<void> {
    let off = 0;
    while (off < p.length) off += await this.file.write(p.subarray(off));
    this.#written += p.length;
  }

  /** Writers cut the file at the end of the stream so an older, longer stream leaves no tail. */
  truncateToEnd(): void {
    this.file.truncateSync(this.offset + this.#written);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.file.close();
  }
}

export async function fileOutgoing(path: string, offset: number): Promise<Link & { truncateToEnd(): void }> {
  const file = await Deno.open(path, { write: true, create: true, mode: 0o600 });
  await file.seek(offset, Deno.SeekMode.Start);
  return new FileLink(file, `file:${path}`, offset);
}

export async function fileIncoming(path: string, offset: number): Promise<Link> {
  const file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  return new FileLink(file, `file:${path}`, offset);
}
