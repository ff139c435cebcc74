/**
 * What an engine side and a QEMU side share: a process with QMP, a serial file and an exit (a child
 * process, or the simulated world's engine in this process).
 */
import type { QmpClient } from "../../engine/qmp/client.ts";
import { type FileStore, hostFiles } from "../../engine/transport/file.ts";
import { hostNetwork, type Network } from "../../engine/transport/socket.ts";

/** The process behind a side: spawned, with QMP connected, and a clean kill. */
export interface SideProcess {
  readonly name: string;
  readonly stderr: string;
  readonly exitStatus: Deno.CommandStatus | null;
  waitExit(timeoutMs: number): Promise<Deno.CommandStatus>;
  sigkill(): Promise<Deno.CommandStatus>;
  readonly qmp: QmpClient;
  readonly serialPath: string;
  kill(): Promise<Deno.CommandStatus>;
}

export abstract class ProcessSide<P extends SideProcess> {
  constructor(readonly process: P, readonly name: "source" | "target") {}

  get qmp(): QmpClient {
    return this.process.qmp;
  }
  get serialPath(): string {
    return this.process.serialPath;
  }
  get stderr(): string {
    return this.process.stderr;
  }
  get exitStatus(): Deno.CommandStatus | null {
    return this.process.exitStatus;
  }

  waitExit(timeoutMs: number): Promise<Deno.CommandStatus> {
    return this.process.waitExit(timeoutMs);
  }
  sigkill(): Promise<Deno.CommandStatus> {
    return this.process.sigkill();
  }
  kill(): Promise<Deno.CommandStatus> {
    return this.process.kill();
  }

  /** A process side's channels are the host's sockets. */
  network(): Network {
    return hostNetwork;
  }

  /** A process side's file: paths are the host's files. */
  files(): FileStore {
    return hostFiles;
  }
}
