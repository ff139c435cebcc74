/**
 * Descriptors a case hands a side, as upstream's fd and fdset tests do (qtest_qmp_fds): a second
 * monitor connection that carries them with the command (SCM_RIGHTS), and the descriptors themselves (a
 * socketpair, files opened with given flags). Between real processes they are this process's own (libc);
 * the simulated world has stand-ins with the same rules.
 */
import { QmpClient } from "../engine/qmp/client.ts";
import type { QmpTranscriptEntry } from "../engine/qmp/client.ts";
import { FdConn } from "../engine/os/fd_conn.ts";
import {
  closeFd,
  O_CREAT,
  O_DIRECT,
  O_RDONLY,
  O_WRONLY,
  openFile,
  socketPair,
  unixConnect,
} from "../engine/os/libc.ts";

/** A monitor connection that can pass descriptors with a command. */
export interface FdMonitor {
  /** `cmd` with `fds` attached (they go with the command's bytes); the reply's `return`. */
  execute<T = unknown>(cmd: string, args?: Record<string, unknown>, fds?: number[]): Promise<T>;
  close(): Promise<void>;
}

export interface FileFlags {
  write: boolean;
  create?: boolean;
  direct?: boolean;
}

/** What a side offers for descriptor passing. */
export interface SideFds {
  /** The side's descriptor-passing monitor (one connection, made on first use, closed with the side). */
  monitor(): Promise<FdMonitor>;
  socketPair(): [number, number];
  openFile(path: string, flags: FileFlags): number;
  /** Closes the harness's own copy (the side keeps what it received). */
  close(fd: number): void;
}

/** The OS's descriptors, passed over `path` (the side's `--qmp-fd` socket, or QEMU's second monitor). */
export function osFds(
  path: string,
  name: string,
  transcript: QmpTranscriptEntry[],
  timeoutMs: number,
): SideFds & {
  dispose(): Promise<void>;
} {
  let made: Promise<{ conn: FdConn; client: QmpClient }> | null = null;
  const connect = async () => {
    const conn = new FdConn(unixConnect(path));
    try {
      const client = await QmpClient.over(conn, path, { name: `${name}-fd`, transcript, timeoutMs });
      return { conn, client };
    } catch (e) {
      conn.close();
      throw e;
    }
  };
  return {
    async monitor() {
      made ??= connect();
      const { conn, client } = await made;
      return {
        execute<T>(cmd: string, args?: Record<string, unknown>, fds: number[] = []) {
          // The descriptors ride on the command's first bytes; one command at a time here.
          conn.sendWithNextWrite(fds);
          return client.execute<T>(cmd, args);
        },
        close: () => client.close(),
      };
    },
    socketPair: () => socketPair(),
    openFile(p, f) {
      const flags = (f.write ? O_WRONLY : O_RDONLY) | (f.create ? O_CREAT : 0) | (f.direct ? O_DIRECT : 0);
      return openFile(p, flags);
    },
    close: (fd) => closeFd(fd),
    async dispose() {
      if (!made) return;
      const m = await made.catch(() => null);
      await m?.client.close();
    },
  };
}
