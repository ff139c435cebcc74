/**
 * The simulated host's cpr channels (cpr-transfer): a target listening on a path, and a source that sends
 * it the CPR state with the descriptors of its RAM (the pair's simulated memfds, which the target maps
 * from the same host memory). The bytes go through the same encoding and decoding as between processes.
 * The path's file stands for the listening socket's, which the flow waits to appear.
 */
import { type CprChannel, type CprFd, decodeCprState } from "../../../engine/cpr.ts";

type Delivery = (bytes: Uint8Array, fds: number[]) => Promise<void>;

export class SimCprChannels {
  readonly #listeners = new Map<string, { deliver: Delivery; fail(e: Error): void }>();

  /** A target's cpr_state_load: resolves with the state once a source has sent it. */
  listen(path: string): Promise<{ fds: CprFd[]; hangUp(): void }> {
    Deno.writeFileSync(path, new Uint8Array());
    return new Promise((resolve, reject) => {
      this.#listeners.set(path, {
        deliver: (bytes, fds) => {
          this.#drop(path);
          const hungUp = Promise.withResolvers<void>();
          try {
            resolve({ fds: decodeCprState(bytes, fds), hangUp: () => hungUp.resolve() });
          } catch (e) {
            reject(e);
            hungUp.resolve();
          }
          return hungUp.promise;
        },
        fail: reject,
      });
    });
  }

  /** The source's side, as the engine takes it (EngineHooks.cprChannel). */
  readonly channel: CprChannel = {
    send: (path, bytes, fds) => {
      const l = this.#listeners.get(path);
      if (!l) return Promise.reject(new Error(`Failed to connect to '${path}': No such file or directory`));
      return Promise.resolve({ hangup: l.deliver(bytes, fds) });
    },
  };

  #drop(path: string): void {
    this.#listeners.delete(path);
    try {
      Deno.removeSync(path);
    } catch {
      // Gone with the directory already.
    }
  }

  /** The pair ends: a target still waiting for its state gives up (its start fails). */
  dispose(): void {
    for (const [path, l] of [...this.#listeners]) {
      this.#drop(path);
      l.fail(new Error(`target: cpr channel ${path}: the source never sent the CPR state`));
    }
  }
}
