/**
 * A counter the guest advances ("migtest-timer"). Version 2 added `period_ns`; a version-1 stream still
 * loads (minimum_version_id 1) and keeps the local period.
 */
import type { VMStateDescription } from "../../vmstate.ts";
import { DEV_TIMER_HI, DEV_TIMER_LO } from "../regs.ts";
import type { Device } from "./device.ts";

interface TimerState extends Record<string, unknown> {
  count: number;
  periodNs: number;
  enabled: boolean;
}

const TWO32 = 0x1_0000_0000;

export class TimerDevice implements Device {
  readonly idstr = "migtest-timer";
  readonly instanceId = 0;
  readonly state: TimerState = { count: 0, periodNs: 1_000_000, enabled: true };
  readonly vmsd: VMStateDescription<TimerState>;

  constructor(private readonly regs: Int32Array) {
    this.vmsd = {
      name: "migtest-timer",
      versionId: 2,
      minimumVersionId: 1,
      fields: [
        { name: "count", type: "uint64" },
        { name: "enabled", type: "bool" },
        { name: "periodNs", type: "uint32", versionId: 2 },
      ],
      preSave: (s) => {
        s.count = (regs[DEV_TIMER_HI] >>> 0) * TWO32 + (regs[DEV_TIMER_LO] >>> 0);
      },
      postLoad: (s) => {
        regs[DEV_TIMER_LO] = s.count % TWO32;
        regs[DEV_TIMER_HI] = Math.floor(s.count / TWO32);
      },
    };
  }

  reset(): void {
    this.regs[DEV_TIMER_LO] = 0;
    this.regs[DEV_TIMER_HI] = 0;
    Object.assign(this.state, { count: 0, periodNs: 1_000_000, enabled: true });
  }
}
