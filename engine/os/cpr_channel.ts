/**
 * The cpr channel between processes (cpr-transfer.c): a unix socket on which the source sends the CPR
 * state with the descriptors of guest RAM (SCM_RIGHTS), and whose hang-up by the target says the target
 * is ready for the main channel.
 */
import type { CprChannel, CprFd } from "../cpr.ts";
import { decodeCprState } from "../cpr.ts";
import {
  accept,
  closeFd,
  readFd,
  recvWithFds,
  sendWithFds,
  shutdownFd,
  shutdownWrite,
  unixConnect,
  unixListen,
} from "./libc.ts";

export const libcCprChannel: CprChannel = {
  async send(path, bytes, fds) {
    const sock = unixConnect(path);
    try {
      for (let off = 0; off < bytes.length;) {
        off += await sendWithFds(sock, bytes.subarray(off), off ? [] : fds);
      }
      shutdownWrite(sock);
    } catch (e) {
      closeFd(sock);
      throw e;
    }
    const hangup = (async () => {
      try {
        while (await readFd(sock, new Uint8Array(64)) > 0) { /* the target says nothing; it hangs up */ }
      } catch {
        // A reset is a hang-up too.
      } finally {
        closeFd(sock);
      }
    })();
    return { hangup };
  },
};

/**
 * The target (cpr_state_load): listens on `path`, takes one connection and reads the state to its end
 * with the descriptors that came with it. `hangUp` closes the connection: the source then connects the
 * main channel.
 */
export async function receiveCprState(path: string): Promise<{ fds: CprFd[]; hangUp(): void }> {
  const listener = unixListen(path);
  let sock: number | null = null;
  try {
    // Nothing shuts this listener down before the source connects, so a failed accept is a transient one
    // (an interrupted call): take the next connection rather than close the channel on the source.
    for (let tries = 0; sock === null && tries < 50; tries++) {
      sock = await accept(listener);
      if (sock === null) console.error(`cpr channel ${path}: accept failed; listening on`);
    }
  } finally {
    shutdownFd(listener);
    closeFd(listener);
    await Deno.remove(path).catch(() => {});
  }
  if (sock === null) throw new Error(`cpr channel ${path}: no connection`);
  const conn = sock;
  const chunks: number[] = [];
  const fds: number[] = [];
  try {
    while (true) {
      const buf = new Uint8Array(65536);
      const { n, fds: got } = await recvWithFds(conn, buf);
      fds.push(...got);
      if (n === 0) break;
      chunks.push(...buf.subarray(0, n));
    }
    return { fds: decodeCprState(new Uint8Array(chunks), fds), hangUp: () => closeFd(conn) };
  } catch (e) {
    closeFd(conn);
    for (const fd of fds) closeFd(fd);
    throw e;
  }
}
