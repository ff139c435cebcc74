/**
 * auto-converge (ram.c's migration_trigger_throttle and mig_throttle_guest_down, over
 * system/cpu-throttle.c): at the end of each sync period (a second or more), when the guest dirtied more
 * than throttle-trigger-threshold percent of what was sent in the period, twice in a row, the vCPU is
 * slowed: to cpu-throttle-initial the first time, then by cpu-throttle-increment (or, with
 * cpu-throttle-tailslow, by no more than it takes to bring the dirty rate down to the threshold), never
 * past max-cpu-throttle. The migration's end lifts it.
 */
/** While throttled, the dirty log is synced at least this often (CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS). */
export const THROTTLE_SYNC_MS = 5000;

export interface ThrottleParams {
  "throttle-trigger-threshold": number;
  "cpu-throttle-initial": number;
  "cpu-throttle-increment": number;
  "cpu-throttle-tailslow": boolean;
  "max-cpu-throttle": number;
}

/**
 * migration_trigger_throttle's test, shared by auto-converge and dirty-limit: at the end of a sync period,
 * the guest dirtied more than throttle-trigger-threshold percent of what was sent in it, the second time
 * (the count is not reset by a calm period, as in QEMU).
 */
export class ThrottleTrigger {
  #highPeriods = 0;
  #sentBefore = 0;
  /** Returns the threshold in bytes when this period triggers, else null. */
  period(dirtiedBytes: number, sentTotal: number, thresholdPct: number): number | null {
    const sent = sentTotal - this.#sentBefore;
    this.#sentBefore = sentTotal;
    const threshold = sent * thresholdPct / 100;
    if (dirtiedBytes <= threshold) return null;
    if (++this.#highPeriods < 2) return null;
    this.#highPeriods = 0;
    return threshold;
  }
}

export class AutoConverge {
  /** The vCPU's throttle now, in percent (query-migrate's cpu-throttle-percentage). */
  percentage = 0;
  readonly #trigger = new ThrottleTrigger();

  /** `throttle` slows the vCPU to run (100 - pct) % of the time. */
  constructor(private readonly throttle: (pct: number) => void) {}

  /** A sync period ended: the guest dirtied `dirtiedBytes`, and `sentTotal` bytes went out so far. */
  period(dirtiedBytes: number, sentTotal: number, p: ThrottleParams): void {
    const threshold = this.#trigger.period(dirtiedBytes, sentTotal, p["throttle-trigger-threshold"]);
    if (threshold !== null) this.#slowDown(dirtiedBytes, threshold, p);
  }

  #slowDown(dirtiedBytes: number, threshold: number, p: ThrottleParams): void {
    if (this.percentage === 0) return this.#set(p["cpu-throttle-initial"]);
    let step = p["cpu-throttle-increment"];
    if (p["cpu-throttle-tailslow"]) {
      // The share of the CPU that would bring the dirty rate down to the threshold, approached gently.
      const cpuNow = 100 - this.percentage;
      const cpuIdeal = cpuNow * (threshold / dirtiedBytes);
      step = Math.min(Math.floor(cpuNow - cpuIdeal), step);
    }
    this.#set(Math.min(this.percentage + step, p["max-cpu-throttle"]));
  }

  #set(pct: number): void {
    this.percentage = pct;
    this.throttle(pct);
  }

  /** cpu_throttle_stop: the migration ended. */
  stop(): void {
    if (this.percentage === 0) return;
    this.#set(0);
  }
}
