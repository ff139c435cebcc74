/**
 * File descriptors handed to the monitor (monitor/fds.c): `getfd` names one for the monitor connection
 * it came on (migrate fd:NAME takes it from there), `add-fd` puts one in a numbered fdset shared by all
 * monitors, from which `/dev/fdset/N` opens a duplicate whose access mode matches. What a descriptor is
 * (an OS file descriptor, or the simulated world's stand-in) is the FdHost's business.
 */

import type { Link } from "../transport/link.ts";
import type { FileStore, OutgoingFile } from "../transport/file.ts";

/** How descriptors are used and released: the host's libc, or the simulation's table. */
export interface FdHost {
  close(fd: number): void;
  dup(fd: number): number;
  /** O_RDONLY (0), O_WRONLY (1) or O_RDWR (2); -1 when not open. */
  accessMode(fd: number): number;
  isDirect(fd: number): boolean;
  /** A connected socket's descriptor as a migration channel (fd:); closing the Link closes it. */
  link(fd: number, description: string): Link;
  /** A file's descriptor as a seekable channel from `base` on (file:/dev/fdset/N); closing closes it. */
  file(fd: number, description: string, base: number): Promise<OutgoingFile>;
}

export interface FdsetInfo {
  "fdset-id": number;
  fds: { fd: number; opaque?: string }[];
}

export class MonitorFds {
  readonly #named = new Map<number, Map<string, number>>();
  readonly #sets = new Map<number, { fd: number; opaque?: string }[]>();

  constructor(readonly host: FdHost) {}

  /** getfd: `fd` (just received) under `name` on monitor connection `client`; a name reused closes the old. */
  getfd(client: number, name: string, fd: number): void {
    if (/^\d/.test(name)) {
      this.host.close(fd);
      throw new Error("File descriptor name cannot start with a digit");
    }
    let m = this.#named.get(client);
    if (!m) this.#named.set(client, m = new Map());
    const old = m.get(name);
    if (old !== undefined) this.host.close(old);
    m.set(name, fd);
  }

  /** monitor_get_fd: the named descriptor, now the caller's (the name is gone). */
  take(client: number, name: string): number {
    const m = this.#named.get(client);
    const fd = m?.get(name);
    if (fd === undefined) throw new Error(`File descriptor named '${name}' has not been found`);
    m!.delete(name);
    return fd;
  }

  closefd(client: number, name: string): void {
    const m = this.#named.get(client);
    const fd = m?.get(name);
    if (fd === undefined) throw new Error(`File descriptor named '${name}' not found`);
    m!.delete(name);
    this.host.close(fd);
  }

  /** A monitor connection went: the descriptors it named go with it. */
  clientGone(client: number): void {
    for (const fd of this.#named.get(client)?.values() ?? []) this.host.close(fd);
    this.#named.delete(client);
  }

  /** add-fd: into fdset `id` (default: the lowest unused), returns where it went. */
  addFd(fd: number, id?: number, opaque?: string): { "fdset-id": number; fd: number } {
    if (id !== undefined && id < 0) {
      this.host.close(fd);
      throw new Error("Parameter 'fdset-id' expects a non-negative value");
    }
    let set = id;
    if (set === undefined) { for (set = 0; this.#sets.has(set); set++); }
    const fds = this.#sets.get(set) ?? [];
    fds.push(opaque === undefined ? { fd } : { fd, opaque });
    this.#sets.set(set, fds);
    return { "fdset-id": set, fd };
  }

  /** remove-fd: one descriptor of a set, or the whole set; an emptied set is gone. */
  removeFd(id: number, fd?: number): void {
    const fds = this.#sets.get(id);
    const gone = fds?.filter((f) => fd === undefined || f.fd === fd) ?? [];
    if (!gone.length) {
      const what = fd === undefined ? `fdset-id:${id}` : `fdset-id:${id}, fd:${fd}`;
      throw new Error(`File descriptor named '${what}' not found`);
    }
    for (const f of gone) this.host.close(f.fd);
    const left = fds!.filter((f) => !gone.includes(f));
    if (left.length) this.#sets.set(id, left);
    else this.#sets.delete(id);
  }

  query(): FdsetInfo[] {
    return [...this.#sets].sort(([a], [b]) => a - b).map(([id, fds]) => ({
      "fdset-id": id,
      fds: fds.map((f) => ({ ...f })),
    }));
  }

  /**
   * qemu_open of `/dev/fdset/N` (monitor_fdset_dup_fd_add): a duplicate of the set's first descriptor
   * with the access mode asked for and the same O_DIRECT, or QEMU's errno text.
   */
  open(path: string, mode: number, direct: boolean): number {
    const m = /^\/dev\/fdset\/(\d+)$/.exec(path);
    if (!m) throw new Error(`Could not open '${path}': not an fdset`);
    const fds = this.#sets.get(Number(m[1]));
    if (!fds) throw new Error(`Could not open '${path}': No such file or directory`);
    const f = fds.find((x) => this.host.accessMode(x.fd) === mode && this.host.isDirect(x.fd) === direct);
    if (!f) throw new Error(`Could not open '${path}': Permission denied`);
    return this.host.dup(f.fd);
  }
}

/** Whether a `file:` path names an fdset. */
export function isFdsetPath(path: string): boolean {
  return path.startsWith("/dev/fdset/");
}

const O_RDONLY = 0;
const O_WRONLY = 1;

/** `files` with `/dev/fdset/N` opened from the monitor's fdsets (qemu_open), writers O_WRONLY, readers O_RDONLY. */
export function fdsetFiles(files: FileStore, fds: MonitorFds): FileStore {
  return {
    outgoing: (path, offset, opts) =>
      isFdsetPath(path)
        ? fds.host.file(fds.open(path, O_WRONLY, opts?.direct ?? false), `file:${path}`, offset)
        : files.outgoing(path, offset, opts),
    incoming: (path, offset, opts) =>
      isFdsetPath(path)
        ? fds.host.file(fds.open(path, O_RDONLY, opts?.direct ?? false), `file:${path}`, offset)
        : files.incoming(path, offset, opts),
  };
}
