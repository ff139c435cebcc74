/**
 * Named breakpoints for tests (x-test-breakpoint): when the engine reaches an armed point it emits
 * X_TEST_BREAKPOINT and waits until x-test-continue, so a harness can inject a fault (kill a peer, yank,
 * request a failover) at an exact moment of a checkpoint.
 */
export const BREAKPOINTS = [
  // Primary.
  "colo-request-sent",
  "colo-ram-half-sent",
  "colo-device-buffer-half-sent",
  "colo-after-vmstate-received",
  "colo-after-vmstate-loaded",
  // Secondary.
  "colo-stopped",
  "colo-ram-half-received",
  "colo-device-buffer-received",
  "colo-apply-middle",
  "colo-applied",
  // Secondary, multifd: a channel holds a packet of COLO-state pages before writing them to the cache.
  "colo-multifd-packet",
  // Postcopy recovery, at each step of the handshake: the destination about to send a block's received
  // bitmap; the source holding every bitmap, before POSTCOPY_RESUME; the destination about to ack it.
  "postcopy-recv-bitmap",
  "postcopy-bitmaps-reloaded",
  "postcopy-resume-ack",
  // switchover-ack: the destination about to send RP_SWITCHOVER_ACK (held: a device not yet ready, as
  // VFIO's would be).
  "switchover-ack",
] as const;
export type BreakpointName = typeof BREAKPOINTS[number];

export class Breakpoints {
  readonly #armed = new Map<string, { persistent: boolean }>();
  readonly #paused = new Map<string, PromiseWithResolvers<void>>();
  #closed = false;

  constructor(private readonly emit: (event: string, data?: Record<string, unknown>) => void) {}

  arm(name: BreakpointName, persistent: boolean): void {
    this.#armed.set(name, { persistent });
  }

  disarm(name: BreakpointName): void {
    this.#armed.delete(name);
    this.continue(name);
  }

  /** Pauses here if `name` is armed; resolves on x-test-continue (or shutdown). */
  async hit(name: BreakpointName, data: Record<string, unknown> = {}): Promise<void> {
    const bp = this.#armed.get(name);
    if (!bp || this.#closed) return;
    if (!bp.persistent) this.#armed.delete(name);
    const wait = Promise.withResolvers<void>();
    this.#paused.set(name, wait);
    this.emit("X_TEST_BREAKPOINT", { name, ...data });
    await wait.promise;
  }

  isPaused(name: BreakpointName): boolean {
    return this.#paused.has(name);
  }

  /** Resumes a paused breakpoint; false when nothing is paused there. */
  continue(name: string): boolean {
    const w = this.#paused.get(name);
    if (!w) return false;
    this.#paused.delete(name);
    w.resolve();
    return true;
  }

  close(): void {
    this.#closed = true;
    this.#armed.clear();
    for (const name of [...this.#paused.keys()]) this.continue(name);
  }
}
