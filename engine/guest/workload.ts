/**
 * Guest workloads: what the vCPU executes. A workload is a small program whose whole state lives in the
 * CPU registers (see regs.ts), stepping a bounded number of page writes at a time.
 */
import {
  CPU_INDEX,
  CPU_PASS,
  CPU_PHASE,
  CPU_RNG,
  DEV_RING_CONS,
  DEV_RING_INFLIGHT,
  DEV_RING_PROD,
  DEV_TIMER_HI,
  DEV_TIMER_LO,
  RING_SIZE,
} from "./regs.ts";

export type WorkloadSpec =
  /**
   * QEMU's a-b boot sector: zero then increment the first byte of every page in [1 MiB, 100 MiB). With
   * `suspendMe` (upstream's suspend_me), after its first 'B' it sets a flag at 1 MiB + 4 and enters
   * ACPI S3; woken, it boots again ('A', zeroing, passes) and, the flag set, never sleeps again.
   */
  | { kind: "a-b"; suspendMe?: boolean }
  /** Seeded random 32-bit writes; `hotPercent` of them land in the first `hotPages` pages of RAM. */
  | { kind: "random"; seed: number; hotPages?: number; hotPercent?: number }
  /**
   * Seeded writes over the first `pages` pages, half of which zero the whole page (pages turn zero).
   * With `restore`, a third of them instead put back the page's own content (a per-page fill with one of
   * two version words): a page turns zero and back to data it held before, as a page freed and filled
   * again with the same file data, so a stale copy kept anywhere matches it again.
   */
  | { kind: "zero-churn"; seed: number; pages?: number; restore?: boolean }
  /**
   * Seeded read-check-writes over the first `pages` pages of pc.ram: each page holds its version, and the
   * guest keeps its own record of every version it wrote (a journal in the pages after them). Reading
   * any other version than the one last written — a stale or lost page on a postcopy destination — is a
   * guest panic naming the page.
   */
  | { kind: "versions"; seed: number; pages?: number }
  /** Runs but writes nothing (the timer still advances). */
  | { kind: "idle" };

/** Stable ids so a destination refuses CPU state from a different workload. */
export const WORKLOAD_IDS: Record<WorkloadSpec["kind"], number> = {
  "a-b": 1,
  "random": 2,
  "idle": 3,
  "zero-churn": 4,
  "versions": 5,
};

/** Upstream's x86 test range and page size (bootfile.h). */
export const AB_START = 1 << 20;
export const AB_END = 100 << 20;
export const AB_PAGE = 4096;
/** Where the suspending a-b guest records that it slept once (not a page start: the loop never writes it). */
export const AB_SUSPENDED_FLAG = AB_START + 4;
/** The a-b program's phase while asleep in S3 (a reset sets phase 0 again). */
const AB_ASLEEP = 3;

export interface GuestMemory {
  /** pc.ram first, then the other blocks. */
  blocks: { mem: Uint8Array; dirtyLog: Int32Array; pages: number }[];
  cpu: Int32Array;
  dev: Int32Array;
  serial(ch: string): void;
  /** The program asks for ACPI S3 (it is halted until the machine resets). */
  suspend?(): void;
  /** Logs a written page another way than the block's dirty bitmap (the vCPU's dirty ring). */
  mark?(block: number, page: number): void;
  /**
   * Before touching a page: false when the page is missing (a postcopy destination, engine/guest/
   * userfault.ts) and the vCPU must leave this step with its registers as they were before the access,
   * to retry it. Absent: every page is always there.
   */
  access?(block: number, page: number): boolean;
}

export interface Workload {
  /** Executes up to `budget` page writes. */
  step(budget: number): void;
  /**
   * One write of this program's own kind to page `page` of block `block`, if the program writes there:
   * the simulated world's guest writing the very page migration is in the middle of (an interleave
   * point that names it). A program whose writes keep an invariant (a-b's pattern) leaves it out.
   */
  touch?(block: number, page: number): void;
}

/** After a write: the dirty log's bit (KVM's dirty bitmap), or the vCPU's dirty ring when it has one. */
function markDirty(g: GuestMemory, block: number, page: number): void {
  if (g.mark) g.mark(block, page);
  else Atomics.or(g.blocks[block].dirtyLog, page >>> 5, 1 << (page & 31));
}

function tickTimer(dev: Int32Array): void {
  const lo = (dev[DEV_TIMER_LO] + 1) | 0;
  dev[DEV_TIMER_LO] = lo;
  if (lo === 0) dev[DEV_TIMER_HI] = (dev[DEV_TIMER_HI] + 1) | 0;
}

class AbWorkload implements Workload {
  readonly #start = AB_START / AB_PAGE;
  readonly #end: number;
  constructor(private readonly g: GuestMemory, private readonly suspendMe = false) {
    const ram = g.blocks[0];
    if (ram.mem.length < AB_END) throw new Error(`a-b needs at least ${AB_END} bytes of pc.ram`);
    this.#end = AB_END / AB_PAGE;
  }

  /**
   * After a 'B': the flag, then S3 (cpu_index already at the next page, so a wakeup's reset, not this
   * state, decides where it goes on). False when the flag's page is missing (a postcopy destination):
   * the pass goes on and the next 'B' tries again.
   */
  #sleep(next: number): boolean {
    const { cpu } = this.g;
    const { mem } = this.g.blocks[0];
    const flagPage = AB_SUSPENDED_FLAG / AB_PAGE;
    if (this.g.access && !this.g.access(0, flagPage)) return false;
    mem[AB_SUSPENDED_FLAG] = 1;
    markDirty(this.g, 0, flagPage);
    cpu[CPU_INDEX] = next;
    cpu[CPU_PHASE] = AB_ASLEEP;
    this.g.suspend?.();
    return true;
  }

  step(budget: number): void {
    const { cpu, dev } = this.g;
    const { mem } = this.g.blocks[0];
    if (cpu[CPU_PHASE] === AB_ASLEEP) return;
    tickTimer(dev);
    while (budget > 0) {
      switch (cpu[CPU_PHASE]) {
        case 0: // boot: print A, start zeroing
          this.g.serial("A");
          cpu[CPU_PHASE] = 1;
          cpu[CPU_INDEX] = this.#start;
          break;
        case 1: { // zero the first byte of every page
          const p = cpu[CPU_INDEX];
          if (this.g.access && !this.g.access(0, p)) return;
          mem[p * AB_PAGE] = 0;
          markDirty(this.g, 0, p);
          budget--;
          if (p + 1 >= this.#end) {
            cpu[CPU_PHASE] = 2;
            cpu[CPU_INDEX] = this.#start;
          } else cpu[CPU_INDEX] = p + 1;
          break;
        }
        default: { // increment forever, B every 64 passes
          let p = cpu[CPU_INDEX];
          const stop = Math.min(this.#end, p + budget);
          const access = this.g.access;
          for (; p < stop; p++) {
            if (access && !access(0, p)) {
              cpu[CPU_INDEX] = p;
              return;
            }
            mem[p * AB_PAGE]++;
            markDirty(this.g, 0, p);
          }
          budget -= stop - cpu[CPU_INDEX];
          if (p >= this.#end) {
            p = this.#start;
            const pass = (cpu[CPU_PASS] + 1) | 0;
            cpu[CPU_PASS] = pass;
            if ((pass & 63) === 0) {
              this.g.serial("B");
              if (this.suspendMe && mem[AB_SUSPENDED_FLAG] === 0 && this.#sleep(p)) return;
            }
          }
          cpu[CPU_INDEX] = p;
        }
      }
    }
  }
}

/** xorshift128 on the four CPU_RNG registers. */
function nextRandom(cpu: Int32Array): number {
  let t = cpu[CPU_RNG];
  const s = cpu[CPU_RNG + 3];
  cpu[CPU_RNG] = cpu[CPU_RNG + 1];
  cpu[CPU_RNG + 1] = cpu[CPU_RNG + 2];
  cpu[CPU_RNG + 2] = s;
  t ^= t << 11;
  t ^= t >>> 8;
  const r = (t ^ s ^ (s >>> 19)) | 0;
  cpu[CPU_RNG + 3] = r;
  return r >>> 0;
}

/** Seeds the xorshift state from a 32-bit seed (splitmix-style so seed 0 is valid). */
export function seedRandomRegisters(cpu: Int32Array, seed: number): void {
  let x = seed >>> 0;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    cpu[CPU_RNG + i] = (z ^ (z >>> 16)) | 1;
  }
}

class RandomWorkload implements Workload {
  readonly #hotPages: number;
  readonly #hotPercent: number;
  readonly #total: number;
  constructor(private readonly g: GuestMemory, spec: { hotPages?: number; hotPercent?: number }) {
    this.#total = g.blocks.reduce((n, b) => n + b.pages, 0);
    this.#hotPages = Math.max(1, Math.min(spec.hotPages ?? 256, this.#total));
    this.#hotPercent = spec.hotPercent ?? 80;
  }

  step(budget: number): void {
    const { cpu, dev, blocks } = this.g;
    tickTimer(dev);
    const rng = new Int32Array(4);
    for (let i = 0; i < budget; i++) {
      rng.set(cpu.subarray(CPU_RNG, CPU_RNG + 4));
      const r = nextRandom(cpu);
      let page = (r % 100) < this.#hotPercent
        ? nextRandom(cpu) % this.#hotPages
        : nextRandom(cpu) % this.#total;
      let b = 0;
      while (page >= blocks[b].pages) page -= blocks[b++].pages;
      if (this.g.access && !this.g.access(b, page)) {
        // Retried from the same draw once the page is there.
        cpu.set(rng, CPU_RNG);
        return;
      }
      this.#write(b, page);
      // Produce into the queue device and consume behind it, keeping 0 <= prod - cons <= RING_SIZE.
      dev[DEV_RING_INFLIGHT] = 1;
      const prod = dev[DEV_RING_PROD] + 1 | 0;
      dev[DEV_RING_PROD] = prod;
      if (((prod - dev[DEV_RING_CONS]) | 0) > RING_SIZE / 2) dev[DEV_RING_CONS] = dev[DEV_RING_CONS] + 1 | 0;
    }
    cpu[CPU_PASS] = cpu[CPU_PASS] + 1 | 0;
  }

  /** Hot or not, any page of RAM is the random writer's. */
  touch(block: number, page: number): void {
    if (this.g.access && !this.g.access(block, page)) return;
    this.#write(block, page);
  }

  #write(block: number, page: number): void {
    const cpu = this.g.cpu;
    const { mem } = this.g.blocks[block];
    const word = nextRandom(cpu) & 1023;
    new DataView(mem.buffer, mem.byteOffset).setUint32(page * AB_PAGE + word * 4, nextRandom(cpu) | 1);
    markDirty(this.g, block, page);
  }
}

class ZeroChurnWorkload implements Workload {
  readonly #pages: number;
  readonly #restore: boolean;
  constructor(private readonly g: GuestMemory, spec: { pages?: number; restore?: boolean }) {
    this.#pages = Math.max(1, Math.min(spec.pages ?? 512, g.blocks[0].pages));
    this.#restore = spec.restore ?? false;
  }

  step(budget: number): void {
    const { cpu, dev } = this.g;
    tickTimer(dev);
    // Fewer, larger writes than the random writer: zeroing a page writes all of it.
    const rng = new Int32Array(4);
    for (let i = 0; i < budget >> 4; i++) {
      rng.set(cpu.subarray(CPU_RNG, CPU_RNG + 4));
      const page = nextRandom(cpu) % this.#pages;
      if (this.g.access && !this.g.access(0, page)) {
        cpu.set(rng, CPU_RNG);
        return;
      }
      this.#write(page);
    }
    cpu[CPU_PASS] = cpu[CPU_PASS] + 1 | 0;
  }

  /** Only the first `pages` pages of pc.ram are the churner's. */
  touch(block: number, page: number): void {
    if (block === 0 && page < this.#pages && (!this.g.access || this.g.access(0, page))) this.#write(page);
  }

  #write(page: number): void {
    const { mem } = this.g.blocks[0];
    const cpu = this.g.cpu;
    const op = nextRandom(cpu);
    if (this.#restore && op % 3 === 2) {
      // The page's own content: a fill byte of its own and a version word (1 or 2) at its own offset,
      // so two restores differ in one word and a restore equals what the page held before.
      const at = page * AB_PAGE;
      mem.fill((page * 0x9d + 0x35) & 0xff | 1, at, at + AB_PAGE);
      new DataView(mem.buffer, mem.byteOffset).setUint32(at + (page * 37 & 1023) * 4, 1 + (op >>> 2 & 1));
    } else if (op & 1) mem.fill(0, page * AB_PAGE, (page + 1) * AB_PAGE);
    else {
      new DataView(mem.buffer, mem.byteOffset).setUint32(
        page * AB_PAGE + (nextRandom(cpu) & 1023) * 4,
        nextRandom(cpu) | 1,
      );
    }
    markDirty(this.g, 0, page);
  }
}

/**
 * The versions program: page p (of the first `pages`) holds at offset 0 the number of times the guest
 * wrote it; the journal (u32 per page, in the pages right after) holds the same number, written with it.
 * Each write reads both first: they must agree, or the guest saw a page that is not its last write.
 */
class VersionsWorkload implements Workload {
  readonly #pages: number;
  readonly #view: DataView;
  constructor(private readonly g: GuestMemory, spec: { pages?: number }) {
    const ram = g.blocks[0];
    this.#pages = Math.max(1, Math.min(spec.pages ?? 4096, Math.floor(ram.pages * 1024 / 1025) - 1));
    this.#view = new DataView(ram.mem.buffer, ram.mem.byteOffset);
  }

  step(budget: number): void {
    const { cpu, dev } = this.g;
    tickTimer(dev);
    const rng = new Int32Array(4);
    for (let i = 0; i < budget; i++) {
      rng.set(cpu.subarray(CPU_RNG, CPU_RNG + 4));
      if (!this.#write(nextRandom(cpu) % this.#pages)) {
        cpu.set(rng, CPU_RNG);
        return;
      }
    }
    cpu[CPU_PASS] = cpu[CPU_PASS] + 1 | 0;
  }

  touch(block: number, page: number): void {
    if (block === 0 && page < this.#pages) this.#write(page);
  }

  /** One read-check-write; false when a page it needs is missing (nothing was done). */
  #write(page: number): boolean {
    const journalPage = this.#pages + (page >>> 10);
    const access = this.g.access;
    if (access && !(access(0, page) && access(0, journalPage))) return false;
    const at = page * AB_PAGE;
    const jat = journalPage * AB_PAGE + (page & 1023) * 4;
    const seen = this.#view.getUint32(at);
    const wrote = this.#view.getUint32(jat);
    if (seen !== wrote) {
      throw new Error(
        `stale read: page ${page} (0x${at.toString(16)}) holds version ${seen}, but the guest's journal ` +
          `(0x${jat.toString(16)}) says it last wrote version ${wrote}`,
      );
    }
    this.#view.setUint32(at, seen + 1);
    this.#view.setUint32(jat, seen + 1);
    markDirty(this.g, 0, page);
    markDirty(this.g, 0, journalPage);
    return true;
  }
}

class IdleWorkload implements Workload {
  constructor(private readonly g: GuestMemory) {}
  step(): void {
    tickTimer(this.g.dev);
  }
}

export function createWorkload(spec: WorkloadSpec, g: GuestMemory): Workload {
  switch (spec.kind) {
    case "a-b":
      return new AbWorkload(g, spec.suspendMe);
    case "random":
      return new RandomWorkload(g, spec);
    case "zero-churn":
      return new ZeroChurnWorkload(g, spec);
    case "versions":
      return new VersionsWorkload(g, spec);
    case "idle":
      return new IdleWorkload(g);
  }
}
