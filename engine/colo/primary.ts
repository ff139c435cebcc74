/**
 * The primary's COLO loop (colo_process_checkpoint / colo_do_checkpoint_transaction in migration/colo.c):
 * after the initial precopy, wait for CHECKPOINT_READY, run the guest, and every x-checkpoint-delay ms
 * take a checkpoint: stop, send RAM as END sections on the main stream and the device state as a sized
 * buffer, wait until the secondary has received and applied it, resume.
 */
import { errorMessage } from "../error.ts";
import type { Breakpoints } from "../testing/breakpoints.ts";
import type { Machine } from "../guest/machine.ts";
import type { MultifdSendState } from "../multifd/send.ts";
import type { MigrationOptions } from "../options.ts";
import { QEMUFileReader, QEMUFileWriter } from "../qemu_file.ts";
import type { RamSaveState } from "../ram.ts";
import { QEMU_VM_EOF, saveDevices, type SaveVMState } from "../savevm.ts";
import { CollectLink } from "../transport/buffer.ts";
import type { Link } from "../transport/link.ts";
import { Failover } from "./failover.ts";
import { COLO_MESSAGE, receiveColoMessage, sendColoMessage } from "./message.ts";

export interface ColoPrimaryHost {
  machine: Machine;
  options: MigrationOptions;
  breakpoints: Breakpoints;
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  f: QEMUFileWriter;
  link: Link;
  ram: RamSaveState;
  /** The registered sections: their END sections carry a checkpoint's RAM. */
  savevm: SaveVMState;
  multifd: MultifdSendState | null;
  /** Migration status colo → completed once the failover is done. */
  completed(): void;
}

export interface CheckpointStats {
  /** checkpoint-request to vmstate-loaded, ms. */
  latency: number;
  /** How long the primary's guest was stopped, ms. */
  pause: number;
  ramPages: number;
  deviceBytes: number;
}

export class ColoPrimary {
  readonly failover = new Failover();
  readonly stats: CheckpointStats[] = [];
  #kick: PromiseWithResolvers<void> = Promise.withResolvers();
  #error: string | null = null;

  constructor(private readonly host: ColoPrimaryHost) {}

  get checkpoints(): number {
    return this.stats.length;
  }

  /** colo_checkpoint_notify: take a checkpoint now (x-checkpoint-delay changed, or a test asked). */
  requestCheckpoint(): void {
    this.#kick.resolve();
  }

  /** x-colo-lost-heartbeat on the primary: the secondary is gone, the primary goes on alone. */
  requestFailover(): void {
    if (this.failover.transition("none", "require") !== "none") {
      throw new Error("COLO failover is already activated");
    }
    // Shutting the channels unblocks a checkpoint waiting on the dead peer.
    this.host.link.close();
    this.host.multifd?.close();
    this.#kick.resolve();
  }

  /** Runs until a failover completes. */
  async run(): Promise<void> {
    const { machine, options } = this.host;
    const r = new QEMUFileReader(this.host.link, 4096);
    try {
      await receiveColoMessage(r, "checkpoint-ready");
      machine.start();
      while (this.failover.status === "none") {
        const delay = options.params["x-checkpoint-delay"];
        let cancel = () => {};
        await Promise.race([
          new Promise<void>((res) => (cancel = machine.clock.timer(res, delay))),
          this.#kick.promise,
        ]);
        cancel();
        this.#kick = Promise.withResolvers();
        if (this.failover.status !== "none") break;
        await this.#checkpoint(r);
      }
    } catch (e) {
      if (this.failover.status === "none") {
        // An error exit: report it, keep the guest as it is, and wait for management to fail over.
        this.#error = errorMessage(e);
        this.host.log(`COLO: checkpoint failed: ${this.#error}`);
        this.host.emit("COLO_EXIT", { mode: "primary", reason: "error" });
      }
    }
    await this.failover.requested;
    this.#doFailover();
  }

  /** primary_vm_do_failover: the primary keeps running on its own. */
  #doFailover(): void {
    this.failover.transition("require", "active");
    this.host.link.close();
    this.host.multifd?.close();
    if (!this.host.machine.running) this.host.machine.start();
    this.failover.transition("active", "completed");
    this.host.completed();
    if (!this.#error) this.host.emit("COLO_EXIT", { mode: "primary", reason: "request" });
  }

  get lastError(): string | null {
    return this.#error;
  }

  async #checkpoint(r: QEMUFileReader): Promise<void> {
    const { machine, f, ram, savevm, breakpoints: bp } = this.host;
    const n = this.checkpoints + 1;
    const t0 = machine.clock.now();
    await sendColoMessage(f, "checkpoint-request");
    await bp.hit("colo-request-sent", { checkpoint: n });
    await receiveColoMessage(r, "checkpoint-reply");
    if (this.failover.status !== "none") throw new Error("failover requested during the checkpoint");
    await machine.stop("colo");
    const tStop = machine.clock.now();
    if (this.failover.status !== "none") throw new Error("failover requested during the checkpoint");
    await sendColoMessage(f, "vmstate-send");

    // The device state is saved first, into a buffer, but sent after the RAM with its size in front.
    const collect = new CollectLink();
    const dev = new QEMUFileWriter(collect);
    saveDevices(dev, machine.devices);
    dev.put8(QEMU_VM_EOF);
    await dev.flush();
    const buffer = collect.bytes();

    const pagesBefore = ram.counters.normal + ram.counters.duplicate + (this.host.multifd?.normalPages ?? 0) +
      (this.host.multifd?.zeroPages ?? 0);
    await savevm.saveCompletePrecopy(f, {
      lastStage: false,
      onHalf: () => bp.hit("colo-ram-half-sent", { checkpoint: n }),
    });
    f.put8(QEMU_VM_EOF);
    f.putBe32(COLO_MESSAGE["vmstate-size"]);
    f.putBe64(buffer.length);
    const half = buffer.length >> 1;
    f.putBytes(buffer.subarray(0, half));
    await f.flush();
    await bp.hit("colo-device-buffer-half-sent", { checkpoint: n });
    f.putBytes(buffer.subarray(half));
    await f.flush();

    await receiveColoMessage(r, "vmstate-received");
    await bp.hit("colo-after-vmstate-received", { checkpoint: n });
    await receiveColoMessage(r, "vmstate-loaded");
    await bp.hit("colo-after-vmstate-loaded", { checkpoint: n });
    machine.start();
    const end = machine.clock.now();
    const pagesAfter = ram.counters.normal + ram.counters.duplicate + (this.host.multifd?.normalPages ?? 0) +
      (this.host.multifd?.zeroPages ?? 0);
    this.stats.push({
      latency: end - t0,
      pause: end - tStop,
      ramPages: pagesAfter - pagesBefore,
      deviceBytes: buffer.length,
    });
  }
}
