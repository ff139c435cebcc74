/**
 * The guest: RAM blocks, the vCPU, the devices, and the run state (QEMU's RunState names).
 */
import type { MachineFixture } from "../../fixtures/machines.ts";
import { RamBlock } from "../ram_block.ts";
import { type HostMemory, hostMemory, type MemoryBackend } from "../hostmem.ts";
import { CpuDevice } from "./devices/cpu.ts";
import { DirtyRing } from "./dirty_ring.ts";
import type { Device } from "./devices/device.ts";
import { QueueDevice } from "./devices/queue.ts";
import { DescribedDevice } from "./devices/described.ts";
import { SerialDevice } from "./devices/serial.ts";
import { TimerDevice } from "./devices/timer.ts";
import { CPU_WORDS, DEV_WORDS } from "./regs.ts";
import { type Clock, hostClock } from "../clock.ts";
import { GlobalStateDevice, incomingRunstate } from "../global_state.ts";
import type { RunState } from "../runstate.ts";
import { Userfault } from "./userfault.ts";
import { Vcpu, type VcpuDriver, type VcpuOptions } from "./vcpu.ts";
import { seedRandomRegisters, WORKLOAD_IDS, type WorkloadSpec } from "./workload.ts";

export type { RunState };
export interface MachineOptions {
  fixture: MachineFixture;
  workload: WorkloadSpec;
  /** Where serial output goes (`-serial file:`); omitted: discarded. */
  serialPath?: string;
  /** Run state at start: "prelaunch" for -S, "inmigrate" for -incoming. */
  initialState: RunState;
  emit(event: string, data?: Record<string, unknown>): void;
  onGuestError(message: string): void;
  /** -mem-prealloc: fault every page in at start, so the first migration does not pay for it. */
  memPrealloc?: boolean;
  /**
   * The main RAM from a memory backend (`-machine memory-backend=ID`): the fixture's first block, named
   * after the backend as QEMU names it, held in the backend's file.
   */
  memoryBackend?: MemoryBackend;
  /** Maps a backend's file (default: this host's mmap; the simulated world shares one buffer per path). */
  hostMemory?: HostMemory;
  /**
   * -machine aux-ram-share=on: every block not from a backend is a shared memfd too (QEMU 10.0), so that
   * cpr-transfer can pass all of RAM on.
   */
  auxRamShare?: boolean;
  /**
   * cpr-transfer's target: the blocks' memory as the previous process passed it (descriptors by block
   * name, from the CPR state); each block maps its own instead of fresh memory.
   */
  preserved?: ReadonlyMap<string, number>;
  /** The vCPU logs written pages on a dirty ring of this many entries (KVM's dirty-ring-size). */
  dirtyRingSize?: number;
  /** vCPU duty cycle (ms running / ms sleeping per slice). */
  runMs?: number;
  sleepMs?: number;
  /** The clock migration code reads (default: the host's); the simulated world's is virtual. */
  clock?: Clock;
  /** Runs the guest (default: a Worker thread); the simulated world steps it from its scheduler. */
  createVcpu?(opts: VcpuOptions): VcpuDriver;
}

export class Machine {
  readonly fixture: MachineFixture;
  readonly blocks: RamBlock[];
  readonly devices: Device[];
  readonly serial: SerialDevice;
  /** The run state a migration carries (last of the devices: the order is the model's own). */
  readonly globalState = new GlobalStateDevice();
  readonly cpuRegs = new Int32Array(new SharedArrayBuffer(CPU_WORDS * 4));
  readonly devRegs = new Int32Array(new SharedArrayBuffer(DEV_WORDS * 4));
  readonly vcpu: VcpuDriver;
  readonly clock: Clock;
  /** The destination's userfaultfd in postcopy: which pages are mapped; a fault reaches `onFault`. */
  readonly userfault: Userfault;
  /** The vCPU's dirty ring (main thread's view), or null when it logs into the dirty bitmaps. */
  readonly dirtyRing: DirtyRing | null;
  /** Where a vCPU fault on a missing page goes (the postcopy destination's fault thread). */
  onFault: (block: number, page: number) => void = () => {};
  #runstate: RunState;
  /**
   * vm_was_suspended: stopped while suspended, so that the next start goes back to "suspended", not
   * "running" (QEMU 9.0 on). A migrated guest carries it in the global state.
   */
  wasSuspended = false;
  #serialFile: Deno.FsFile | null = null;

  constructor(private readonly opts: MachineOptions) {
    this.fixture = opts.fixture;
    this.clock = opts.clock ?? hostClock;
    const backend = opts.memoryBackend;
    const host = opts.hostMemory ?? hostMemory;
    this.blocks = opts.fixture.blocks.map((b, i) => {
      const spec = i === 0 && backend ? { ...b, idstr: backend.id } : b;
      const fd = opts.preserved?.get(spec.idstr);
      if (opts.preserved && fd === undefined) {
        throw new Error(`cpr: no descriptor was passed for RAM block ${spec.idstr}`);
      }
      if (fd !== undefined) {
        return new RamBlock(spec, undefined, { ram: host.adopt(fd, b.size), share: true });
      }
      if (i === 0 && backend) {
        return new RamBlock(spec, undefined, { ram: host.map(backend, b.size), share: backend.share });
      }
      if (opts.auxRamShare) {
        return new RamBlock(spec, undefined, {
          ram: host.map({ type: "memfd", id: spec.idstr, share: true }, b.size),
          share: true,
        });
      }
      return new RamBlock(spec);
    });
    let offset = 0;
    for (const [i, b] of this.blocks.entries()) {
      b.offset = offset;
      offset += b.usedLength;
      // A backend's file is already there (and may be another process's RAM): nothing to fault in.
      if (opts.memPrealloc && !(i === 0 && backend) && b.fd === null) {
        for (let p = 0; p < b.usedLength; p += b.pageSize) b.mem[p] = 0;
      }
    }
    if (opts.serialPath) {
      this.#serialFile = Deno.openSync(opts.serialPath, { write: true, create: true, append: true });
    }
    const qemuPeer = opts.fixture.qemuPeer === true;
    this.serial = new SerialDevice((bytes) => this.#serialFile?.writeSync(bytes), !qemuPeer);
    const workloadId = WORKLOAD_IDS[opts.workload.kind];
    // Beside QEMU, only what QEMU's machine loads migrates: the model's vCPU, timer and queue run unsent.
    const described = opts.fixture.qemuDevices;
    this.devices = described
      // QEMU's run state is the model's own format (and semantics); every other device as QEMU describes it.
      ? described.map((d) => d.name === this.globalState.idstr ? this.globalState : new DescribedDevice(d))
      : qemuPeer
      ? [this.serial, this.globalState]
      : [
        new CpuDevice(this.cpuRegs, workloadId),
        this.serial,
        new TimerDevice(this.devRegs),
        new QueueDevice(this.devRegs),
        this.globalState,
      ];
    this.userfault = new Userfault(this.blocks.map((b) => b.pages));
    if (
      opts.workload.kind === "random" || opts.workload.kind === "zero-churn" ||
      opts.workload.kind === "versions"
    ) {
      seedRandomRegisters(this.cpuRegs, opts.workload.seed);
    }
    this.#runstate = opts.initialState;
    const ring = opts.dirtyRingSize
      ? DirtyRing.create(opts.dirtyRingSize, this.blocks.map((b) => b.pages))
      : null;
    this.dirtyRing = ring ? new DirtyRing(ring, this.blocks.map((b) => b.dirtyLog)) : null;
    this.vcpu = (opts.createVcpu ?? ((o) => new Vcpu(o)))({
      dirtyRing: ring ?? undefined,
      blocks: this.blocks.map((b) => b.shared()),
      cpu: this.cpuRegs.buffer as SharedArrayBuffer,
      dev: this.devRegs.buffer as SharedArrayBuffer,
      workload: opts.workload,
      userfault: this.userfault.shared(),
      onFault: (block, page) => this.onFault(block, page),
      runMs: opts.runMs,
      sleepMs: opts.sleepMs,
      onSerial: (ch) => this.serial.transmit(ch),
      onSuspend: () => void this.#guestSuspend(),
      onError: (m) => opts.onGuestError(m),
    });
  }

  get runstate(): RunState {
    return this.#runstate;
  }

  get running(): boolean {
    return this.#runstate === "running";
  }

  /** runstate_is_live: running, or suspended (the VM is up; only its vCPU sleeps). */
  get live(): boolean {
    return this.#runstate === "running" || this.#runstate === "suspended";
  }

  /** Total RAM bytes (the MEM_SIZE announced in the stream). */
  get ramSize(): number {
    return this.blocks.reduce((n, b) => n + b.usedLength, 0);
  }

  block(idstr: string): RamBlock | undefined {
    return this.blocks.find((b) => b.idstr === idstr);
  }

  device(idstr: string, instanceId: number): Device | undefined {
    return this.devices.find((d) => d.idstr === idstr && d.instanceId === instanceId);
  }

  /**
   * vm_stop: parks the vCPU and emits STOP if the guest was live. A suspended guest stops too (its vCPU
   * is parked already) and remembers it was suspended.
   */
  async stop(next: RunState = "paused"): Promise<void> {
    const was = this.#runstate;
    this.#runstate = next;
    if (was === "running") {
      await this.vcpu.stop();
      this.opts.emit("STOP");
    } else if (was === "suspended") {
      this.wasSuspended = true;
      this.opts.emit("STOP");
    }
  }

  /** vm_start: resumes the vCPU and emits RESUME; a guest stopped while suspended goes back to sleep. */
  start(): void {
    if (this.live) return;
    this.opts.emit("RESUME");
    if (this.wasSuspended) {
      this.wasSuspended = false;
      this.#runstate = "suspended";
      return;
    }
    this.#runstate = "running";
    this.vcpu.cont();
  }

  /** qemu_system_suspend: the guest entered S3; its vCPU parks and SUSPEND goes out. */
  async #guestSuspend(): Promise<void> {
    if (this.#runstate !== "running") return;
    this.#runstate = "suspended";
    await this.vcpu.stop();
    this.opts.emit("SUSPEND");
  }

  /**
   * system_wakeup: only a suspended guest wakes; the machine resets (the guest boots again from its
   * reset vector, RAM kept) and runs, and WAKEUP goes out.
   */
  wakeup(): void {
    if (this.#runstate !== "suspended") {
      throw new Error("Unable to wake up: guest is not in suspended state");
    }
    this.resetDevices();
    this.#runstate = "running";
    this.vcpu.cont();
    this.opts.emit("WAKEUP");
  }

  /**
   * The end of an incoming migration (process_incoming_migration_bh): the run state the source sent
   * decides, with autostart, whether the guest starts, and a guest suspended there stays suspended.
   */
  resumeIncoming(autostart: boolean): void {
    const got = this.globalState.received;
    if (got) this.wasSuspended = got.wasSuspended || got.runstate === "suspended";
    const next = incomingRunstate(this.globalState, autostart);
    if (next === "start") this.start();
    else this.setRunstate(next);
  }

  setRunstate(s: RunState): void {
    if (s === "running") throw new Error("use start() to run the guest");
    this.#runstate = s;
  }

  resetDevices(): void {
    for (const d of this.devices) d.reset();
  }

  /** Every device's migratable state as plain JSON (after its pre_save refresh from registers). */
  deviceState(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const d of this.devices) {
      d.vmsd.preSave?.(d.state);
      // Byte buffers as hex, so the JSON reads as bytes.
      out[`${d.idstr}/${d.instanceId}`] = Object.fromEntries(
        Object.entries(structuredClone(d.state)).map((
          [k, v],
        ) => [k, v instanceof Uint8Array ? v.toHex() : v]),
      );
    }
    return out;
  }

  close(): void {
    this.vcpu.terminate();
    this.#serialFile?.close();
    this.#serialFile = null;
  }
}
