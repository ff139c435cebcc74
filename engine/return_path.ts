/**
 * The return path (destination → source on the same connection): be16 type, be16 length, data.
 * The source learns from SHUT whether the destination loaded the stream, so it can report `failed`
 * instead of `completed` when the destination refused it.
 */
import { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";
import type { Link } from "./transport/link.ts";
import { asError } from "./error.ts";

export const MIG_RP_MSG_INVALID = 0;
export const MIG_RP_MSG_SHUT = 1;
export const MIG_RP_MSG_PONG = 2;

/** Destination side. */
export class ReturnPathSender {
  readonly #f: QEMUFileWriter;
  constructor(link: Link) {
    this.#f = new QEMUFileWriter(link, 4096);
  }

  async #send(type: number, value: number): Promise<void> {
    this.#f.putBe16(type);
    this.#f.putBe16(4);
    this.#f.putBe32(value);
    await this.#f.flush();
  }

  pong(value: number): Promise<void> {
    return this.#send(MIG_RP_MSG_PONG, value);
  }

  /** `failed`: the load failed (QEMU sends SHUT 1), else SHUT 0. */
  shut(failed: boolean): Promise<void> {
    return this.#send(MIG_RP_MSG_SHUT, failed ? 1 : 0);
  }
}

/** Source side: reads return-path messages until SHUT or the connection ends. */
export class ReturnPathReader {
  readonly pongs: number[] = [];
  /** Resolves with the SHUT flag, or with an Error when the path broke or carried garbage. */
  readonly shut: Promise<number | Error>;

  constructor(link: Link, onShutError: (e: Error) => void) {
    this.shut = this.#run(new QEMUFileReader(link, 4096)).then((flag) => {
      if (flag !== 0) {
        onShutError(new Error("the destination reported a failed load on the return path (SHUT 1)"));
      }
      return flag;
    }, (e) => asError(e));
  }

  async #run(r: QEMUFileReader): Promise<number> {
    while (true) {
      const at = r.position;
      await r.need(4, "return path message header");
      const type = r.getBe16();
      const len = r.getBe16();
      await r.need(len, "return path message");
      const data = r.getBytes(len);
      const value = len >= 4 ? new DataView(data.buffer).getUint32(0) : 0;
      if (type === MIG_RP_MSG_PONG && len === 4) this.pongs.push(value);
      else if (type === MIG_RP_MSG_SHUT && len === 4) return value;
      else throw r.error(`Received invalid return path message type ${type} length ${len}`, at);
    }
  }
}
