/**
 * Where a stream comes from: a file (read from an offset, with its tail read separately for the vmdesc
 * scan), bytes in memory, or a Link. A Link is read to its end first: the vmdesc, the only schema for
 * device sections, is the last thing in the stream, so it must be found before the stream is parsed.
 */
import { BytesLink, readAll } from "../../engine/transport/buffer.ts";
import { fileIncoming } from "../../engine/transport/file.ts";
import type { Link } from "../../engine/transport/link.ts";

export interface Source {
  /** Whole file length. */
  size: number;
  /** The last `n` bytes of the file (fewer if the file is shorter). */
  tail(n: number): Promise<Uint8Array>;
  /** A link reading the file from `offset`. */
  open(offset: number): Promise<Link>;
  description: string;
}

export function bytesSource(bytes: Uint8Array, description = "memory"): Source {
  return {
    size: bytes.length,
    tail: (n) => Promise.resolve(bytes.subarray(Math.max(0, bytes.length - n))),
    open: (offset) => Promise.resolve(new BytesLink(bytes.subarray(offset), description)),
    description,
  };
}

export async function fileSource(path: string): Promise<Source> {
  const size = (await Deno.stat(path)).size;
  return {
    size,
    async tail(n) {
      const len = Math.min(n, size);
      const out = new Uint8Array(len);
      using f = await Deno.open(path, { read: true });
      await f.seek(size - len, Deno.SeekMode.Start);
      let off = 0;
      while (off < len) {
        const got = await f.read(out.subarray(off));
        if (got === null) break;
        off += got;
      }
      return out.subarray(0, off);
    },
    open: (offset) => fileIncoming(path, offset),
    description: `file:${path}`,
  };
}

/** A file path, bytes, or a Link (consumed here; the caller still closes it). */
export async function openSource(source: string | Uint8Array | Link): Promise<Source> {
  if (typeof source === "string") return await fileSource(source);
  if (source instanceof Uint8Array) return bytesSource(source);
  return bytesSource(await readAll(source), source.description);
}
