/**
 * Time as the migration code sees it (QEMU's QEMU_CLOCK_REALTIME and its timers). The engine process
 * runs on the host's clock; the simulated world (harness/world/sim/) gives the same code a virtual clock
 * whose timers fire when its scheduler says, so a run's timing is a function of its seed.
 */
export interface Clock {
  /** Milliseconds, monotonic (performance.now() on the host). */
  now(): number;
  /** Resolves after `ms` (at once for ms <= 0, after a turn of the event loop). */
  sleep(ms: number): Promise<void>;
  /** Calls `fn` after `ms`; the returned function cancels it (harmless once fired). */
  timer(fn: () => void, ms: number): () => void;
  /**
   * A point where long synchronous work lets other work run (the destination's load between slices).
   * The simulated world may also run the vCPU or deliver bytes here.
   */
  yield(): Promise<void>;
  /**
   * A point inside a synchronous step where another core's work could land (the guest writing the page
   * whose dirty bit was just cleared, before it is copied). The host has real concurrency and leaves it
   * out; the simulated world may run the vCPU there, synchronously. `page`, where the race is on one
   * page, is its ram_addr (block offset + offset in the block): the simulated guest may write that very
   * page there, as a vCPU does that keeps writing a hot page.
   */
  interleave?(point: string, page?: number): void;
}

/** The host's clock. */
export const hostClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms))),
  timer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
  yield: () => new Promise((r) => setTimeout(r, 0)),
};
