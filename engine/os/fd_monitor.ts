/**
 * A QMP monitor socket that takes descriptors (QEMU's monitors accept SCM_RIGHTS on theirs): a unix
 * socket held through libc, each connection served by the engine's one QMP server, so getfd and
 * migrate fd:NAME on one connection share its named descriptors.
 */
import type { QmpServer } from "../qmp/server.ts";
import { FdConn } from "./fd_conn.ts";
import { accept, closeFd, shutdownFd, unixListen } from "./libc.ts";

export class FdMonitorListener {
  readonly #fd: number;
  readonly #loop: Promise<void>;
  readonly #conns = new Set<FdConn>();
  #closed = false;

  constructor(readonly path: string, private readonly server: QmpServer) {
    this.#fd = unixListen(path);
    this.#loop = this.#accept();
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      const c = await accept(this.#fd);
      if (c === null || this.#closed) {
        if (c !== null) closeFd(c);
        break;
      }
      const conn = new FdConn(c);
      this.#conns.add(conn);
      this.server.connect(conn);
    }
    closeFd(this.#fd);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // shutdown() wakes the thread blocked in accept(); the loop then closes the socket.
    shutdownFd(this.#fd);
    await this.#loop;
    for (const c of this.#conns) c.close();
    try {
      Deno.removeSync(this.path);
    } catch {
      // Gone already.
    }
  }
}
