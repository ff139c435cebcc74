/**
 * COLO through the engine's QMP command table: query-colo-status, x-colo-lost-heartbeat errors, `cont`
 * refused during a checkpoint, and a new x-checkpoint-delay triggering a checkpoint at once.
 */
import assert from "node:assert/strict";
import type { Engine } from "../engine.ts";
import { engineCommands } from "../qmp/commands.ts";
import { QmpError } from "../qmp/schema.ts";
import { InProcessPair } from "../testing/in_process_test_util.ts";
import { until } from "../wait.ts";

function qmp(e: Engine) {
  const table = new Map(engineCommands(e).map((c) => [c.name, c]));
  return async (name: string, args: Record<string, unknown> = {}) => {
    const ctx = {
      server: null!,
      clientId: 1,
      id: undefined,
      oob: false,
      signal: new AbortController().signal,
      takeFd: () => undefined,
    };
    return await table.get(name)!.handler(args, ctx);
  };
}

Deno.test("colo qmp: status, heartbeat errors, cont refused mid-checkpoint, delay change checkpoints now", async () => {
  await using p = new InProcessPair({
    names: ["primary", "secondary"],
    workload: { kind: "random", seed: 3, hotPages: 64, hotPercent: 80 },
    capabilities: ["x-colo"],
  });
  const [s, d] = [p.src.engine, p.dst.engine];
  const sq = qmp(s);
  const dq = qmp(d);
  assert.deepEqual(await sq("query-colo-status"), { mode: "none", "last-mode": "none", reason: "none" });
  await assert.rejects(
    sq("x-colo-lost-heartbeat"),
    (e: unknown) => e instanceof QmpError && /not in COLO mode/.test(e.message),
  );

  s.options.params["x-checkpoint-delay"] = 3_600_000; // an hour: only a trigger can start a checkpoint
  p.migrate({ returnPath: false });
  await until("COLO", () => s.migration.status === "colo" && d.incoming.status === "colo");
  assert.deepEqual(await sq("query-colo-status"), {
    mode: "primary",
    "last-mode": "none", // as QEMU: set when COLO ends
    reason: "none",
  });
  assert.deepEqual(await dq("query-colo-status"), {
    mode: "secondary",
    "last-mode": "none",
    reason: "none",
  });

  // A new delay triggers a checkpoint at once (colo_checkpoint_delay_set); hold it after the stop.
  d.breakpoints.arm("colo-stopped", false);
  await sq("migrate-set-parameters", { "x-checkpoint-delay": 3_600_000 });
  await until("the secondary stopped for a checkpoint", () => d.machine.runstate === "colo");
  await assert.rejects(
    dq("cont"),
    (e: unknown) => e instanceof QmpError && /COLO checkpoint in progress/.test(e.message),
  );
  // The runstate turns colo as the stop begins; the breakpoint is reached once the vCPU has parked.
  await until("the secondary paused at colo-stopped", () => d.breakpoints.continue("colo-stopped"));
  await until("checkpoint applied", () => d.incoming.colo?.applied === 1);

  await dq("x-colo-lost-heartbeat");
  await assert.rejects(dq("x-colo-lost-heartbeat"), (e: unknown) => e instanceof QmpError);
  await until("secondary completed", () => d.incoming.status === "completed");
  assert.deepEqual(await dq("query-colo-status"), {
    mode: "none",
    "last-mode": "secondary",
    reason: "request",
  });
  // Idle until its next checkpoint (an hour away), the primary has not noticed: as in QEMU, it learns
  // of the loss from management (heartbeat), not by itself.
  assert.deepEqual(await sq("query-colo-status"), {
    mode: "primary",
    "last-mode": "none", // as QEMU: set when COLO ends
    reason: "none",
  });
  await sq("x-colo-lost-heartbeat");
  await until("primary completed", () => s.migration.status === "completed");
  assert.deepEqual(await sq("query-colo-status"), {
    mode: "none",
    "last-mode": "primary",
    reason: "request",
  });
  assert.ok(s.machine.running, "the primary keeps running");
});

Deno.test("colo qmp: after the primary is lost mid-COLO, the takeover's reason is 'request' (from the failover state)", async () => {
  // QEMU's qmp_query_colo_status derives the reason from the failover state alone: a checkpoint that
  // failed before the failover was requested does not make a completed takeover an 'error'.
  await using p = new InProcessPair({
    names: ["primary", "secondary"],
    workload: { kind: "random", seed: 4, hotPages: 64, hotPercent: 80 },
    capabilities: ["x-colo"],
  });
  const [s, d] = [p.src.engine, p.dst.engine];
  const dq = qmp(d);
  s.options.params["x-checkpoint-delay"] = 50;
  p.migrate({ returnPath: false });
  await until("a checkpoint applied", () => (d.incoming.colo?.applied ?? 0) >= 1);
  s.migration.yank();
  await until("the secondary lost its primary", () => (d.incoming.colo?.lastError ?? null) !== null);
  assert.equal((await dq("query-colo-status") as { reason: string }).reason, "none");
  await dq("x-colo-lost-heartbeat");
  await until("secondary completed", () => d.incoming.status === "completed");
  assert.deepEqual(await dq("query-colo-status"), {
    mode: "none",
    "last-mode": "secondary",
    reason: "request",
  });
  assert.ok(d.machine.running, "the secondary runs after the takeover");
});
