/**
 * The vCPU dirty page rate limit (QEMU's system/dirtylimit.c): `set-vcpu-dirty-limit` gives the vCPU a
 * quota in MB/s; a thread measures its dirty rate from its dirty ring every second and throttles it —
 * proportionally while the rate is more than 50 % off the quota, by small steps nearer, not at all within
 * 25 MB/s of it — up to 99 % of its time asleep. It needs the dirty ring (KVM's), as QEMU does.
 * `query-vcpu-dirty-limit` lists the limited vCPUs, `cancel-vcpu-dirty-limit` lifts the limit.
 */
import type { Machine } from "./guest/machine.ts";
import type { QmpCommand } from "./qmp/server.ts";
import { QmpError } from "./qmp/schema.ts";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";

/** Within this many MB/s of the quota the throttle is left alone (DIRTYLIMIT_TOLERANCE_RANGE). */
export const DIRTYLIMIT_TOLERANCE = 25;
const LINEAR_ADJUSTMENT_PCT = 50;
const THROTTLE_PCT_MAX = 99;
/** How often the rate is measured and the throttle adjusted (DIRTYLIMIT_CALC_TIME_MS). */
const PERIOD_MS = 1000;
/** The model's machines have one vCPU. */
const VCPUS = 1;
const MiB = 1 << 20;

export const NEEDS_RING =
  "dirty page limit feature requires KVM with accelerator property 'dirty-ring-size' set'";

export class DirtyLimit {
  /** The quota in MB/s, or null when the vCPU is not limited. */
  #quota: number | null = null;
  #current = 0;
  /** The highest rate seen (dirtylimit_dirty_ring_full_time's max_dirtyrate). */
  #maxRate = 0;
  #pct = 0;
  #cancel: (() => void) | null = null;
  /** Set by a migration with the dirty-limit capability, which owns the limit until it ends. */
  #migration: { periodMs: number } | null = null;

  constructor(private readonly machine: Machine) {}

  get inService(): boolean {
    return this.#quota !== null;
  }

  /** The vCPU's share of time asleep (a figure for the tests and query-migrate). */
  get throttlePercent(): number {
    return this.#pct;
  }

  set(cpuIndex: number | undefined, rate: number): void {
    if (!this.machine.dirtyRing) throw new Error(NEEDS_RING);
    if (this.#migration) throw new Error("can't set dirty page rate limit while migration is running");
    if (cpuIndex !== undefined && (cpuIndex < 0 || cpuIndex >= VCPUS)) {
      throw new Error("incorrect cpu index specified");
    }
    if (rate === 0) return this.cancel(cpuIndex);
    this.#limit(rate);
  }

  #limit(rate: number): void {
    const start = this.#quota === null;
    this.#quota = rate;
    if (start) this.#schedule(this.machine.dirtyRing!.pushes);
  }

  /**
   * migration_dirty_limit_guest: a migration that does not converge limits every vCPU to
   * vcpu-dirty-limit, measured every x-vcpu-dirty-limit-period, until it ends.
   */
  startForMigration(quota: number, periodMs: number): void {
    this.#migration = { periodMs };
    if (this.#quota !== quota) this.#limit(quota);
  }

  /** The migration ended (migration_cleanup): its limit is lifted. */
  stopForMigration(): void {
    if (!this.#migration) return;
    this.#migration = null;
    this.cancel();
  }

  /**
   * query-migrate's dirty-limit-throttle-time-per-round and dirty-limit-ring-full-time (µs): how long the
   * vCPU sleeps for each time its ring fills, and how long filling it takes at the highest rate seen.
   */
  migrationInfo(): { throttleUs: number; ringFullUs: number } | null {
    const ring = this.machine.dirtyRing;
    if (!this.#migration || this.#quota === null || !ring) return null;
    const ringFullUs = this.#maxRate > 0
      ? Math.round(ring.size * TARGET_PAGE_SIZE / MiB * 1e6 / this.#maxRate)
      : 0;
    const throttleUs = this.#pct >= 100 ? 0 : Math.round(ringFullUs * this.#pct / (100 - this.#pct));
    return { throttleUs, ringFullUs };
  }

  cancel(cpuIndex?: number): void {
    if (!this.machine.dirtyRing) return;
    if (this.#migration) throw new Error("can't cancel dirty page rate limit while migration is running");
    if (cpuIndex !== undefined && (cpuIndex < 0 || cpuIndex >= VCPUS)) {
      throw new Error("incorrect cpu index specified");
    }
    this.#quota = null;
    this.#current = 0;
    this.#maxRate = 0;
    this.#pct = 0;
    this.machine.vcpu.setThrottle(0);
    this.#cancel?.();
    this.#cancel = null;
  }

  query(): { "cpu-index": number; "limit-rate": number; "current-rate": number }[] {
    if (this.#quota === null) return [];
    return [{ "cpu-index": 0, "limit-rate": this.#quota, "current-rate": this.#current }];
  }

  /** One period: the rate from the ring's pushes, then dirtylimit_adjust_throttle. */
  #schedule(pushes0: number): void {
    const clock = this.machine.clock;
    const t0 = clock.now();
    this.#cancel = clock.timer(() => {
      const ring = this.machine.dirtyRing!;
      const pushes = ring.pushes;
      const seconds = Math.max(clock.now() - t0, 1) / 1000;
      this.#current = Math.round((pushes - pushes0) * TARGET_PAGE_SIZE / MiB / seconds);
      this.#maxRate = Math.max(this.#maxRate, this.#current);
      this.#adjust();
      this.#schedule(pushes);
    }, this.#migration?.periodMs ?? PERIOD_MS);
  }

  #adjust(): void {
    const quota = this.#quota!;
    const current = this.#current;
    if (Math.abs(quota - current) <= DIRTYLIMIT_TOLERANCE) return;
    // The rate goes with the time the vCPU runs, (100 - pct) %: aim for the share that gives the quota,
    // all the way when far off, half of the way when near (QEMU's linear and fixed-step adjustments).
    const target = current === 0 ? 0 : 100 - (100 - this.#pct) * quota / current;
    const far = Math.abs(quota - current) * 100 / Math.max(quota, current) > LINEAR_ADJUSTMENT_PCT;
    const next = far ? target : this.#pct + (target - this.#pct) / 2;
    this.#pct = Math.min(THROTTLE_PCT_MAX, Math.max(0, next));
    this.machine.vcpu.setThrottle(this.#pct);
  }

  close(): void {
    this.#cancel?.();
    this.#cancel = null;
  }
}

export function dirtyLimitCommands(l: DirtyLimit): QmpCommand[] {
  const qmp = (fn: () => unknown) => {
    try {
      return fn();
    } catch (e) {
      throw new QmpError((e as Error).message);
    }
  };
  return [
    {
      name: "set-vcpu-dirty-limit",
      args: { "cpu-index": { type: "int", optional: true }, "dirty-rate": { type: "int" } },
      handler: (a) => qmp(() => l.set(a["cpu-index"] as number | undefined, a["dirty-rate"] as number)),
    },
    {
      name: "cancel-vcpu-dirty-limit",
      args: { "cpu-index": { type: "int", optional: true } },
      handler: (a) => qmp(() => l.cancel(a["cpu-index"] as number | undefined)),
    },
    { name: "query-vcpu-dirty-limit", handler: () => l.query() },
  ];
}
