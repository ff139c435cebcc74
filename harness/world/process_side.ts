/**
 * What an engine side and a QEMU side share: a process with QMP, a serial file and an exit (a child
 * process, or the simulated world's engine in this process).
 */
import type { QmpClient } from "../../engine/qmp/client.ts";
import { type FileStore, hostFiles } from "../../engine/transport/file.ts";
import { hostNetwork, type Network } from "../../engine/transport/socket.ts";
import { osFds } from "../fds.ts";

/** The process behind a side: spawned, with QMP connected, and a clean kill. */
export interface SideProcess {
  readonly name: string;
  readonly stderr: string;
  readonly exitStatus: Deno.CommandStatus | null;
  waitExit(timeoutMs: number): Promise<Deno.CommandStatus>;
  sigkill(): Promise<Deno.CommandStatus>;
  readonly qmp: QmpClient;
  readonly serialPath: string;
  /** The monitor socket that takes descriptors (the engine's --qmp-fd, QEMU's second monitor). */
  readonly fdMonitorPath: string;
  kill(): Promise<Deno.CommandStatus>;
}

export abstract class ProcessSide<P extends SideProcess> {
  #fds: ReturnType<typeof osFds> | null = null;
  constructor(readonly process: P, readonly name: "source" | "target") {}

  /** Descriptors passed the way QEMU takes them: this process's own, over the fd monitor socket. */
  fds(): ReturnType<typeof osFds> {
    this.#fds ??= osFds(this.process.fdMonitorPath, this.name, this.qmp.transcriptSink(), this.qmp.timeoutMs);
    return this.#fds;
  }

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
  async sigkill(): Promise<Deno.CommandStatus> {
    await this.#fds?.dispose();
    return await this.process.sigkill();
  }
  async kill(): Promise<Deno.CommandStatus> {
    await this.#fds?.dispose();
    return await this.process.kill();
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
