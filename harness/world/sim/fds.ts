/**
 * Descriptors in the simulated world: numbers in one table per pair standing for a socket (an end of a
 * simulated connection) or an open file of the pair's in-memory files, with the OS's rules — a
 * descriptor passed to a side is a new number there (a dup), the object goes when its last number
 * closes, access mode and O_DIRECT are fixed at open. The engine's monitor code (engine/monitor/fds.ts)
 * runs unchanged on it.
 */
import type { FdHost } from "../../../engine/monitor/fds.ts";
import type { FileStore } from "../../../engine/transport/file.ts";
import type { Link } from "../../../engine/transport/link.ts";
import type { QmpConn } from "../../../engine/qmp/server.ts";
import type { FileFlags } from "../../fds.ts";
import type { SimNetwork } from "./net.ts";

type SimFd = { kind: "socket"; link: Link } | { kind: "file"; path: string; write: boolean; direct: boolean };

export class SimFdTable implements FdHost {
  #next = 100;
  readonly #fds = new Map<number, SimFd>();

  constructor(private readonly net: SimNetwork, private readonly files: FileStore) {}

  #add(o: SimFd): number {
    const fd = this.#next++;
    this.#fds.set(fd, o);
    return fd;
  }

  #get(fd: number): SimFd {
    const o = this.#fds.get(fd);
    if (!o) throw new Error(`fd ${fd}: Bad file descriptor`);
    return o;
  }

  close(fd: number): void {
    const o = this.#fds.get(fd);
    this.#fds.delete(fd);
    if (o?.kind === "socket" && ![...this.#fds.values()].includes(o)) o.link.close();
  }

  dup(fd: number): number {
    return this.#add(this.#get(fd));
  }

  accessMode(fd: number): number {
    const o = this.#fds.get(fd);
    return !o ? -1 : o.kind === "socket" ? 2 : o.write ? 1 : 0;
  }

  isDirect(fd: number): boolean {
    const o = this.#fds.get(fd);
    return o?.kind === "file" && o.direct;
  }

  link(fd: number): Link {
    const o = this.#get(fd);
    if (o.kind !== "socket") throw new Error(`fd ${fd}: not a socket`);
    this.#fds.delete(fd);
    return o.link;
  }

  file(fd: number, _description: string, base: number) {
    const o = this.#get(fd);
    if (o.kind !== "file") throw new Error(`fd ${fd}: not a file`);
    this.#fds.delete(fd);
    return o.write
      ? this.files.outgoing(o.path, base, { direct: o.direct })
      : this.files.incoming(o.path, base, { direct: o.direct }).then((l) =>
        Object.assign(l, { truncateToEnd: () => {} })
      );
  }

  /** A connected pair of stream sockets. */
  socketPair(): [number, number] {
    const [a, b] = this.net.socketPair("socketpair");
    return [this.#add({ kind: "socket", link: a }), this.#add({ kind: "socket", link: b })];
  }

  openFile(path: string, f: FileFlags): number {
    return this.#add({ kind: "file", path, write: f.write, direct: f.direct === true });
  }

  /** What SCM_RIGHTS does: the receiver gets its own numbers for the sender's descriptors. */
  pass(fds: number[]): number[] {
    return fds.map((fd) => this.dup(fd));
  }
}

/**
 * A monitor connection's engine end that hands over the descriptors the harness attached to what it
 * wrote (in order: the harness sends one command at a time on it).
 */
export function withFds(conn: QmpConn, queue: number[]): QmpConn {
  return {
    read: (p) => conn.read(p),
    write: (p) => conn.write(p),
    close: () => conn.close(),
    takeFds: () => queue.splice(0),
  };
}
