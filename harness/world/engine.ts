/**
 * The engine world (the default): each side is a real engine process (engine/main.ts) with narrow
 * permissions, driven over QMP; memory, the COLO cache and device state come through its `x-test-`
 * commands.
 */
import type { RamSource } from "../check/ram_equal.ts";
import type { QmpClient } from "../../engine/qmp/client.ts";
import { ProcessSide, type SideProcess } from "./process_side.ts";
import { EngineProcess } from "./engine_process.ts";
import {
  type Breakpoints,
  type DeviceState,
  modelCannotRun,
  type PostcopyStats,
  type Side,
  type SideSpec,
  type Unavailable,
  type World,
} from "./world.ts";

/** A RAM source over a digest command and a read command of the engine (guest RAM or COLO cache). */
function engineRamSource(
  name: string,
  qmp: QmpClient,
  commands: { digest: string; read: string },
): RamSource {
  return {
    name,
    digests: () => qmp.execute(commands.digest, {}, { timeoutMs: 60_000 }),
    async readPage(idstr, offset, size) {
      const r = await qmp.execute<{ data: string }>(commands.read, { block: idstr, offset, size });
      return Uint8Array.fromBase64(r.data);
    },
  };
}

export class EngineSide<P extends SideProcess = EngineProcess> extends ProcessSide<P> implements Side {
  readonly staysUpAfterFailedLoad = true;

  constructor(
    process: P,
    name: "source" | "target",
    /** The block that holds guest-physical RAM from 0: pc.ram, or the memory backend's (named by its id). */
    readonly mainBlock = "pc.ram",
  ) {
    super(process, name);
  }

  ram(): RamSource {
    return engineRamSource(this.name, this.qmp, { digest: "x-test-ram-digest", read: "x-test-ram-read" });
  }

  coloCache(): RamSource | Unavailable {
    return engineRamSource(`${this.name}'s COLO cache`, this.qmp, {
      digest: "x-test-colo-cache-digest",
      read: "x-test-colo-cache-read",
    });
  }

  postcopyStats(): Promise<PostcopyStats> {
    return this.qmp.execute<PostcopyStats>("x-test-postcopy-stats");
  }

  async guestWritten(): Promise<Map<string, Uint8Array>> {
    const r = await this.qmp.execute<{ blocks: { idstr: string; pages: number; bitmap: string }[] }>(
      "x-test-guest-written",
    );
    return new Map(r.blocks.map((b) => [b.idstr, Uint8Array.fromBase64(b.bitmap)]));
  }

  async readRam(offset: number, size: number): Promise<Uint8Array> {
    const r = await this.qmp.execute<{ data: string }>("x-test-ram-read", {
      block: this.mainBlock,
      offset,
      size,
    });
    return Uint8Array.fromBase64(r.data);
  }

  async writeRam(offset: number, data: Uint8Array): Promise<void> {
    await this.qmp.execute("x-test-ram-write", { block: this.mainBlock, offset, data: data.toBase64() });
  }

  async firstBytes(start: number, end: number): Promise<Uint8Array> {
    const r = await this.qmp.execute<{ data: string }>("x-test-page-bytes", {
      block: this.mainBlock,
      start,
      end,
    });
    return Uint8Array.fromBase64(r.data);
  }

  async deviceState(): Promise<DeviceState> {
    return (await this.qmp.execute<{ devices: DeviceState }>("x-test-device-state")).devices;
  }

  breakpoints(): Breakpoints {
    const qmp = this.qmp;
    return {
      async arm(name, opts = {}) {
        await qmp.execute("x-test-breakpoint", { name, ...(opts.persistent ? { persistent: true } : {}) });
      },
      async continue(name, opts = {}) {
        await qmp.execute("x-test-continue", { name, ...(opts.disarm ? { disarm: true } : {}) });
      },
    };
  }

  async captureMainChannel(path: string): Promise<Unavailable | null> {
    await this.qmp.execute("x-test-capture", { file: path });
    return null;
  }
}

export const engineWorld: World = {
  name: "engine",
  cannotRun: (c, needs) =>
    modelCannotRun(c, needs) ??
      (needs.timed ? `${needs.timed} (the simulated world measures in virtual time: --backend sim)` : null) ??
      (needs.scheduled
        ? `${needs.scheduled}: between real processes it comes only by chance (the simulated world ` +
          "schedules it: --backend sim)"
        : null),
  async spawn(spec: SideSpec): Promise<Side> {
    const process = await EngineProcess.spawn({
      name: spec.name,
      dir: spec.dir,
      machine: spec.machine,
      qemuMachine: spec.qemuMachine,
      workload: JSON.stringify(spec.workload),
      incoming: spec.incoming,
      startPaused: spec.startPaused,
      uuid: spec.uuid,
      memPrealloc: spec.memPrealloc,
      dirtyRingSize: spec.dirtyRingSize,
      memoryBackend: spec.memoryBackend,
      auxRamShare: spec.auxRamShare,
      cprChannel: spec.cprChannel,
      vcpu: spec.vcpu,
      socketPaths: spec.socketPaths,
      transcript: spec.transcript,
      timeoutMs: spec.timeoutMs,
      oob: spec.colo,
    });
    return new EngineSide(process, spec.name, spec.memoryBackend?.id);
  },
};
