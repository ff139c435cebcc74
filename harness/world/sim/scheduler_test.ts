/** The scheduler alone: seeded choices, virtual time, timers in order, the flow-wait rule, stalls. */
import assert from "node:assert/strict";
import { type SimActor, Simulation, splitmix32 } from "./scheduler.ts";
import { SimConnection } from "./link.ts";

Deno.test("scheduler: a seed gives the same draws and knobs; another seed others", () => {
  const draws = (seed: number) => {
    const s = new Simulation(seed);
    return [JSON.stringify(s.knobs), ...Array.from({ length: 8 }, () => s.int(0, 1000))];
  };
  assert.deepEqual(draws(7), draws(7));
  assert.notDeepEqual(draws(7), draws(8));
});

Deno.test("scheduler: timers fire in virtual time, in order, only while the flow waits on the simulation", async () => {
  const sim = new Simulation(1);
  sim.start();
  const fired: string[] = [];
  sim.engineClock.timer(() => fired.push("b@20"), 20);
  sim.engineClock.timer(() => fired.push("a@10"), 10);
  const cancel = sim.engineClock.timer(() => fired.push("never"), 15);
  cancel();
  // Nothing moves while the flow is not waiting on the simulation.
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(fired, []);
  assert.equal(sim.now, 0);
  await sim.flowClock.sleep(30);
  assert.deepEqual(fired, ["a@10", "b@20"]);
  assert.equal(sim.now, 30);
  await sim.close();
});

Deno.test("scheduler: a flow waiting on something nothing can give is told the simulation stalled", async () => {
  const sim = new Simulation(1);
  const stalls: string[] = [];
  const never = Promise.withResolvers<void>();
  sim.onStall((why) => {
    stalls.push(why);
    never.resolve();
  });
  sim.start();
  await sim.flowWait(never.promise);
  assert.match(stalls[0], /the simulation stalled: the flow waits, but no link has bytes to deliver/);
  assert.match(sim.stalled!, /stalled/);
  await sim.close();
});

Deno.test("links: bytes arrive in order, in seeded partial chunks, then end of stream after a close", async () => {
  const sim = new Simulation(3);
  sim.start();
  const c = new SimConnection(sim, "t", { capacity: 1 << 10 });
  const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
  // 5000 bytes through 1 KiB of room: the writer waits for the reader, as on a socket.
  const written = c.a.write(data).then(() => c.a.close());
  const got: number[] = [];
  const sizes: number[] = [];
  const buf = new Uint8Array(4096);
  while (true) {
    const n = await sim.flowWait(c.b.read(buf));
    if (n === null) break;
    sizes.push(n);
    got.push(...buf.subarray(0, n));
  }
  await written;
  assert.deepEqual(Uint8Array.from(got), data);
  assert.ok(sizes.length > 5 && sizes.some((n) => n < 1024), `chunks ${sizes}`);
  await assert.rejects(() => c.b.write(new Uint8Array(1)), /channel closed/);
  c.dispose();
  await sim.close();
});

Deno.test("scheduler: a slow actor (small weight) is chosen less often", async () => {
  const sim = new Simulation(5);
  const counts = { fast: 0, slow: 0 };
  const actor = (label: "fast" | "slow", weight: number): SimActor => ({
    label,
    weight,
    ready: () => counts.fast + counts.slow < 2000,
    step: () => (counts[label]++, 0.001),
  });
  sim.add(actor("fast", 1));
  sim.add(actor("slow", 0.02));
  sim.start();
  await sim.flowClock.sleep(100);
  assert.ok(counts.slow > 0 && counts.slow * 10 < counts.fast, JSON.stringify(counts));
  await sim.close();
});

Deno.test("scheduler: an interleave floor raises a drawn or given interleavePercent, never lowers it", () => {
  const drawn = new Simulation(1).knobs;
  assert.equal(drawn.interleavePercent, 0, "seed 1 draws no interleaving (the case the floor is for)");
  const floored = new Simulation(1, undefined, { interleavePercent: 50 }).knobs;
  assert.deepEqual(floored, { ...drawn, interleavePercent: 50 });
  assert.equal(
    new Simulation(1, { ...drawn, interleavePercent: 20 }, { interleavePercent: 5 }).knobs.interleavePercent,
    20,
  );
});

Deno.test("scheduler: an interleave point that names a page hands it to the guests", () => {
  const sim = new Simulation(1, undefined, { interleavePercent: 100 });
  const got: (number | undefined)[] = [];
  const leave = sim.addGuest((page) => got.push(page));
  sim.engineClock.interleave!("ram-page-cleared");
  sim.engineClock.interleave!("xbzrle-page-copied", 0x3000);
  leave();
  sim.engineClock.interleave!("xbzrle-page-copied", 0x4000);
  assert.deepEqual(got, [undefined, 0x3000]);
});

Deno.test("links with time: a link carries its bytes at its bandwidth, after its latency, beside the others", async () => {
  const base = new Simulation(5).knobs;
  const sim = new Simulation(5, { ...base, linkMBps: 125, linkLatencyMs: 1, maxChunk: 1 << 20 });
  sim.start();
  const links = [0, 1].map((i) => new SimConnection(sim, `m${i}`, { capacity: 4 << 20, timed: true }));
  const untimed = new SimConnection(sim, "q", { capacity: 4 << 20 });
  // 1.25 MB at 125 MB/s is 10 ms on the wire, then 1 ms of latency: on each link at once.
  const data = new Uint8Array(1_250_000);
  const arrived = async (c: SimConnection) => {
    const buf = new Uint8Array(1 << 20);
    let got = 0;
    let first = -1;
    while (got < data.length) {
      const n = await sim.flowWait(c.b.read(buf));
      if (n === null) break;
      if (first < 0) first = sim.now;
      got += n;
    }
    return { first, last: sim.now };
  };
  const t0 = sim.now;
  await Promise.all([...links, untimed].map((c) => c.a.write(data)));
  const [a, b, q] = await Promise.all([...links, untimed].map(arrived));
  for (const r of [a, b]) {
    assert.ok(r.first - t0 >= 1, `the first bytes came after the latency (${r.first - t0} ms)`);
    assert.ok(r.last - t0 >= 11 && r.last - t0 < 12, `the last bytes came at 11 ms, not ${r.last - t0}`);
  }
  assert.ok(q.last - t0 < 1, `a link without time is as fast as before (${q.last - t0} ms)`);
  for (const c of [...links, untimed]) c.dispose();
  await sim.close();
});

Deno.test("splitmix32: neighbouring seeds give unrelated link knobs", () => {
  const knobs = Array.from({ length: 64 }, (_, s) => new Simulation(s).knobs);
  assert.ok(
    new Set(knobs.map((k) => `${k.linkMBps}/${k.linkLatencyMs}`)).size === 6,
    "seeds 0..63 draw every pair",
  );
  assert.notEqual(splitmix32(0), splitmix32(1));
  assert.equal(splitmix32(1), splitmix32(1));
});
