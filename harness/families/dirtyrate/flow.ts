/** Dirty-rate flows: measuring and limiting one VM's dirty page rate (the source; no migration). */
import { FlowError, type MigrationPair } from "../../framework.ts";
import { finishByExpectation } from "../../expect.ts";
import { connectUri, migrate, NON_CONVERGE } from "../../migration_qmp.ts";
import { isAbGuest, waitSerialB } from "../../migration_util.ts";
import type { DirtyLimitCase, DirtyRateCase, VcpuDirtyLimitCase } from "./case.ts";

/** upstream's tolerance: within this of the quota counts as limited (DIRTYLIMIT_TOLERANCE_RANGE). */
const TOLERANCE_MBPS = 25;
/** upstream's tries at 1 s each before a limit (or its lifting) must have shown. */
const TRIES = 19;

interface RateInfo {
  status: string;
  "dirty-rate"?: number;
  mode: string;
}

/** calc-dirty-rate, then query-dirty-rate until it says measured: the rate in MB/s. */
async function measure(p: MigrationPair, args: Record<string, unknown>): Promise<number> {
  await p.src.qmp.execute("calc-dirty-rate", args);
  let info: RateInfo | undefined;
  await p.wait("query-dirty-rate to say measured", async (see) => {
    info = await p.src.qmp.execute<RateInfo>("query-dirty-rate");
    see(`status ${info.status}`);
    return info.status === "measured";
  });
  if (info?.["dirty-rate"] === undefined) {
    throw new FlowError(`query-dirty-rate says measured but has no dirty-rate: ${JSON.stringify(info)}`);
  }
  if (args.mode !== undefined && info.mode !== args.mode) {
    throw new FlowError(`query-dirty-rate reports mode ${info.mode}, asked for ${args.mode}`);
  }
  return info["dirty-rate"];
}

export async function dirtyRateFlow(p: MigrationPair, c: DirtyRateCase): Promise<void> {
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  for (const r of c.refusals ?? []) {
    const err = await p.src.qmp.execute(r.command, r.args).then(() => null, (e: Error) => e.message);
    if (err === null) {
      throw new FlowError(`${r.command} ${JSON.stringify(r.args)} was accepted; it must fail`);
    }
    if (!r.error.test(err)) {
      throw new FlowError(`${r.command} ${JSON.stringify(r.args)} failed with "${err}", expected ${r.error}`);
    }
  }
  if (c.measure) {
    const { calcTime, mode, expect } = c.measure;
    const rate = await measure(p, { "calc-time": calcTime, ...(mode ? { mode } : {}) });
    p.ctx.log(`dirty rate ${rate} MB/s (${mode ?? "page-sampling"})`);
    if (expect === "zero" && rate !== 0) {
      throw new FlowError(
        `a guest that writes nothing measured ${rate} MB/s dirty (${mode ?? "page-sampling"})`,
      );
    }
    if (expect === "dirty" && !(rate > 0)) {
      throw new FlowError(
        `a guest that writes all the time measured ${rate} MB/s (${mode ?? "page-sampling"})`,
      );
    }
  }
}

type Limit = { "cpu-index": number; "limit-rate": number; "current-rate": number };

export async function vcpuDirtyLimitFlow(p: MigrationPair, _c: VcpuDirtyLimitCase): Promise<void> {
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  const ring = { "calc-time": 1, mode: "dirty-ring" };
  const origin = await measure(p, ring);
  const quota = Math.floor(origin / 2);
  if (quota <= TOLERANCE_MBPS) {
    throw new FlowError(`the guest dirties ${origin} MB/s: too little for a limit of half of it to show`);
  }
  await p.src.qmp.execute("set-vcpu-dirty-limit", { "dirty-rate": quota });
  const limits = await p.src.qmp.execute<Limit[]>("query-vcpu-dirty-limit");
  if (limits.length !== 1 || limits[0]["limit-rate"] !== quota) {
    throw new FlowError(
      `query-vcpu-dirty-limit says ${JSON.stringify(limits)}, expected limit-rate ${quota}`,
    );
  }
  const seen: number[] = [];
  for (let i = 0; i < TRIES && !(seen.at(-1)! <= quota + TOLERANCE_MBPS); i++) {
    seen.push(await measure(p, ring));
  }
  if (!(seen.at(-1)! <= quota + TOLERANCE_MBPS)) {
    throw new FlowError(
      `the vCPU's dirty rate never came within its limit (${quota} + ${TOLERANCE_MBPS} MB/s; it was ` +
        `${origin} MB/s before): ${seen.join(", ")} MB/s in ${TRIES} tries`,
    );
  }
  await p.src.qmp.execute("cancel-vcpu-dirty-limit");
  const after = await p.src.qmp.execute<Limit[]>("query-vcpu-dirty-limit");
  if (after.length) throw new FlowError(`cancel-vcpu-dirty-limit left ${JSON.stringify(after)}`);
  const lifted: number[] = [];
  for (let i = 0; i < TRIES && !(lifted.at(-1)! > quota + TOLERANCE_MBPS); i++) {
    lifted.push(await measure(p, ring));
  }
  if (!(lifted.at(-1)! > quota + TOLERANCE_MBPS)) {
    throw new FlowError(
      `the limit was cancelled but the dirty rate stayed within it: ${
        lifted.join(", ")
      } MB/s (limit ${quota})`,
    );
  }
}

/** upstream's quota and period for the migration's dirty limit. */
const MIGRATION_QUOTA = 50;
/** upstream's converge settings for the end: 250 ms at 400 MB/s (100 MB may remain, 1 % slack). */
const FINAL = { "downtime-limit": 250, "max-bandwidth": 400_000_000 };

async function throttleUs(p: MigrationPair): Promise<number> {
  const s = await p.status(p.src);
  return Number(s["dirty-limit-throttle-time-per-round"] ?? 0);
}

async function waitThrottled(p: MigrationPair): Promise<void> {
  await p.wait("the source's dirty-limit-throttle-time-per-round > 0 (the vCPU limited)", async (see) => {
    const us = await throttleUs(p);
    see(`throttle ${us} µs per round`);
    return us > 0;
  }, p.ctx.waitMs * 4);
}

export async function dirtyLimitFlow(p: MigrationPair, _c: DirtyLimitCase): Promise<void> {
  // upstream's non-converge settings, at 20 MB/s rather than 3 (a pass of 150 MiB in seconds, not a
  // minute): still far from converging under a 1 ms downtime, with periods that trigger the limit.
  await p.setParams(p.src, {
    "x-vcpu-dirty-limit-period": 1000,
    "vcpu-dirty-limit": MIGRATION_QUOTA,
    ...NON_CONVERGE,
    "max-bandwidth": 20_000_000,
  });
  if (isAbGuest(p)) await waitSerialB(p, p.src);
  await migrate(p, await connectUri(p));
  await waitThrottled(p);
  // Cancelled: the destination fails and exits; the limit goes with the migration.
  await p.src.qmp.execute("migrate_cancel");
  await p.waitStatus(p.src, "cancelled", ["failed", "completed"]);
  const old = p.dst;
  const st = await old.waitExit(p.ctx.waitMs);
  if (st.code !== 1) {
    throw new FlowError(`the cancelled destination exited with status ${st.code}, expected 1`);
  }
  await old.kill();
  const left = await throttleUs(p);
  if (left !== 0) throw new FlowError(`the cancelled migration left the vCPU limited (${left} µs per round)`);
  const limits = await p.src.qmp.execute<unknown[]>("query-vcpu-dirty-limit");
  if (limits.length) throw new FlowError(`the cancelled migration left a limit: ${JSON.stringify(limits)}`);
  // Again, to a new destination: limited again, at the quota.
  await p.spawnTarget();
  await migrate(p, await connectUri(p));
  await waitThrottled(p);
  const again = await p.src.qmp.execute<{ "limit-rate": number }[]>("query-vcpu-dirty-limit");
  if (again.length !== 1 || again[0]["limit-rate"] !== MIGRATION_QUOTA) {
    throw new FlowError(
      `query-vcpu-dirty-limit says ${JSON.stringify(again)}, expected limit-rate ${MIGRATION_QUOTA}`,
    );
  }
  await p.setParams(p.src, FINAL);
  const s = await p.waitStatus(p.src, "pre-switchover");
  const remaining = Number((s.ram as Record<string, number> | undefined)?.remaining ?? Infinity);
  const most = FINAL["max-bandwidth"] * FINAL["downtime-limit"] / 1000 * 1.01;
  if (!(remaining < most)) {
    throw new FlowError(
      `at pre-switchover ${remaining} bytes remain, more than the downtime allows (${most})`,
    );
  }
  await p.src.qmp.execute("migrate-continue", { state: "pre-switchover" });
  await finishByExpectation(p, {}, true);
}
