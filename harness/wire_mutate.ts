/**
 * A stream mangled on the wire (`deno task fuzz`), on a simulated link or through the wire proxy: edits
 * at byte offsets of one direction of one migration connection — a byte XORed or overwritten, bytes
 * inserted or removed, the connection cut. The sides are untouched: the source writes its stream as
 * always, the destination reads what the link delivers. Offsets count from the direction's first byte,
 * or from a named place of a COLO checkpoint (found by parsing the stream as the wire proxy does), so a
 * mutation lands in a checkpoint.
 */
import { ColoWireTracker } from "./wire_colo.ts";
import type { Edit, StreamMutation } from "./case.ts";

export type { Edit, StreamMutation };

/** What happens at one byte of the original stream. */
interface Action {
  xor: number;
  set?: number;
  drop?: boolean;
  before?: number[];
  cut?: boolean;
}

/** The edits of a mutation as actions per byte offset of the original stream (edits that meet add up). */
function actionsOf(edits: readonly Edit[], base: number): Map<number, Action> {
  const actions = new Map<number, Action>();
  const at = (p: number) => {
    let a = actions.get(p);
    if (!a) actions.set(p, a = { xor: 0 });
    return a;
  };
  for (const e of edits) {
    const p = base + e.at;
    switch (e.op) {
      case "xor":
        at(p).xor ^= e.mask & 0xff;
        break;
      case "set":
        e.bytes.forEach((b, i) => (at(p + i).set = b & 0xff));
        break;
      case "insert":
        at(p).before = [...(at(p).before ?? []), ...e.bytes.map((b) => b & 0xff)];
        break;
      case "remove":
        for (let i = 0; i < e.count; i++) at(p + i).drop = true;
        break;
      case "cut":
        at(p).cut = true;
        break;
    }
  }
  return actions;
}

/** One direction's mutator: fed the bytes in order as the link delivers them, returns what arrives. */
export class StreamMutator {
  #pos = 0;
  #actions: Map<number, Action> | null = null;
  #positions: number[] = [];
  #tracker: ColoWireTracker | null = null;
  #cut = false;
  /** Offsets (of the original stream) the edits took effect at, for the report. */
  readonly applied: number[] = [];

  /** `keep`: the original bytes are kept too (the fuzzer records a clean run's stream). */
  readonly #kept: Uint8Array[] | null;

  constructor(readonly mutation: StreamMutation, opts: { keep?: boolean } = {}) {
    this.#kept = opts.keep ? [] : null;
    if (mutation.from) this.#tracker = new ColoWireTracker();
    else this.#arm(0);
  }

  /** The original bytes seen so far (with `keep`). */
  kept(): Uint8Array {
    const parts = this.#kept ?? [];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  /** Bytes of the original stream seen so far. */
  get position(): number {
    return this.#pos;
  }

  /** The connection's other direction (the COLO parse needs the secondary's READY). */
  other(chunk: Uint8Array): void {
    this.#tracker?.back(chunk);
  }

  /** Whether the connection must reset after the bytes `apply` returned (an edit cut it). */
  get cut(): boolean {
    return this.#cut;
  }

  apply(part: Uint8Array): Uint8Array {
    if (this.#cut) return new Uint8Array(0);
    const start = this.#pos;
    this.#pos += part.length;
    this.#kept?.push(part.slice());
    if (this.#tracker && !this.#actions) {
      // The precopy before the secondary's READY is not a checkpoint (nor parsed as one).
      if (!this.#tracker.ready) return part;
      const from = this.mutation.from!;
      const mark = this.#tracker.forward(part)
        .find((m) => m.place === from.place && m.checkpoint === from.checkpoint);
      if (!mark) return part;
      this.#arm(start + mark.at);
    }
    const inPart = this.#positions.filter((p) => p >= start && p < start + part.length);
    if (inPart.length === 0) return part;
    const out: number[] = [];
    let i = 0;
    for (const p of inPart) {
      for (; i < p - start; i++) out.push(part[i]);
      const a = this.#actions!.get(p)!;
      this.applied.push(p);
      if (a.cut) {
        this.#cut = true;
        return Uint8Array.from(out);
      }
      if (a.before) out.push(...a.before);
      if (!a.drop) out.push(((a.set ?? part[i]) ^ a.xor) & 0xff);
      i++;
    }
    const rest = part.subarray(i);
    const head = Uint8Array.from(out);
    const joined = new Uint8Array(head.length + rest.length);
    joined.set(head);
    joined.set(rest, head.length);
    return joined;
  }

  #arm(base: number): void {
    this.#actions = actionsOf(this.mutation.edits, base);
    this.#positions = [...this.#actions.keys()].sort((a, b) => a - b);
  }
}

/** A mutation as one line for a report. */
export function describeMutation(m: StreamMutation): string {
  const from = m.from ? ` from ${m.from.place} of checkpoint ${m.from.checkpoint}` : "";
  const edits = m.edits.map((e) => {
    switch (e.op) {
      case "xor":
        return `xor 0x${e.mask.toString(16)} at ${e.at}`;
      case "set":
        return `set [${e.bytes.map((b) => `0x${b.toString(16)}`).join(" ")}] at ${e.at}`;
      case "insert":
        return `insert ${e.bytes.length} B at ${e.at}`;
      case "remove":
        return `remove ${e.count} B at ${e.at}`;
      case "cut":
        return `cut at ${e.at}`;
    }
  });
  return `connection ${m.connection} ${m.direction}${from}: ${edits.join(", ")}`;
}
