/**
 * The vCPU as the main thread sees it: a Worker running the guest workload concurrently with migration,
 * started with `cont` and parked with `stop`. `stop()` resolves only once the worker is parked, so RAM,
 * CPU and device registers are stable until the next `cont`.
 */
import { CMD_QUIT, CMD_RUN, CMD_STOP, CTRL_CMD, CTRL_GEN, CTRL_THROTTLE, CTRL_WORDS } from "./regs.ts";
import type { VcpuInit, VcpuMessage } from "./vcpu_worker.ts";
import type { UserfaultShared } from "./userfault.ts";
import type { WorkloadSpec } from "./workload.ts";
import type { DirtyRingShared } from "./dirty_ring.ts";
import type { RamShare } from "../hostmem.ts";

export interface VcpuOptions {
  /** Each block's memory (a buffer, or a backend's file the vCPU thread maps too) and dirty log. */
  blocks: { mem: RamShare; dirtyLog: SharedArrayBuffer }[];
  cpu: SharedArrayBuffer;
  dev: SharedArrayBuffer;
  workload: WorkloadSpec;
  /** The dirty ring the vCPU logs written pages on, else the blocks' dirty bitmaps. */
  dirtyRing?: DirtyRingShared;
  /** Postcopy: the mapped-page bitmaps the vCPU checks, and where a fault on a missing page is reported. */
  userfault: UserfaultShared;
  onFault(block: number, page: number): void;
  runMs?: number;
  sleepMs?: number;
  onSerial(ch: string): void;
  /** The guest asked for ACPI S3 (its program halts until a reset). */
  onSuspend?(): void;
  onError(message: string): void;
}

/** What the machine needs of its vCPU: run, park (resolving once parked), slow down, end. */
export interface VcpuDriver {
  readonly running: boolean;
  cont(): void;
  stop(): Promise<void>;
  /** cpu_throttle_set: the vCPU sleeps `pct` % of its time (0: not throttled; fractions count). */
  setThrottle(pct: number): void;
  terminate(): void;
}

export class Vcpu implements VcpuDriver {
  readonly #ctrl = new Int32Array(new SharedArrayBuffer(CTRL_WORDS * 4));
  readonly #worker: Worker;
  #parkedGen = -1;
  #parkWaiters: { gen: number; resolve: () => void }[] = [];
  #running = false;
  #terminated = false;

  constructor(private readonly opts: VcpuOptions) {
    this.#worker = new Worker(new URL("./vcpu_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<VcpuMessage>) => this.#onMessage(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      opts.onError(e.message);
    };
    const init: VcpuInit = {
      blocks: opts.blocks,
      ctrl: this.#ctrl.buffer as SharedArrayBuffer,
      cpu: opts.cpu,
      dev: opts.dev,
      workload: opts.workload,
      dirtyRing: opts.dirtyRing,
      userfault: opts.userfault,
      runMs: opts.runMs ?? 2,
      sleepMs: opts.sleepMs ?? 2,
    };
    this.#worker.postMessage(init);
  }

  get running(): boolean {
    return this.#running;
  }

  #onMessage(m: VcpuMessage): void {
    if (m.type === "serial") this.opts.onSerial(m.ch);
    else if (m.type === "suspend") this.opts.onSuspend?.();
    else if (m.type === "fault") this.opts.onFault(m.block, m.page);
    else if (m.type === "error") this.opts.onError(m.message);
    else {
      this.#parkedGen = m.gen;
      const ready = this.#parkWaiters.filter((w) => w.gen <= m.gen);
      this.#parkWaiters = this.#parkWaiters.filter((w) => w.gen > m.gen);
      for (const w of ready) w.resolve();
    }
  }

  cont(): void {
    if (this.#terminated) return;
    this.#running = true;
    Atomics.store(this.#ctrl, CTRL_CMD, CMD_RUN);
    Atomics.notify(this.#ctrl, CTRL_CMD);
  }

  /** Parks the vCPU; resolves once it has acknowledged, with all its serial output delivered. */
  stop(): Promise<void> {
    this.#running = false;
    if (this.#terminated) return Promise.resolve();
    const gen = Atomics.add(this.#ctrl, CTRL_GEN, 1) + 1;
    Atomics.store(this.#ctrl, CTRL_CMD, CMD_STOP);
    Atomics.notify(this.#ctrl, CTRL_CMD);
    if (this.#parkedGen >= gen) return Promise.resolve();
    return new Promise((resolve) => this.#parkWaiters.push({ gen, resolve }));
  }

  setThrottle(pct: number): void {
    // Hundredths of a percent: the dirty limit sets fractions.
    Atomics.store(this.#ctrl, CTRL_THROTTLE, Math.round(pct * 100));
  }

  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#running = false;
    Atomics.store(this.#ctrl, CTRL_CMD, CMD_QUIT);
    Atomics.notify(this.#ctrl, CTRL_CMD);
    this.#worker.terminate();
    for (const w of this.#parkWaiters) w.resolve();
    this.#parkWaiters = [];
  }
}
