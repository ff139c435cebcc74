import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { CPU_PASS, CPU_WORDS, DEV_WORDS } from "./regs.ts";
import { Userfault } from "./userfault.ts";
import { Vcpu } from "./vcpu.ts";

/**
 * cpu_throttle_set on the real vCPU worker: at 90 % it runs a tenth of its slices' time. Both windows see
 * the same machine, so the ratio holds on a busy one; the bound leaves a wide margin (expected ~0.2).
 */
Deno.test("vcpu: a throttled vCPU gets through far fewer steps in the same time", async () => {
  const mem = new SharedArrayBuffer(256 * 4096);
  const dirtyLog = new SharedArrayBuffer(256 / 8);
  const cpu = new SharedArrayBuffer(CPU_WORDS * 4);
  const regs = new Int32Array(cpu);
  const uf = new Userfault([256]);
  const vcpu = new Vcpu({
    blocks: [{ mem, dirtyLog }],
    cpu,
    dev: new SharedArrayBuffer(DEV_WORDS * 4),
    workload: { kind: "random", seed: 1 },
    userfault: uf.shared(),
    onFault: () => {},
    onSerial: () => {},
    onError: (m) => assert.fail(m),
  });
  try {
    const steps = async (ms: number) => {
      const before = Atomics.load(regs, CPU_PASS);
      await sleep(ms);
      return Atomics.load(regs, CPU_PASS) - before;
    };
    vcpu.cont();
    await sleep(50);
    const free = await steps(400);
    vcpu.setThrottle(90);
    await sleep(50);
    const throttled = await steps(400);
    assert.ok(free > 0, "the unthrottled vCPU ran");
    assert.ok(throttled < free * 0.5, `throttled to 90 %: ${throttled} steps against ${free} unthrottled`);
    vcpu.setThrottle(0);
    await vcpu.stop();
  } finally {
    vcpu.terminate();
  }
});
