/**
 * One fuzz input: a target (tools/fuzz/targets.ts), the simulation's seed and the edits on its stream.
 * Inputs are drawn by fast-check from the fuzzer's seed, aimed by the stream's structure as a clean run
 * of the target recorded it ("anchors": where sections, multifd packets and return-path messages begin,
 * and where sections end): most edits land on or near an anchor, where a header field is, the rest
 * anywhere. An input is JSON, so a finding replays exactly (`deno task fuzz --replay`).
 */
import fc from "fast-check";
import { analyzeStream } from "../analyze/stream.ts";
import type { Edit, StreamMutation } from "../../harness/wire_mutate.ts";
import { FUZZ_TARGETS, type FuzzTarget, type StreamKind, targetNamed } from "./targets.ts";

export interface FuzzInput {
  target: string;
  seed: number;
  mutation: StreamMutation;
}

/** The multifd handshake's and every packet's magic (MULTIFD_MAGIC). */
const MULTIFD_MAGIC = 0x11223344;
/** RP_RECV_BITMAP: its bitmap follows the message outside its length. */
const RP_RECV_BITMAP = 5;
/** The seed a target's anchors were recorded with: most inputs run it, so the anchors are exact. */
export const RECORD_SEED = 1;

/** Where the structure of a recorded stream begins (and, for sections, ends). */
export async function anchorsOf(kind: StreamKind, bytes: Uint8Array): Promise<number[]> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Set<number>([0]);
  if (kind === "main" || kind === "colo" || kind === "file") {
    // A mapped-ram file is read as a file (its RAM sits at fixed offsets): the analyzer gets a copy.
    const tmp = kind === "file" ? await Deno.makeTempFile({ prefix: "migtest-fuzz-" }) : null;
    try {
      if (tmp) await Deno.writeFile(tmp, bytes);
      const r = await analyzeStream(tmp ?? bytes);
      for (const s of r.sections) {
        out.add(s.offset);
        // The footer: 0x7e and the be32 section id.
        if (s.size !== undefined && s.size >= 5) out.add(s.offset + s.size - 5);
      }
    } catch {
      // A stream the analyzer cannot read to its end (COLO's checkpoints follow the precopy): the
      // sections it read are anchors enough, and the rest of the input lands anywhere.
    } finally {
      if (tmp) await Deno.remove(tmp);
    }
  } else if (kind === "multifd") {
    for (let i = 0; i + 4 <= bytes.length; i++) if (v.getUint32(i) === MULTIFD_MAGIC) out.add(i);
  } else {
    let off = 0;
    while (off + 4 <= bytes.length) {
      out.add(off);
      let end = off + 4 + v.getUint16(off + 2);
      if (v.getUint16(off) === RP_RECV_BITMAP && end + 8 <= bytes.length) {
        end += 8 + Number(v.getBigUint64(end)) + 8;
      }
      off = end;
    }
  }
  return [...out].filter((a) => a < bytes.length).sort((a, b) => a - b);
}

/** What a recording of a target gives the generator: its anchors and its length. */
export interface Recording {
  anchors: number[];
  length: number;
}

const INTERESTING = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];

function offsetArb(r: Recording): fc.Arbitrary<number> {
  const anchor = fc.constantFrom(...r.anchors);
  const len = Math.max(1, r.length);
  return fc.oneof(
    { weight: 5, arbitrary: fc.tuple(anchor, fc.nat({ max: 31 })).map(([a, d]) => a + d) },
    { weight: 2, arbitrary: fc.tuple(anchor, fc.nat({ max: 4096 + 63 })).map(([a, d]) => a + d) },
    { weight: 3, arbitrary: fc.nat({ max: len - 1 }) },
  );
}

function editArb(r: Recording): fc.Arbitrary<Edit> {
  const at = offsetArb(r);
  const byte = fc.integer({ min: 0, max: 255 });
  const bytes = (max: number) =>
    fc.array(fc.oneof(fc.constantFrom(...INTERESTING), byte), { minLength: 1, maxLength: max });
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant("xor" as const),
        at,
        mask: fc.oneof(fc.integer({ min: 0, max: 7 }).map((b) => 1 << b), fc.integer({ min: 1, max: 255 })),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("set" as const), at, bytes: bytes(8) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("insert" as const), at, bytes: bytes(16) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant("remove" as const),
        at,
        count: fc.integer({ min: 1, max: 16 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("cut" as const), at }) },
  );
}

/**
 * Inputs for `target` given its recording: one edit mostly, up to four. In a COLO checkpoint the edits
 * count from a place of it, and land within its first 8 KiB from there.
 */
export function inputArb(target: FuzzTarget, r: Recording): fc.Arbitrary<FuzzInput> {
  const rec = target.coloFrom ? { anchors: [0], length: 8192 } : r;
  const edits = fc.oneof(
    { weight: 7, arbitrary: editArb(rec).map((e) => [e]) },
    { weight: 3, arbitrary: fc.array(editArb(rec), { minLength: 2, maxLength: 4 }) },
  );
  const from = target.coloFrom
    ? fc.record({
      place: fc.constantFrom(...target.coloFrom.places),
      checkpoint: fc.constant(target.coloFrom.checkpoints),
    }).map((f): StreamMutation["from"] => f)
    : fc.constant(undefined);
  const seed = fc.oneof(
    { weight: 3, arbitrary: fc.constant(RECORD_SEED) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  );
  return fc.record({ seed, edits, from }).map(({ seed, edits, from }) => ({
    target: target.name,
    seed,
    mutation: {
      connection: target.connection,
      direction: target.direction,
      ...(from ? { from } : {}),
      edits,
    },
  }));
}

/** Parses a `--replay` input, checking it names a target and its edits are edits. */
export function parseInput(text: string): FuzzInput {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`--replay: not JSON: ${(e as Error).message}`);
  }
  const p = (typeof v === "object" && v !== null ? v : {}) as Partial<FuzzInput>;
  const target = typeof p.target === "string" ? targetNamed(p.target) : undefined;
  if (!target) {
    throw new Error(`--replay: target is one of ${FUZZ_TARGETS.map((t) => t.name).join(", ")}`);
  }
  const m = p.mutation;
  if (typeof p.seed !== "number" || !m || !Array.isArray(m.edits) || !m.edits.every(isEdit)) {
    throw new Error("--replay: an input has target, seed and mutation {connection, direction, edits}");
  }
  if (typeof m.connection !== "number" || (m.direction !== "forward" && m.direction !== "back")) {
    throw new Error("--replay: a mutation has connection (number) and direction (forward|back)");
  }
  return { target: target.name, seed: p.seed >>> 0, mutation: m };
}

function isEdit(x: unknown): x is Edit {
  if (typeof x !== "object" || x === null) return false;
  const e: Record<string, unknown> = { ...x };
  if (typeof e.at !== "number" || e.at < 0) return false;
  const byteList = (b: unknown) => Array.isArray(b) && b.every((n) => typeof n === "number");
  switch (e.op) {
    case "xor":
      return typeof e.mask === "number";
    case "set":
    case "insert":
      return byteList(e.bytes);
    case "remove":
      return typeof e.count === "number";
    case "cut":
      return true;
    default:
      return false;
  }
}
