/**
 * The secondary's COLO loop (colo_process_incoming_thread / colo_incoming_process_checkpoint): run the
 * secondary VM, and for each checkpoint stop, receive the RAM into the COLO cache and the device state
 * into a buffer, and only once all of it is in: reset the devices, flush cache → guest RAM, load the
 * devices, resume. A checkpoint interrupted before the apply never touches guest RAM or devices.
 */
import { errorMessage } from "../error.ts";
import type { Breakpoints } from "../testing/breakpoints.ts";
import type { Machine } from "../guest/machine.ts";
import type { MultifdRecvState } from "../multifd/recv.ts";
import { QEMUFileReader, QEMUFileWriter } from "../qemu_file.ts";
import type { RamLoadState } from "../ram.ts";
import type { VmStateLoader } from "../savevm.ts";
import { BytesLink } from "../transport/buffer.ts";
import type { Link } from "../transport/link.ts";
import type { ColoCache } from "./cache.ts";
import { Failover } from "./failover.ts";
import { receiveColoMessage, receiveColoValue, sendColoMessage } from "./message.ts";

/** Largest device-state buffer accepted (the stream says its size; a corrupt size must not allocate GBs). */
const MAX_DEVICE_BUFFER = 64 << 20;

export interface ColoSecondaryHost {
  machine: Machine;
  breakpoints: Breakpoints;
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  link: Link;
  r: QEMUFileReader;
  loader: VmStateLoader;
  ram: RamLoadState;
  cache: ColoCache;
  multifd: MultifdRecvState | null;
  /** Known defect: release the cache before the multifd channels have stopped. */
  releaseCacheEarly: boolean;
  /** Reset the devices before loading a checkpoint over them (false only as a known defect). */
  resetDevices: boolean;
  /** Loads a device-state buffer (FULL sections + EOF). */
  loadDevices(r: QEMUFileReader): Promise<void>;
  /** The incoming status: colo while checkpointing, completed after the takeover. */
  setStatus(s: "colo" | "completed"): void;
}

export class ColoSecondary {
  readonly failover = new Failover();
  /** Checkpoints applied so far. */
  applied = 0;
  /** The apply is running (QEMU's vmstate_loading): a failover request now becomes RELAUNCH. */
  loading = false;
  #error: string | null = null;

  constructor(private readonly host: ColoSecondaryHost) {}

  get lastError(): string | null {
    return this.#error;
  }

  /** x-colo-lost-heartbeat on the secondary: take over. */
  requestFailover(): void {
    if (this.loading) {
      // Deferred until the checkpoint is applied completely; then the failover runs.
      if (this.failover.transition("none", "relaunch") !== "none") {
        throw new Error("COLO failover is already activated");
      }
      return;
    }
    if (this.failover.transition("none", "require") !== "none") {
      throw new Error("COLO failover is already activated");
    }
    // Shut every migration channel, as QEMU's failover and yank do: the main loader may be parked at a
    // multifd sync point, which only the channels ending can release.
    this.host.link.close();
    void this.host.multifd?.close();
  }

  async run(): Promise<void> {
    const h = this.host;
    const w = new QEMUFileWriter(h.link, 4096);
    // Entering COLO: received pages now go to the cache only; the SVM's own writes are logged from here.
    h.cache.inColoState = true;
    h.cache.startDirtyLog();
    h.setStatus("colo");
    h.machine.start();
    try {
      await sendColoMessage(w, "checkpoint-ready");
      while (this.failover.status === "none") {
        await receiveColoMessage(h.r, "checkpoint-request");
        await this.#checkpoint(w);
        // A failover requested during the apply (the status can change across the await above).
        if ((this.failover.status as string) === "relaunch") {
          // RELAUNCH → NONE → REQUIRE: the deferred failover runs now; no VMSTATE_LOADED is sent.
          this.failover.transition("relaunch", "none");
          this.failover.transition("none", "require");
          break;
        }
        await sendColoMessage(w, "vmstate-loaded");
      }
    } catch (e) {
      if (this.failover.status === "none") {
        this.#error = errorMessage(e);
        h.log(`COLO: secondary checkpoint failed: ${this.#error}`);
        h.emit("COLO_EXIT", { mode: "secondary", reason: "error" });
      }
    }
    await this.failover.requested;
    await this.#doFailover();
  }

  /** secondary_vm_do_failover: the SVM takes over from its last applied checkpoint (plus its own run). */
  async #doFailover(): Promise<void> {
    const h = this.host;
    this.failover.transition("require", "active");
    h.link.close();
    // The cache goes only after every multifd receive channel has stopped.
    if (h.releaseCacheEarly) h.cache.release();
    await h.multifd?.close();
    h.cache.release();
    if (!h.machine.running) h.machine.start();
    this.failover.transition("active", "completed");
    h.setStatus("completed");
    if (!this.#error) h.emit("COLO_EXIT", { mode: "secondary", reason: "request" });
  }

  async #checkpoint(w: QEMUFileWriter): Promise<void> {
    const h = this.host;
    const bp = h.breakpoints;
    const n = this.applied + 1;
    await h.machine.stop("colo");
    await bp.hit("colo-stopped", { checkpoint: n });
    await sendColoMessage(w, "checkpoint-reply");
    await receiveColoMessage(h.r, "vmstate-send");

    // RAM: END section(s) and EOF on the main stream, into the cache (multifd pages too, before EOF).
    let pages = 0;
    let halfHit = false;
    h.ram.onPage = () => {
      pages++;
      // Half-way: judged against pages received over the main channel so far (a breakpoint for tests).
      if (!halfHit && pages >= 8) {
        halfHit = true;
        return bp.hit("colo-ram-half-received", { checkpoint: n });
      }
      return undefined;
    };
    try {
      await h.loader.loadSections(h.r);
    } finally {
      h.ram.onPage = null;
    }
    if (!halfHit) await bp.hit("colo-ram-half-received", { checkpoint: n });

    const size = await receiveColoValue(h.r, "vmstate-size");
    if (size > MAX_DEVICE_BUFFER) throw h.r.error(`COLO: device state of ${size} bytes is too large`);
    await h.r.need(size, "COLO device state buffer");
    const buffer = h.r.getBytes(size);
    await bp.hit("colo-device-buffer-received", { checkpoint: n });
    await sendColoMessage(w, "vmstate-received");

    // Apply: all of the checkpoint is here. Reset devices, flush the cache, load the devices.
    this.loading = true;
    try {
      // A device state is loaded over running devices: reset them first (the Q35 crash fix).
      if (h.resetDevices) h.machine.resetDevices();
      h.cache.flush();
      await bp.hit("colo-apply-middle", { checkpoint: n });
      await h.loadDevices(new QEMUFileReader(new BytesLink(buffer)));
    } finally {
      this.loading = false;
    }
    this.applied = n;
    await bp.hit("colo-applied", { checkpoint: n });
    h.machine.start();
  }
}
