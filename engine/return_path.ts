/**
 * The return path (destination → source on the same connection): be16 type, be16 length, data
 * (migration.c's migrate_send_rp_* and source_return_path_thread). The source learns from SHUT whether
 * the destination loaded the stream; in postcopy the destination asks for pages (REQ_PAGES_ID /
 * REQ_PAGES) and, in a recovery, sends its received bitmaps (RECV_BITMAP) and acknowledges the resume.
 */
import { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";
import type { Link } from "./transport/link.ts";
import { asError } from "./error.ts";

export const MIG_RP_MSG_INVALID = 0;
export const MIG_RP_MSG_SHUT = 1;
export const MIG_RP_MSG_PONG = 2;
export const MIG_RP_MSG_REQ_PAGES_ID = 3;
export const MIG_RP_MSG_REQ_PAGES = 4;
export const MIG_RP_MSG_RECV_BITMAP = 5;
export const MIG_RP_MSG_RESUME_ACK = 6;
/** The destination lets the source switch over (switchover-ack; no payload). */
export const MIG_RP_MSG_SWITCHOVER_ACK = 7;
export const MIG_RP_MSG_MAX = 8;

/** Each message's name and length (rp_cmd_args; -1: variable, at most RP_MAX_LEN). */
const RP_CMD_ARGS: readonly { name: string; len: number }[] = [
  { name: "INVALID", len: -1 },
  { name: "SHUT", len: 4 },
  { name: "PONG", len: 4 },
  { name: "REQ_PAGES_ID", len: -1 },
  { name: "REQ_PAGES", len: 12 },
  { name: "RECV_BITMAP", len: -1 },
  { name: "RESUME_ACK", len: 4 },
  { name: "SWITCHOVER_ACK", len: 0 },
];
/** The source's buffer for one message: a longer one is refused before it is read. */
const RP_MAX_LEN = 512;

/** MIGRATION_RESUME_ACK_VALUE. */
export const MIGRATION_RESUME_ACK_VALUE = 1;
/** RAMBLOCK_RECV_BITMAP_ENDING: the mark after a received bitmap. */
export const RAMBLOCK_RECV_BITMAP_ENDING_HI = 0x01234567;
export const RAMBLOCK_RECV_BITMAP_ENDING_LO = 0x89abcdef;

/** The bytes of a received bitmap: one bit per page, as little-endian u64 words (QEMU's wire form). */
export function recvBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Destination side. Messages from the fault path and the loader may overlap: they go out one by one. */
export class ReturnPathSender {
  readonly #f: QEMUFileWriter;
  #queue: Promise<void> = Promise.resolve();
  constructor(readonly link: Link) {
    this.#f = new QEMUFileWriter(link, 4096);
  }

  #send(build: (f: QEMUFileWriter) => void): Promise<void> {
    const next = this.#queue.then(async () => {
      build(this.#f);
      await this.#f.flush();
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  #message(type: number, data: Uint8Array, f: QEMUFileWriter): void {
    f.putBe16(type);
    f.putBe16(data.length);
    f.putBytes(data);
  }

  #value(type: number, value: number): Promise<void> {
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, value);
    return this.#send((f) => this.#message(type, data, f));
  }

  pong(value: number): Promise<void> {
    return this.#value(MIG_RP_MSG_PONG, value);
  }

  /** `failed`: the load failed (QEMU sends SHUT 1), else SHUT 0. */
  shut(failed: boolean): Promise<void> {
    return this.#value(MIG_RP_MSG_SHUT, failed ? 1 : 0);
  }

  /** migrate_send_rp_req_pages: REQ_PAGES_ID names the block when it differs from the last request's. */
  reqPages(idstr: string | null, start: number, len: number): Promise<void> {
    const id = idstr === null ? new Uint8Array() : new TextEncoder().encode(idstr);
    const data = new Uint8Array(12 + (idstr === null ? 0 : 1 + id.length));
    const v = new DataView(data.buffer);
    v.setUint32(0, Math.floor(start / 0x1_0000_0000));
    v.setUint32(4, start >>> 0);
    v.setUint32(8, len);
    if (idstr !== null) {
      data[12] = id.length;
      data.set(id, 13);
    }
    return this.#send((f) =>
      this.#message(idstr === null ? MIG_RP_MSG_REQ_PAGES : MIG_RP_MSG_REQ_PAGES_ID, data, f)
    );
  }

  /** migrate_send_rp_recv_bitmap: the message names the block; the bitmap follows it on the path. */
  recvBitmap(idstr: string, received: Uint32Array, pages: number): Promise<void> {
    const id = new TextEncoder().encode(idstr);
    const data = new Uint8Array(1 + id.length);
    data[0] = id.length;
    data.set(id, 1);
    const size = recvBitmapBytes(pages);
    const body = new Uint8Array(size);
    // Little-endian words of one bit per page: byte k holds pages 8k..8k+7, lowest bit first.
    for (let p = 0; p < pages; p++) if (received[p >>> 5] & (1 << (p & 31))) body[p >>> 3] |= 1 << (p & 7);
    return this.#send((f) => {
      this.#message(MIG_RP_MSG_RECV_BITMAP, data, f);
      f.putBe32(Math.floor(size / 0x1_0000_0000));
      f.putBe32(size >>> 0);
      f.putBytes(body);
      f.putBe32(RAMBLOCK_RECV_BITMAP_ENDING_HI);
      f.putBe32(RAMBLOCK_RECV_BITMAP_ENDING_LO);
    });
  }

  resumeAck(): Promise<void> {
    return this.#value(MIG_RP_MSG_RESUME_ACK, MIGRATION_RESUME_ACK_VALUE);
  }

  switchoverAck(): Promise<void> {
    return this.#send((f) => this.#message(MIG_RP_MSG_SWITCHOVER_ACK, new Uint8Array(0), f));
  }
}

/** What the source does with postcopy's return-path messages. */
export interface ReturnPathHandlers {
  /** A page request: `idstr` null means the block of the last REQ_PAGES_ID. */
  reqPages?(idstr: string, start: number, len: number): void;
  /** The bitmap's expected size in bytes for a block, or an error when there is no such block. */
  bitmapSize?(idstr: string): number | Error;
  recvBitmap?(idstr: string, bitmap: Uint8Array): void;
  resumeAck?(value: number): void;
  /** The destination allows the switchover (switchover-ack). */
  switchoverAck?(): void;
}

/** A SHUT with a nonzero flag: the destination's load failed (source_return_path_thread's words). */
const hex4 = (n: number) => n.toString(16).padStart(4, "0");

export function siblingError(flag: number): Error {
  return new Error(`Sibling indicated error ${flag}`);
}

/** Source side: reads return-path messages until SHUT or the connection ends. */
export class ReturnPathReader {
  readonly pongs: number[] = [];
  /** Resolves with the SHUT flag, or with an Error when the path broke or carried garbage. */
  readonly shut: Promise<number | Error>;
  /** The path ended because its channel broke or closed (not because of what it carried). */
  lostChannel = false;

  constructor(
    link: Link,
    onShutError: (e: Error) => void,
    private readonly handlers: ReturnPathHandlers = {},
  ) {
    this.shut = this.#run(new QEMUFileReader(link, 4096)).then((flag) => {
      if (flag !== 0) onShutError(siblingError(flag));
      return flag;
    }, (e) => {
      const err = asError(e);
      // Garbage on the path fails the migration at once, as QEMU's return-path thread sets the
      // migration's error (found by deno task fuzz: a live guest waiting for a switchover-ack the
      // garbage replaced waited for ever). A channel that broke or closed is the caller's to judge.
      if (!this.lostChannel) onShutError(new Error(`return path: ${err.message}`));
      return err;
    });
  }

  async #run(r: QEMUFileReader): Promise<number> {
    let lastBlock: string | null = null;
    const h = this.handlers;
    const need = async (n: number, what: string) => {
      try {
        await r.need(n, what);
      } catch (e) {
        this.lostChannel = true;
        throw e;
      }
    };
    while (true) {
      const at = r.position;
      await need(4, "return path message header");
      const type = r.getBe16();
      const len = r.getBe16();
      // Type and length are checked before the body is read, as QEMU does: a length garbage made
      // long must not leave the source waiting for bytes that never come (found by deno task fuzz).
      if (type === MIG_RP_MSG_INVALID || type >= MIG_RP_MSG_MAX) {
        throw r.error(`Received invalid message 0x${hex4(type)} length 0x${hex4(len)}`, at);
      }
      const spec = RP_CMD_ARGS[type];
      if ((spec.len !== -1 && len !== spec.len) || len > RP_MAX_LEN) {
        throw r.error(
          `Received '${spec.name}' message (0x${
            hex4(type)
          }) with incorrect length ${len} expecting ${spec.len}`,
          at,
        );
      }
      await need(len, "return path message");
      const data = r.getBytes(len);
      const view = new DataView(data.buffer);
      const value = len >= 4 ? view.getUint32(0) : 0;
      const bad = () => r.error(`Received invalid return path message type ${type} length ${len}`, at);
      switch (type) {
        case MIG_RP_MSG_PONG:
          if (len !== 4) throw bad();
          this.pongs.push(value);
          break;
        case MIG_RP_MSG_SHUT:
          if (len !== 4) throw bad();
          return value;
        case MIG_RP_MSG_REQ_PAGES_ID:
        case MIG_RP_MSG_REQ_PAGES: {
          if (!h.reqPages) throw bad();
          const withId = type === MIG_RP_MSG_REQ_PAGES_ID;
          if (len < 12 || (withId ? len < 13 || len !== 13 + data[12] : len !== 12)) throw bad();
          const start = view.getUint32(0) * 0x1_0000_0000 + view.getUint32(4);
          const size = view.getUint32(8);
          if (withId) lastBlock = new TextDecoder().decode(data.subarray(13));
          if (lastBlock === null) throw r.error("REQ_PAGES without a block: no REQ_PAGES_ID came before", at);
          h.reqPages(lastBlock, start, size);
          break;
        }
        case MIG_RP_MSG_RECV_BITMAP: {
          if (!h.recvBitmap || !h.bitmapSize || len < 1 || len !== 1 + data[0]) throw bad();
          const idstr = new TextDecoder().decode(data.subarray(1));
          const expected = h.bitmapSize(idstr);
          if (expected instanceof Error) throw r.error(expected.message, at);
          await need(8, `received bitmap size of ${idstr}`);
          const size = r.getBe64(`received bitmap size of ${idstr}`);
          if (size !== expected) {
            throw r.error(
              `ramblock '${idstr}' bitmap size mismatch (0x${size.toString(16)} != 0x${
                expected.toString(16)
              })`,
              at,
            );
          }
          await need(size + 8, `received bitmap of ${idstr}`);
          const bitmap = r.getBytes(size);
          const [hi, lo] = r.getBe64Parts();
          if (hi !== RAMBLOCK_RECV_BITMAP_ENDING_HI || lo !== RAMBLOCK_RECV_BITMAP_ENDING_LO) {
            throw r.error(
              `ramblock '${idstr}' end mark incorrect: 0x${hi.toString(16)}${
                lo.toString(16).padStart(8, "0")
              }`,
              at,
            );
          }
          h.recvBitmap(idstr, bitmap);
          break;
        }
        case MIG_RP_MSG_RESUME_ACK:
          if (!h.resumeAck || len !== 4) throw bad();
          h.resumeAck(value);
          break;
        case MIG_RP_MSG_SWITCHOVER_ACK:
          if (len !== 0) throw bad();
          h.switchoverAck?.();
          break;
        default:
          throw bad();
      }
    }
  }
}
