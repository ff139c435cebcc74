/**
 * A stream socket held by its raw descriptor (engine/os/libc.ts), with the descriptors that travel on it:
 * what a QEMU monitor connection is when a client passes files with SCM_RIGHTS, and what a migration
 * channel is when it comes from `fd:`. Reads and writes run off the event loop.
 */
import { closeFd, readFd, recvWithFds, sendWithFds, shutdownFd, writeAllFd } from "./libc.ts";

export class FdConn {
  #closed = false;
  #busy = 0;
  #released = false;
  /** Descriptors to send with the next write. */
  #outgoing: number[] = [];
  /** Descriptors received and not yet taken (getfd/add-fd take the latest). */
  readonly #incoming: number[] = [];

  /** `passing`: use sendmsg/recvmsg (descriptors ride along); else plain read/write. */
  constructor(readonly fd: number, private readonly passing = true) {}

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    this.#busy++;
    try {
      if (!this.passing) {
        const n = await readFd(this.fd, p);
        return n === 0 || this.#closed ? null : n;
      }
      const { n, fds } = await recvWithFds(this.fd, p);
      this.#incoming.push(...fds);
      return n === 0 || this.#closed ? null : n;
    } catch (e) {
      if (this.#closed) return null;
      throw e;
    } finally {
      this.#busy--;
      this.#release();
    }
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Error(`fd ${this.fd}: closed`);
    this.#busy++;
    try {
      if (!this.passing) {
        await writeAllFd(this.fd, p);
        return p.length;
      }
      const fds = this.#outgoing;
      this.#outgoing = [];
      return await sendWithFds(this.fd, p, fds);
    } finally {
      this.#busy--;
      this.#release();
    }
  }

  /** Sends `fds` (SCM_RIGHTS) with the next write: the QMP command that takes them. */
  sendWithNextWrite(fds: number[]): void {
    this.#outgoing.push(...fds);
  }

  /** The descriptors received so far, oldest first, handed over (the caller owns them now). */
  takeFds(): number[] {
    return this.#incoming.splice(0);
  }

  /** Wakes any blocked read or write; the descriptor is closed once none is left on it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    shutdownFd(this.fd);
    for (const f of this.#incoming.splice(0)) closeFd(f);
    this.#release();
  }

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  #release(): void {
    if (!this.#closed || this.#busy > 0 || this.#released) return;
    this.#released = true;
    closeFd(this.fd);
  }
}
