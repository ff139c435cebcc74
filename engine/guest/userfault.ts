/**
 * The destination's userfaultfd, as postcopy uses it (migration/postcopy-ram.c): from LISTEN on, a guest
 * page that has not been placed is missing, and a vCPU touching it blocks until the page is placed
 * (UFFDIO_COPY) — the fault is reported to the migration code, which asks the source for the page.
 *
 * Whether a page is mapped lives in a shared bitmap per block, so the vCPU thread tests it and parks on it
 * (Atomics.wait) while the main thread places pages and wakes it (Atomics.notify), as the kernel does.
 */

/** The parts handed to the vCPU. */
export interface UserfaultShared {
  /** Word 0: 1 while registered (between LISTEN and the end of postcopy). */
  armed: SharedArrayBuffer;
  /** Per block: one bit per page, set once the page is mapped. */
  present: SharedArrayBuffer[];
}

export class Userfault {
  readonly armed = new Int32Array(new SharedArrayBuffer(4));
  readonly present: Int32Array[];

  constructor(pages: number[]) {
    this.present = pages.map((n) => new Int32Array(new SharedArrayBuffer(Math.ceil(n / 32) * 4)));
  }

  shared(): UserfaultShared {
    return {
      armed: this.armed.buffer as SharedArrayBuffer,
      present: this.present.map((p) => p.buffer as SharedArrayBuffer),
    };
  }

  get isArmed(): boolean {
    return Atomics.load(this.armed, 0) === 1;
  }

  /** Registers guest RAM: the pages in `mapped` (the receivedmap at LISTEN) are present, the rest fault. */
  arm(mapped: Uint32Array[]): void {
    for (let b = 0; b < this.present.length; b++) {
      for (let w = 0; w < this.present[b].length; w++) Atomics.store(this.present[b], w, mapped[b][w] | 0);
    }
    Atomics.store(this.armed, 0, 1);
  }

  /** Unregisters (postcopy ended): nothing faults any more; a parked vCPU is woken to see it. */
  disarm(): void {
    Atomics.store(this.armed, 0, 0);
    for (const p of this.present) Atomics.notify(p, 0);
    for (const p of this.present) for (let w = 0; w < p.length; w++) Atomics.notify(p, w);
  }

  isPresent(block: number, page: number): boolean {
    return (Atomics.load(this.present[block], page >>> 5) & (1 << (page & 31))) !== 0;
  }

  /** The page is mapped now; a vCPU parked on it goes on. */
  place(block: number, page: number): void {
    Atomics.or(this.present[block], page >>> 5, 1 << (page & 31));
    Atomics.notify(this.present[block], page >>> 5);
  }
}

/**
 * The vCPU's side of a guest memory access: true when the page may be touched now. A missing page is
 * reported once through `fault`; then `park` decides: a vCPU thread waits for the page (and gives up,
 * false, only to be stopped), the simulated vCPU returns false at once and retries at its next step.
 */
export function userfaultAccess(
  s: UserfaultShared,
  fault: (block: number, page: number) => void,
  park: ((present: Int32Array, word: number, seen: number) => boolean) | null,
): (block: number, page: number) => boolean {
  const armed = new Int32Array(s.armed);
  const present = s.present.map((p) => new Int32Array(p));
  let lastFault = -1;
  let lastBlock = -1;
  return (block, page) => {
    if (Atomics.load(armed, 0) === 0) return true;
    const w = page >>> 5;
    const m = 1 << (page & 31);
    let v = Atomics.load(present[block], w);
    if (v & m) return true;
    if (page !== lastFault || block !== lastBlock) {
      lastFault = page;
      lastBlock = block;
      fault(block, page);
    }
    if (!park) return false;
    while (!(v & m)) {
      if (Atomics.load(armed, 0) === 0) return true;
      if (!park(present[block], w, v)) return false;
      v = Atomics.load(present[block], w);
    }
    return true;
  };
}
