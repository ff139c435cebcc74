/**
 * Where a COLO checkpoint is on the wire, for the proxy (harness/wire_proxy.ts): the secondary's replies
 * on the main connection's return direction are COLO messages only (be32 COLOMessage values, from its
 * CHECKPOINT_READY on: precopy sends nothing back without return-path), and once that READY has gone by,
 * everything the primary sends is a checkpoint: CHECKPOINT_REQUEST; VMSTATE_SEND; the RAM it dirtied as
 * QEMU_VM_SECTION_END sections (page records ending in RAM_SAVE_FLAG_EOS, a footer) up to QEMU_VM_EOF;
 * VMSTATE_SIZE with a be64 length; that many bytes of device state. Parsing that much is enough to name
 * each moment of a checkpoint by its byte, so the proxy can hold the stream there while the harness
 * kills the primary: the wire form of the model's COLO breakpoints.
 */

/** COLOMessage (QAPI enum order). */
export const COLO_MESSAGE = {
  "checkpoint-ready": 0,
  "checkpoint-request": 1,
  "checkpoint-reply": 2,
  "vmstate-send": 3,
  "vmstate-size": 4,
  "vmstate-received": 5,
  "vmstate-loaded": 6,
} as const;

/**
 * A named place of checkpoint `checkpoint` (1 = the first after COLO starts), in the direction it is on:
 * - forward (primary → secondary): after the request; at the start of VMSTATE_SEND (both sides stopped);
 *   the middle of the first RAM page sent; the middle of the device state; its end;
 * - back (secondary → primary): before or after VMSTATE_RECEIVED; after VMSTATE_LOADED.
 */
export type ColoWirePlace =
  | "request-sent"
  | "send-start"
  | "ram-middle"
  | "devices-middle"
  | "devices-end"
  | "before-received"
  | "after-received"
  | "after-loaded";

export const FORWARD_PLACES: ReadonlySet<string> = new Set<ColoWirePlace>([
  "request-sent",
  "send-start",
  "ram-middle",
  "devices-middle",
  "devices-end",
]);

/** A place reached: in the chunk just fed, `at` bytes in (the bytes before it belong before the place). */
export interface ColoMark {
  place: ColoWirePlace;
  checkpoint: number;
  at: number;
}

// RAM page record flags (QEMU's RAM_SAVE_FLAG_*).
const ZERO = 0x02;
const PAGE = 0x08;
const EOS = 0x10;
const CONTINUE = 0x20;
const XBZRLE = 0x40;
const MULTIFD_FLUSH = 0x200;
const KNOWN_FLAGS = ZERO | PAGE | EOS | CONTINUE | XBZRLE | MULTIFD_FLUSH;
// Section types (QEMU_VM_*).
const SECTION_PART = 0x02;
const SECTION_END = 0x03;
const COMMAND = 0x08;
const EOF = 0x00;
const FOOTER = 0x7e;
const PAGE_SIZE = 4096;

/** What the forward parser asks of the bytes: read some, step over some, or say a place is here. */
type Ask = { read: number } | { skip: number } | { place: ColoWirePlace; before?: number };
type Parser = Generator<Ask, void, Uint8Array | undefined>;

export class ColoWireTracker {
  #requests = 0;
  #ready = false;
  #back: Uint8Array = new Uint8Array(0);
  readonly #parser: Parser = this.#checkpoints();
  #ask: Ask;
  #got: Uint8Array = new Uint8Array(0);
  #skipped = 0;
  /** Where the forward parse lost its way (bytes it could not read as a checkpoint). */
  problem: string | null = null;

  constructor() {
    this.#ask = this.#parser.next().value as Ask;
  }

  /** The secondary's CHECKPOINT_READY went by: the primary's next bytes are checkpoints. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Checkpoints whose request went by. */
  get checkpoints(): number {
    return this.#requests;
  }

  /** The secondary's bytes: the places they pass (message boundaries, so `at` is exact). */
  back(chunk: Uint8Array): ColoMark[] {
    const marks: ColoMark[] = [];
    const start = this.#back.length;
    this.#back = concat(this.#back, chunk);
    let off = 0;
    for (; off + 4 <= this.#back.length; off += 4) {
      const msg = view(this.#back).getUint32(off);
      const at = (n: number) => Math.max(0, n - start);
      if (msg === COLO_MESSAGE["checkpoint-ready"]) this.#ready = true;
      else if (msg === COLO_MESSAGE["vmstate-received"]) {
        marks.push({ place: "before-received", checkpoint: this.#requests, at: at(off) });
        marks.push({ place: "after-received", checkpoint: this.#requests, at: at(off + 4) });
      } else if (msg === COLO_MESSAGE["vmstate-loaded"]) {
        marks.push({ place: "after-loaded", checkpoint: this.#requests, at: at(off + 4) });
      }
    }
    this.#back = this.#back.slice(off);
    return marks;
  }

  /** The primary's bytes once READY went by (the precopy before it is not parsed). */
  forward(chunk: Uint8Array): ColoMark[] {
    const marks: ColoMark[] = [];
    let pos = 0;
    while (!this.problem) {
      const ask = this.#ask;
      let answer: Uint8Array | undefined;
      if ("place" in ask) {
        marks.push({
          place: ask.place,
          checkpoint: this.#requests,
          at: Math.max(0, pos - (ask.before ?? 0)),
        });
      } else if ("skip" in ask) {
        const n = Math.min(ask.skip - this.#skipped, chunk.length - pos);
        this.#skipped += n;
        pos += n;
        if (this.#skipped < ask.skip) break;
        this.#skipped = 0;
      } else {
        const n = Math.min(ask.read - this.#got.length, chunk.length - pos);
        this.#got = concat(this.#got, chunk.subarray(pos, pos + n));
        pos += n;
        if (this.#got.length < ask.read) break;
        answer = this.#got;
        this.#got = new Uint8Array(0);
      }
      const next = this.#parser.next(answer);
      if (next.done) break;
      this.#ask = next.value;
    }
    return marks;
  }

  /** The primary's checkpoints, message by message. */
  *#checkpoints(): Parser {
    while (true) {
      const msg = view(yield* this.#read(4)).getUint32(0);
      if (msg === COLO_MESSAGE["checkpoint-request"]) {
        this.#requests++;
        yield { place: "request-sent" };
      } else if (msg === COLO_MESSAGE["vmstate-send"]) {
        // Before its 4 bytes: the secondary, stopped, waits for them without the BQL (its monitor
        // answers); once they are in, it loads the RAM holding the BQL. Bytes of it a previous read
        // already sent leave it waiting for the rest, as before.
        yield { place: "send-start", before: 4 };
        yield* this.#ram();
        if (this.problem) return;
      } else if (msg === COLO_MESSAGE["vmstate-size"]) {
        const size = Number(view(yield* this.#read(8)).getBigUint64(0));
        const half = Math.floor(size / 2);
        yield { skip: half };
        yield { place: "devices-middle" };
        yield { skip: size - half };
        yield { place: "devices-end" };
      } else {
        this.problem = `unexpected COLO message ${msg} from the primary`;
        return;
      }
    }
  }

  /** The checkpoint's RAM part: sections of page records, commands, footers, up to QEMU_VM_EOF. */
  *#ram(): Generator<Ask, void, Uint8Array | undefined> {
    let first = true;
    while (true) {
      const type = (yield* this.#read(1))[0];
      if (type === EOF) return;
      if (type === FOOTER) {
        yield { skip: 4 };
      } else if (type === COMMAND) {
        const len = view(yield* this.#read(4)).getUint16(2);
        yield { skip: len };
      } else if (type === SECTION_END || type === SECTION_PART) {
        yield { skip: 4 };
        while (true) {
          const flags = Number(view(yield* this.#read(8)).getBigUint64(0) & 0xfffn);
          if (flags & ~KNOWN_FLAGS) {
            this.problem = `unknown RAM flags 0x${flags.toString(16)} in a checkpoint`;
            return;
          }
          if (flags & EOS) break;
          if (flags & (ZERO | PAGE | XBZRLE) && !(flags & CONTINUE)) {
            yield { skip: (yield* this.#read(1))[0] };
          }
          if (flags & ZERO) yield { skip: 1 };
          else if (flags & XBZRLE) yield { skip: view(yield* this.#read(3)).getUint16(1) };
          else if (flags & PAGE && first) {
            first = false;
            yield { skip: PAGE_SIZE / 2 };
            yield { place: "ram-middle" };
            yield { skip: PAGE_SIZE / 2 };
          } else if (flags & PAGE) yield { skip: PAGE_SIZE };
        }
      } else {
        this.problem = `unexpected section type 0x${type.toString(16)} in a checkpoint's RAM`;
        return;
      }
    }
  }

  *#read(n: number): Generator<Ask, Uint8Array, Uint8Array | undefined> {
    const b = yield { read: n };
    return b!;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
