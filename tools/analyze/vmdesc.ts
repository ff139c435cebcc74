/**
 * Finding the vmdesc (QEMU_VM_VMDESCRIPTION: u8 0x06 + be32 length + JSON) from the tail of the file.
 * It is the last thing in the stream and the only schema for device sections, which carry no
 * self-description on the wire, so it is found before the stream is parsed.
 */
import { MAX_VMDESC, QEMU_VM_EOF, QEMU_VM_VMDESCRIPTION } from "../../engine/savevm.ts";
import type { Link } from "../../engine/transport/link.ts";
import { openSource, type Source } from "./source.ts";
import type { AnalyzeOptions, FoundVmdesc, Vmdesc } from "./types.ts";

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function be32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** JSON text is printable: no control bytes other than whitespace. */
function looksLikeText(b: Uint8Array): boolean {
  for (const c of b) if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  return true;
}

/** The vmdesc's top level as this tool needs it: an object with a "devices" array. */
function isVmdesc(v: unknown): v is Vmdesc {
  return isRecord(v) && Array.isArray(v.devices);
}

export interface VmdescScan {
  found: FoundVmdesc | null;
  /** A vmdesc record whose announced length runs past the end of the file. */
  truncated: { offset: number; announced: number; present: number } | null;
}

/**
 * Looks for `0x06 + be32 len + JSON` ending exactly at the end of the file, in its last MAX_VMDESC bytes
 * (the engine's limit, and the 10 MiB analyze-migration.py reads). The first candidate whose length
 * matches and whose JSON parses to an object with a "devices" array wins (JSON text cannot contain a raw
 * 0x06, so a hit inside the JSON is impossible).
 */
export async function scanVmdesc(src: Source, streamStart: number): Promise<VmdescScan> {
  const tail = await src.tail(Math.min(MAX_VMDESC + 5, src.size - streamStart));
  const base = src.size - tail.length;
  const end = tail.length;
  if (end >= 6 && tail[end - 1] === CLOSE_BRACE) {
    for (let p = 0; p + 6 <= end; p++) {
      if (
        tail[p] !== QEMU_VM_VMDESCRIPTION || tail[p + 5] !== OPEN_BRACE || be32(tail, p + 1) !== end - p - 5
      ) {
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(tail.subarray(p + 5)));
      } catch {
        continue;
      }
      if (isVmdesc(json)) return { found: { offset: base + p, length: end - p - 5, json }, truncated: null };
    }
  }
  // No complete vmdesc: look for one that was cut short (EOF byte, 0x06, a length past the end, text).
  for (let p = 1; p + 6 <= end; p++) {
    if (tail[p] !== QEMU_VM_VMDESCRIPTION || tail[p - 1] !== QEMU_VM_EOF || tail[p + 5] !== OPEN_BRACE) {
      continue;
    }
    const announced = be32(tail, p + 1);
    const present = end - p - 5;
    if (announced > present && looksLikeText(tail.subarray(p + 5))) {
      return { found: null, truncated: { offset: base + p, announced, present } };
    }
  }
  return { found: null, truncated: null };
}

/** Just the vmdesc (what `--dump desc` prints); null if the file has none. */
export async function findVmdesc(
  source: string | Uint8Array | Link,
  opts: AnalyzeOptions = {},
): Promise<FoundVmdesc | null> {
  return (await scanVmdesc(await openSource(source), opts.offset ?? 0)).found;
}
