import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { PrecopyCase } from "../families/precopy/case.ts";
import { runFlow, startPair } from "../families/mod.ts";
import { QmpCommandError, type QmpEvent } from "../../engine/qmp/client.ts";
import { engineWorld } from "../world/engine.ts";
import { ramCounters, type SampledSide, Sampler, type SamplerQmp } from "./sampler.ts";

/** A QMP client that answers from a script; `hold` keeps replies back until released. */
class FakeQmp implements SamplerQmp {
  closed = false;
  events: QmpEvent[] = [];
  calls: string[] = [];
  reply: Record<string, unknown> = { status: "active", ram: { transferred: 4096, "dirty-sync-count": 1 } };
  coloInfo: Record<string, unknown> | null = null;
  #held: (() => void)[] = [];
  hold = false;

  execute<T = unknown>(command: string): Promise<T> {
    this.calls.push(command);
    if (this.closed) return Promise.reject(new Error("closed"));
    if (command === "x-test-colo-info") {
      if (!this.coloInfo) {
        return Promise.reject(new QmpCommandError("fake", command, "CommandNotFound", "no such command"));
      }
      return Promise.resolve(this.coloInfo as T);
    }
    const answer = structuredClone(this.reply) as T;
    if (!this.hold) return Promise.resolve(answer);
    return new Promise<T>((resolve) => this.#held.push(() => resolve(answer)));
  }

  release(): void {
    for (const r of this.#held.splice(0)) r();
  }

  emit(event: string, data: Record<string, unknown>, atMs = Date.now()): void {
    const us = Math.round(atMs * 1000);
    this.events.push({
      event,
      data,
      timestamp: { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 },
      index: this.events.length,
    });
  }
}

function fakeSide(name: "source" | "target", qmp = new FakeQmp()): SampledSide & { qmp: FakeQmp } {
  return { name, qmp, exitStatus: null };
}

Deno.test("ramCounters: QEMU's ram fields camel-cased, 64-bit counters as numbers, absent ones left out", () => {
  const r = ramCounters({
    status: "active",
    ram: { transferred: 10n, remaining: 20, "dirty-sync-count": 3, "dirty-pages-rate": 7, mbps: 1.5 },
  });
  assert.deepEqual(r, { transferred: 10, remaining: 20, dirtySyncCount: 3, dirtyPagesRate: 7, mbps: 1.5 });
  assert.equal(ramCounters({ status: "setup" }), undefined);
  assert.equal(ramCounters({ ram: "nonsense" }), undefined);
});

Deno.test("sampler: polls both sides, times the pass and status events, stops with nothing pending", async () => {
  const src = fakeSide("source");
  const dst = fakeSide("target");
  dst.qmp.reply = { status: "active" };
  const t0 = performance.now();
  const s = new Sampler(() => [src, dst], { intervalMs: 10, t0 });
  s.start();
  src.qmp.emit("MIGRATION", { status: "active" }, performance.timeOrigin + t0 + 5);
  src.qmp.emit("MIGRATION_PASS", { pass: 2 }, performance.timeOrigin + t0 + 30);
  src.qmp.emit("MIGRATION", { status: "device" }, performance.timeOrigin + t0 + 40);
  await sleep(60);
  await s.settled();
  const polls = s.samples.filter((x) => x.kind === "poll");
  assert.ok(polls.filter((x) => x.side === "source").length >= 3, JSON.stringify(polls));
  assert.ok(polls.filter((x) => x.side === "target").length >= 3);
  const first = polls.find((x) => x.side === "source");
  assert.deepEqual(first?.ram, { transferred: 4096, dirtySyncCount: 1 });
  assert.equal(polls.find((x) => x.side === "target")?.ram, undefined);
  const marks = s.samples.filter((x) => x.kind !== "poll");
  assert.deepEqual(marks.map((m) => [m.kind, Math.round(m.t)]), [["status", 5], ["pass", 30], [
    "status",
    40,
  ]]);
  // Sorted by time, and nothing is asked after the stop.
  assert.deepEqual(s.samples.map((x) => x.t), s.samples.map((x) => x.t).sort((a, b) => a - b));
  const calls = src.qmp.calls.length;
  await sleep(30);
  assert.equal(src.qmp.calls.length, calls);
});

Deno.test("sampler: an exited or closed side is not asked; a slow one is skipped, never queued", async () => {
  const src = fakeSide("source");
  const dst = fakeSide("target");
  let gone = false;
  const exited: SampledSide = {
    name: "target",
    qmp: dst.qmp,
    get exitStatus() {
      return gone ? { success: false, code: 1, signal: null } : null;
    },
  };
  src.qmp.hold = true;
  const s = new Sampler(() => [src, exited], { intervalMs: 5 });
  s.start();
  await sleep(40);
  // One request held on the source the whole time: not one per tick.
  assert.equal(src.qmp.calls.length, 1);
  gone = true;
  const asked = dst.qmp.calls.length;
  assert.ok(asked >= 2);
  await sleep(30);
  assert.equal(dst.qmp.calls.length, asked, "a side that exited was still asked");
  src.qmp.release();
  await s.settled();
  assert.equal(s.samples.filter((x) => x.kind === "poll" && x.side === "source").length, 1);
});

Deno.test("sampler: COLO checkpoints from x-test-colo-info; a world without it is not asked again", async () => {
  const engine = fakeSide("source");
  engine.qmp.reply = { status: "colo" };
  engine.qmp.coloInfo = { primary: { checkpoints: 4 } };
  const qemu = fakeSide("source");
  qemu.qmp.reply = { status: "colo" };
  const s = new Sampler(() => [engine], { intervalMs: 5 });
  const q = new Sampler(() => [qemu], { intervalMs: 5 });
  s.start();
  q.start();
  await sleep(30);
  await s.settled();
  await q.settled();
  assert.ok(s.samples.some((x) => x.kind === "poll" && x.checkpoints === 4));
  assert.equal(qemu.qmp.calls.filter((c) => c === "x-test-colo-info").length, 1);
  assert.ok(qemu.qmp.calls.filter((c) => c === "query-migrate").length >= 3);
});

const plain: PrecopyCase = {
  name: "/migration/report/sampler",
  tier: "smoke",
  flow: "precopy",
  why: "the sampler on a real pair",
  transport: "unix",
};

Deno.test("sampler on a real pair: both sides sampled, passes and the switchover marked, untraced", async () => {
  const pair = await startPair(plain, {
    seed: 1,
    world: engineWorld,
    waitMs: 30_000,
    sampleMs: 20,
    log: () => {},
  });
  try {
    await sleep(150); // idle before the migration: the sampler alone talks to both sides
    const idle = pair.transcript.filter((e) => e.text.includes('"query-migrate"')).length;
    assert.equal(idle, 0, "the sampler's query-migrate went into the QMP transcript");
    await runFlow(pair, plain);
  } finally {
    await pair.close();
    await pair.removeDir();
  }
  const samples = pair.samples;
  for (const side of ["source", "target"]) {
    assert.ok(samples.filter((s) => s.kind === "poll" && s.side === side).length >= 5, `${side} polls`);
  }
  assert.ok(samples.some((s) => s.kind === "pass" && s.side === "source"), "no MIGRATION_PASS");
  assert.ok(samples.some((s) => s.kind === "status" && s.side === "source" && s.status === "device"));
  const done = samples.find((s) => s.kind === "status" && s.status === "completed");
  assert.ok(done && done.t > 150 && done.t < 30_000, `completed at ${done?.t}`);
  assert.ok(samples.some((s) => s.kind === "poll" && (s.ram?.transferred ?? 0) > 0));
});
