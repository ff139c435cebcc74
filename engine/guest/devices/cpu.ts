/**
 * The vCPU's architectural state as a device ("cpu"), so the destination's vCPU continues the workload
 * where the source's stopped: the a-b guest's page index and pass counter, the random writer's RNG.
 */
import type { VMStateDescription } from "../../vmstate.ts";
import { CPU_INDEX, CPU_PASS, CPU_PHASE, CPU_RNG, CPU_WORDS } from "../regs.ts";
import type { Device } from "./device.ts";

interface CpuState extends Record<string, unknown> {
  workload: number;
  phase: number;
  index: number;
  pass: number;
  rng: number[];
}

export class CpuDevice implements Device {
  readonly idstr = "cpu";
  readonly instanceId = 0;
  readonly state: CpuState;
  readonly vmsd: VMStateDescription<CpuState>;

  constructor(private readonly regs: Int32Array, private readonly workloadId: number) {
    this.state = { workload: workloadId, phase: 0, index: 0, pass: 0, rng: [0, 0, 0, 0] };
    this.vmsd = {
      name: "cpu",
      versionId: 1,
      minimumVersionId: 1,
      fields: [
        // Like VMSTATE_UINT32_EQUAL: a destination running another workload refuses the state.
        { name: "workload", type: "uint32", equal: true },
        { name: "phase", type: "uint32" },
        { name: "index", type: "uint32" },
        { name: "pass", type: "uint32" },
        { name: "rng", type: "uint32", arrayLen: 4 },
      ],
      preSave: (s) => {
        s.workload = this.workloadId;
        s.phase = regs[CPU_PHASE] >>> 0;
        s.index = regs[CPU_INDEX] >>> 0;
        s.pass = regs[CPU_PASS] >>> 0;
        s.rng = Array.from(regs.subarray(CPU_RNG, CPU_RNG + 4), (v) => v >>> 0);
      },
      preLoad: (s) => {
        s.workload = this.workloadId;
      },
      postLoad: (s) => {
        regs[CPU_PHASE] = s.phase;
        regs[CPU_INDEX] = s.index;
        regs[CPU_PASS] = s.pass;
        s.rng.forEach((v, i) => (regs[CPU_RNG + i] = v));
      },
    };
  }

  reset(): void {
    const rng = Array.from(this.regs.subarray(CPU_RNG, CPU_RNG + 4));
    this.regs.fill(0, 0, CPU_WORDS);
    // The RNG seed is board configuration (like a fixed boot image), not state a reset clears.
    rng.forEach((v, i) => (this.regs[CPU_RNG + i] = v));
  }
}
