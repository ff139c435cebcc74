/**
 * The simulated world end to end: a run is a function of its seed (same seed, same trace hash, same
 * result); a check still fails there (the canary) with the simulation's report and a replay line for
 * the sim; and a timing bug it finds replays exactly, while the same seed without the bug passes.
 */
import assert from "node:assert/strict";
import { MULTIFD_CASES } from "../../cases/multifd.ts";
import { MISC_CASES } from "../../cases/misc.ts";
import { PRECOPY_CASES } from "../../cases/precopy.ts";
import type { MigrationCase } from "../families/mod.ts";
import type { PrecopyCase } from "../families/precopy/case.ts";
import { type CaseResult, runCase } from "../runner.ts";
import { createSimWorld, simWorld } from "./sim.ts";
import { cannotRunIn } from "../families/mod.ts";

function named(table: readonly MigrationCase[], name: string): MigrationCase {
  const c = table.find((x) => x.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

const run = (c: MigrationCase, seed: number, opts: Partial<Parameters<typeof runCase>[1]> = {}) =>
  runCase(c, { seed, world: simWorld, artifactsDir: null, ...opts });

Deno.test("sim: the same seed gives the same trace hash; other seeds give others", async () => {
  const plain = named(PRECOPY_CASES, "/migration/precopy/tcp/plain");
  const hashes: string[] = [];
  for (const seed of [1, 2, 3]) {
    const [a, b] = [await run(plain, seed), await run(plain, seed)];
    assert.ok(a.ok && b.ok, a.error?.message ?? b.error?.message);
    assert.match(a.trace!, /^[0-9a-f]{64}$/);
    assert.equal(a.trace, b.trace, `seed ${seed} ran twice gave two traces`);
    hashes.push(a.trace!);
  }
  assert.equal(new Set(hashes).size, 3, "three seeds gave the same trace");
});

Deno.test("sim: the canary fails there too, with the simulation's report and a replay for the sim", async () => {
  const canary: PrecopyCase = {
    name: "/migration/canary/sim-one-byte",
    tier: "smoke",
    flow: "precopy",
    why: "a check that could never fail would look like a passing suite",
    transport: "unix",
    srcParams: { "zero-page-detection": "none" },
    fault: { kind: "corrupt", offset: 120 + 40 * (8 + 4096) + 0x64, xor: 0x5a },
  };
  const r = await run(canary, 9);
  assert.ok(!r.ok, "a corrupted page byte passed in the simulated world");
  const msg = r.error!.message;
  assert.match(msg, /guest RAM differs in 1 page\(s\)/);
  assert.match(msg, /simulation: seed 9, \d+ decisions, virtual time [\d.]+ ms, trace [0-9a-f]{16}/);
  assert.match(msg, /last decisions:\n {2}#\d+ @/);
  assert.match(
    msg,
    /replay: deno task matrix --filter '\/migration\/canary\/sim-one-byte' --seed 9 --backend sim/,
  );
});

Deno.test("sim: a timing bug found at a seed replays exactly; the seed without the bug passes", async () => {
  // No fault, no hint: the seed's uneven links let a receive channel fall a round behind.
  const c = named(MULTIFD_CASES, "/migration/multifd/unix/none/zero-heavy");
  const defects = [{ side: "dst", defect: "multifd-no-recv-sync" }] as const;
  let found: CaseResult | null = null;
  for (let seed = 1; seed <= 40 && !found; seed++) {
    const r = await run(c, seed, { defects });
    if (!r.ok) found = r;
  }
  assert.ok(found, "40 seeds did not find multifd-no-recv-sync in zero-heavy");
  const again = await run(c, found.seed, { defects });
  assert.ok(!again.ok);
  assert.equal(again.trace, found.trace);
  const firstLine = (r: CaseResult) => r.error!.message.split("\n")[0];
  assert.equal(firstLine(again), firstLine(found));
  assert.match(firstLine(found), /differs/);
  const clean = await run(c, found.seed);
  assert.ok(clean.ok, clean.error?.message);
});

Deno.test("sim: what it cannot run it says (the analyzer, a process), everything else it runs", () => {
  // file: paths live in memory (sim/files.ts), so file streams run here too.
  assert.equal(cannotRunIn(simWorld, named(PRECOPY_CASES, "/migration/precopy/file")), null);
  const analyze = named(MISC_CASES, "/migration/analyze-script");
  assert.match(cannotRunIn(simWorld, analyze)!, /the stream analyzer runs as a process/);
  assert.equal(cannotRunIn(simWorld, named(PRECOPY_CASES, "/migration/precopy/unix/plain")), null);
  assert.equal(cannotRunIn(simWorld, named(MULTIFD_CASES, "/migration/multifd/tcp/plain/cancel")), null);
});

Deno.test("sim: a connection reset at an exact byte fails the migration cleanly, and replays", async () => {
  const tcp = named(PRECOPY_CASES, "/migration/precopy/tcp/plain");
  if (tcp.flow !== "precopy") throw new Error(`${tcp.name} is not a precopy case`);
  const c: PrecopyCase = { ...tcp, expect: "complete-or-fail" };
  // The main channel, 4 KiB in: inside the first pages.
  const world = createSimWorld({ fault: { connection: 0, afterBytes: 4096 } });
  const runs: CaseResult[] = [];
  const ends: string[] = [];
  const log = (m: string) => m.startsWith("complete-or-fail") && ends.push(m);
  for (let i = 0; i < 2; i++) runs.push(await runCase(c, { seed: 5, world, artifactsDir: null, log }));
  for (const r of runs) assert.ok(r.ok, r.error?.message);
  assert.match(ends[0], /^complete-or-fail: source failed, target (failed|exited)$/);
  assert.equal(ends[1], ends[0]);
  assert.equal(runs[0].trace, runs[1].trace);
  // Without the fault the same case completes: the reset is what made it fail.
  const clean = await runCase(c, { seed: 5, world: createSimWorld(), artifactsDir: null });
  assert.ok(clean.ok, clean.error?.message);
  assert.notEqual(clean.trace, runs[0].trace);
});
