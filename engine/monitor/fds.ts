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
   * qemu_open of `/dev/fdset/N` with open(2) `flags` (monitor_fdset_dup_fd_add): the set's first
   * descriptor with that access mode and the same O_DIRECT, duplicated; or QEMU's error.
   */
  open(path: string, flags: number): number {
    return this.host.dup(this.#find(path, flags));
  }

  /** What open would take, without taking it: the migrate command's own check before it starts. */
  check(path: string, flags: number): void {
    this.#find(path, flags);
  }

  #find(path: string, flags: number): number {
    const m = /^\/dev\/fdset\/(\d+)$/.exec(path);
    const fds = m ? this.#sets.get(Number(m[1])) : undefined;
    if (!fds) throw new Error(`Failed to find fdset ${path}`);
    const direct = (flags & O_DIRECT) !== 0;
    const f = fds.find((x) =>
      this.host.accessMode(x.fd) === (flags & O_ACCMODE) && this.host.isDirect(x.fd) === direct
    );
    if (!f) throw new Error(`Failed to find file descriptor with matching flags=0x${flags.toString(16)}`);
    return f.fd;
  }
}

/** Whether a `file:` path names an fdset. */
export function isFdsetPath(path: string): boolean {
  return path.startsWith("/dev/fdset/");
}

const O_ACCMODE = 3;
const O_DIRECT = 0o40000;
/** The flags migration/file.c opens its file with: the source O_CREAT|O_WRONLY, the destination O_RDONLY. */
export const FILE_OUT_FLAGS = 0o101;
export const FILE_IN_FLAGS = 0;

/** The open flags of a `file:` channel (plus O_DIRECT for direct-io's channels). */
export function fileFlags(outgoing: boolean, direct = false): number {
  return (outgoing ? FILE_OUT_FLAGS : FILE_IN_FLAGS) | (direct ? O_DIRECT : 0);
}

/** `files` with `/dev/fdset/N` opened from the monitor's fdsets (qemu_open). */
export function fdsetFiles(files: FileStore, fds: MonitorFds): FileStore {
  const open = (path: string, outgoing: boolean, offset: number, direct = false) =>
    Promise.resolve().then(() =>
      fds.host.file(fds.open(path, fileFlags(outgoing, direct)), `file:${path}`, offset)
    );
  return {
    outgoing: (path, offset, opts) =>
      isFdsetPath(path) ? open(path, true, offset, opts?.direct) : files.outgoing(path, offset, opts),
    incoming: (path, offset, opts) =>
      isFdsetPath(path) ? open(path, false, offset, opts?.direct) : files.incoming(path, offset, opts),
  };
}
