/**
 * KVM's dirty ring (`-accel kvm,dirty-ring-size=N`), the second way a vCPU logs the pages it writes: each
 * vCPU has a ring of N entries; a write to a page that is write-protected (every page, until logged)
 * unprotects it and pushes (block, page) onto the ring; a harvest (kvm_dirty_ring_reap) moves the entries
 * into the dirty bitmap and protects those pages again. A full ring exits the vCPU
 * (KVM_EXIT_DIRTY_RING_FULL): it reaps its own ring before it goes on. The migration's bitmap sync
 * must reap every ring first (kvm_dirty_ring_flush), or the pages still on a ring are missed.
 *
 * One SharedArrayBuffer holds the ring: the vCPU thread pushes, and the main thread or the vCPU itself
 * reaps, under a lock word.
 */

const LOCK = 0;
const HEAD = 1;
const TAIL = 2;
/** Pages pushed since the ring was made (the dirty-ring mode of calc-dirty-rate counts these). */
const PUSHES = 3;
/** Ring-full exits. */
const FULL_EXITS = 4;
const HEADER = 8;

export interface DirtyRingShared {
  ring: SharedArrayBuffer;
  /** Per RAM block: the write-protect bitmap (1: the next write is logged). */
  protect: SharedArrayBuffer[];
  size: number;
}

/** The model's ring size bounds, as KVM's: a power of two of entries. */
export function dirtyRingSizeProblem(size: number): string | null {
  if (!Number.isInteger(size) || size < 1024 || size > 65536 || (size & (size - 1)) !== 0) {
    return `dirty-ring-size ${size}: must be a power of 2 between 1024 and 65536`;
  }
  return null;
}

export class DirtyRing {
  readonly #ctrl: Int32Array;
  readonly #entries: Int32Array;
  readonly #protect: Int32Array[];
  readonly size: number;

  constructor(shared: DirtyRingShared, private readonly logs: Int32Array[]) {
    this.size = shared.size;
    this.#ctrl = new Int32Array(shared.ring, 0, HEADER);
    this.#entries = new Int32Array(shared.ring, HEADER * 4, shared.size * 2);
    this.#protect = shared.protect.map((b) => new Int32Array(b));
  }

  /** A ring over blocks of these page counts, every page write-protected. */
  static create(size: number, blockPages: number[]): DirtyRingShared {
    return {
      ring: new SharedArrayBuffer((HEADER + size * 2) * 4),
      protect: blockPages.map((pages) => {
        const words = new Int32Array(new SharedArrayBuffer(Math.ceil(pages / 32) * 4));
        words.fill(-1);
        return words.buffer as SharedArrayBuffer;
      }),
      size,
    };
  }

  /** The vCPU wrote `page`: the first write since the last harvest goes onto the ring. */
  mark(block: number, page: number): void {
    const bit = 1 << (page & 31);
    if ((Atomics.and(this.#protect[block], page >>> 5, ~bit) & bit) === 0) return;
    let tail = Atomics.load(this.#ctrl, TAIL);
    if (tail - Atomics.load(this.#ctrl, HEAD) >= this.size) {
      // KVM_EXIT_DIRTY_RING_FULL: the vCPU reaps its own ring, then goes on.
      Atomics.add(this.#ctrl, FULL_EXITS, 1);
      this.reap();
      tail = Atomics.load(this.#ctrl, TAIL);
    }
    const at = (tail % this.size) * 2;
    this.#entries[at] = block;
    this.#entries[at + 1] = page;
    Atomics.add(this.#ctrl, PUSHES, 1);
    // Published after the entry: a reaper that sees the tail sees the entry.
    Atomics.store(this.#ctrl, TAIL, tail + 1);
  }

  /** kvm_dirty_ring_reap: every entry into the dirty bitmap, its page protected again. Returns the count. */
  reap(): number {
    while (Atomics.compareExchange(this.#ctrl, LOCK, 0, 1) !== 0) Atomics.wait(this.#ctrl, LOCK, 1, 1);
    try {
      const head = Atomics.load(this.#ctrl, HEAD);
      const tail = Atomics.load(this.#ctrl, TAIL);
      for (let i = head; i < tail; i++) {
        const at = (i % this.size) * 2;
        const [block, page] = [this.#entries[at], this.#entries[at + 1]];
        const bit = 1 << (page & 31);
        Atomics.or(this.logs[block], page >>> 5, bit);
        Atomics.or(this.#protect[block], page >>> 5, bit);
      }
      Atomics.store(this.#ctrl, HEAD, tail);
      return tail - head;
    } finally {
      Atomics.store(this.#ctrl, LOCK, 0);
      Atomics.notify(this.#ctrl, LOCK);
    }
  }

  /** Pages pushed so far (wraps at 2^31; callers take differences). */
  get pushes(): number {
    return Atomics.load(this.#ctrl, PUSHES);
  }

  get fullExits(): number {
    return Atomics.load(this.#ctrl, FULL_EXITS);
  }

  /** Entries waiting on the ring. */
  get pending(): number {
    return Atomics.load(this.#ctrl, TAIL) - Atomics.load(this.#ctrl, HEAD);
  }
}
