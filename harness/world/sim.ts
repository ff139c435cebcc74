/**
 * The simulated world's slot: source, destination and the vCPU in one process under a seeded scheduler
 * (DESIGN §2.6). It is not built yet, so it runs nothing: every case is reported as skipped with this
 * reason, and spawning a side fails with it, rather than pretending to pass.
 */
import type { Side, World } from "./world.ts";

export const SIM_NOT_BUILT = "the simulated world is not built yet (deterministic simulation issue)";

export const simWorld: World = {
  name: "sim",
  cannotRun: () => SIM_NOT_BUILT,
  spawn(): Promise<Side> {
    return Promise.reject(new Error(SIM_NOT_BUILT));
  },
};
