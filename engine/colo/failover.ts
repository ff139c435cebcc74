/**
 * FailoverStatus (migration/colo-failover.c): none → require → active → completed, and relaunch when a
 * failover is requested on the secondary while it applies a checkpoint. Transitions are compare-and-set,
 * as QEMU's failover_set_state(old, new).
 */
export type FailoverStatus = "none" | "require" | "active" | "completed" | "relaunch";

export class Failover {
  #status: FailoverStatus = "none";
  #requested: PromiseWithResolvers<void> = Promise.withResolvers();

  get status(): FailoverStatus {
    return this.#status;
  }

  /** Sets `next` if the status is `from`; returns the status that was there. */
  transition(from: FailoverStatus, next: FailoverStatus): FailoverStatus {
    const was = this.#status;
    if (was === from) {
      this.#status = next;
      if (next === "require") this.#requested.resolve();
    }
    return was;
  }

  /** Resolves once a failover has been requested (x-colo-lost-heartbeat). */
  get requested(): Promise<void> {
    return this.#requested.promise;
  }

  reset(): void {
    this.#status = "none";
    this.#requested = Promise.withResolvers();
  }
}
