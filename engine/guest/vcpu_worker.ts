/**
 * The vCPU thread. It runs the workload in slices while CTRL_CMD is RUN and parks on STOP, posting
 * `{type:"parked", gen}` once parked; serial output is posted as it happens, so the main thread has seen
 * every character written before the park acknowledgement.
 */
/// <reference lib="deno.worker" />
import { errorMessage } from "../error.ts";
import { CMD_QUIT, CMD_RUN, CMD_STOP, CTRL_CMD, CTRL_GEN, CTRL_THROTTLE } from "./regs.ts";
import { userfaultAccess, type UserfaultShared } from "./userfault.ts";
import { DirtyRing, type DirtyRingShared } from "./dirty_ring.ts";
import { type RamShare, viewRam } from "../hostmem.ts";
import { createWorkload, type GuestMemory, type WorkloadSpec } from "./workload.ts";

export interface VcpuInit {
  blocks: { mem: RamShare; dirtyLog: SharedArrayBuffer }[];
  ctrl: SharedArrayBuffer;
  cpu: SharedArrayBuffer;
  dev: SharedArrayBuffer;
  workload: WorkloadSpec;
  dirtyRing?: DirtyRingShared;
  userfault: UserfaultShared;
  /** Milliseconds of execution per slice and of sleep between slices (a duty cycle, so a guest leaves
   * CPU time to the migration threads of a 2-core machine). */
  runMs: number;
  sleepMs: number;
}

export type VcpuMessage =
  | { type: "serial"; ch: string }
  | { type: "suspend" }
  | { type: "parked"; gen: number }
  | { type: "error"; message: string }
  /** A fault on a missing page (postcopy): the vCPU waits for it. */
  | { type: "fault"; block: number; page: number };

/** With a dirty ring, written pages go onto it (GuestMemory.mark); else into the bitmaps. */
function ringMark(init: VcpuInit): Pick<GuestMemory, "mark"> {
  if (!init.dirtyRing) return {};
  const ring = new DirtyRing(init.dirtyRing, init.blocks.map((b) => new Int32Array(b.dirtyLog)));
  return { mark: (block, page) => ring.mark(block, page) };
}

self.onmessage = (e: MessageEvent<VcpuInit>) => {
  const init = e.data;
  const ctrl = new Int32Array(init.ctrl);
  const post = (m: VcpuMessage) => self.postMessage(m);
  const g: GuestMemory = {
    blocks: init.blocks.map((b) => {
      const mem = viewRam(b.mem);
      return { mem, dirtyLog: new Int32Array(b.dirtyLog), pages: mem.length / 4096 };
    }),
    cpu: new Int32Array(init.cpu),
    dev: new Int32Array(init.dev),
    serial: (ch) => post({ type: "serial", ch }),
    suspend: () => post({ type: "suspend" }),
    ...ringMark(init),
    // A vCPU blocked on a missing page wakes when it is placed, and gives the access up when stopped.
    access: userfaultAccess(
      init.userfault,
      (block, page) => post({ type: "fault", block, page }),
      (present, word, seen) => {
        if (Atomics.load(ctrl, CTRL_CMD) !== CMD_RUN) return false;
        Atomics.wait(present, word, seen, 5);
        return true;
      },
    ),
  };
  try {
    const workload = createWorkload(init.workload, g);
    let acked = -1;
    while (true) {
      const cmd = Atomics.load(ctrl, CTRL_CMD);
      if (cmd === CMD_QUIT) break;
      if (cmd === CMD_STOP) {
        const gen = Atomics.load(ctrl, CTRL_GEN);
        if (gen !== acked) {
          acked = gen;
          post({ type: "parked", gen });
        }
        Atomics.wait(ctrl, CTRL_CMD, CMD_STOP, 1000);
        continue;
      }
      const t0 = performance.now();
      while (Atomics.load(ctrl, CTRL_CMD) === CMD_RUN && performance.now() - t0 < init.runMs) {
        workload.step(1024);
      }
      // Throttled, the vCPU also sleeps pct/(100-pct) of each slice it ran (cpu_throttle_thread).
      const pct = Atomics.load(ctrl, CTRL_THROTTLE) / 100;
      const sleep = init.sleepMs + (pct > 0 ? init.runMs * pct / (100 - pct) : 0);
      if (sleep > 0) Atomics.wait(ctrl, CTRL_CMD, CMD_RUN, sleep);
    }
  } catch (err) {
    post({ type: "error", message: errorMessage(err) });
  }
  self.close();
};
