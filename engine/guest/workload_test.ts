import assert from "node:assert/strict";
import fc from "fast-check";
import { checkGuestsRam } from "./guests_ram.ts";
import {
  CPU_INDEX,
  CPU_PASS,
  CPU_PHASE,
  CPU_WORDS,
  DEV_RING_CONS,
  DEV_RING_PROD,
  DEV_TIMER_HI,
  DEV_TIMER_LO,
  DEV_WORDS,
  RING_SIZE,
} from "./regs.ts";
import {
  AB_END,
  AB_PAGE,
  AB_START,
  createWorkload,
  type GuestMemory,
  seedRandomRegisters,
  type WorkloadSpec,
} from "./workload.ts";

const FIRST = AB_START / AB_PAGE; // 256
const END = AB_END / AB_PAGE; // 25600
const RANGE = END - FIRST;

interface TestGuest extends GuestMemory {
  out: string[];
}

function guest(blockPages: number[]): TestGuest {
  const out: string[] = [];
  return {
    out,
    blocks: blockPages.map((pages) => ({
      mem: new Uint8Array(new SharedArrayBuffer(pages * AB_PAGE)),
      dirtyLog: new Int32Array(new SharedArrayBuffer(Math.ceil(pages / 32) * 4)),
      pages,
    })),
    cpu: new Int32Array(new SharedArrayBuffer(CPU_WORDS * 4)),
    dev: new Int32Array(new SharedArrayBuffer(DEV_WORDS * 4)),
    serial: (ch) => out.push(ch),
  };
}

/** One 100 MiB a-b guest shared by the tests (allocating it per run would dominate the time). */
const ab = guest([END + 16]);

function resetAb(): void {
  const b = ab.blocks[0];
  // The workload only writes first bytes (the tests also poke byte 1 of the first page).
  for (let p = 0; p < b.pages; p++) b.mem[p * AB_PAGE] = 0;
  b.mem[FIRST * AB_PAGE + 1] = 0;
  b.dirtyLog.fill(0);
  ab.cpu.fill(0);
  ab.dev.fill(0);
  ab.out.length = 0;
}

function firstBytes(g: GuestMemory): Uint8Array {
  const mem = g.blocks[0].mem;
  const out = new Uint8Array(RANGE);
  for (let k = 0; k < RANGE; k++) out[k] = mem[(FIRST + k) * AB_PAGE];
  return out;
}

function dirtyPages(log: Int32Array): number[] {
  const out: number[] = [];
  for (let w = 0; w < log.length; w++) {
    for (let v = log[w]; v !== 0; v &= v - 1) out.push(w * 32 + 31 - Math.clz32(v & -v));
  }
  return out;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

Deno.test("workload a-b: needs 100 MiB of pc.ram", () => {
  assert.throws(() => createWorkload({ kind: "a-b" }, guest([1024])), /a-b needs at least 104857600 bytes/);
});

Deno.test("workload a-b: zeroes, then increments first bytes of [1 MiB, 100 MiB) in order", () => {
  resetAb();
  const mem = ab.blocks[0].mem;
  const log = ab.blocks[0].dirtyLog;
  // Boot state is not zero: the zeroing pass has to clear it; pages outside the range stay put.
  for (let p = FIRST - 1; p <= END; p++) mem[p * AB_PAGE] = 0x77;
  mem[FIRST * AB_PAGE + 1] = 0x66;
  const w = createWorkload({ kind: "a-b" }, ab);

  w.step(100);
  assert.deepEqual(ab.out, ["A"]);
  assert.equal(ab.cpu[CPU_PHASE], 1);
  assert.equal(ab.cpu[CPU_INDEX], FIRST + 100);
  assert.deepEqual(dirtyPages(log), range(FIRST, FIRST + 100));
  assert.equal(mem[(FIRST + 99) * AB_PAGE], 0);
  assert.equal(mem[(FIRST + 100) * AB_PAGE], 0x77);

  log.fill(0);
  w.step(RANGE - 100 + 10);
  assert.equal(ab.cpu[CPU_PHASE], 2);
  assert.equal(ab.cpu[CPU_INDEX], FIRST + 10);
  // The rest of the zeroing pass, then the first 10 pages of the first increment pass.
  assert.deepEqual(dirtyPages(log), [...range(FIRST, FIRST + 10), ...range(FIRST + 100, END)]);
  const fb = firstBytes(ab);
  assert.deepEqual(Array.from(fb.subarray(0, 10)), new Array(10).fill(1));
  assert.ok(fb.subarray(10).every((v) => v === 0));
  assert.equal(mem[(FIRST - 1) * AB_PAGE], 0x77);
  assert.equal(mem[END * AB_PAGE], 0x77);
  // Only first bytes are written.
  assert.equal(mem[FIRST * AB_PAGE + 1], 0x66);
  assert.deepEqual(ab.out, ["A"]);
  // The timer ticks once per step.
  assert.equal(ab.dev[DEV_TIMER_LO], 2);
});

Deno.test("workload a-b: A once, then B every 64 passes", () => {
  resetAb();
  const w = createWorkload({ kind: "a-b" }, ab);
  w.step(RANGE); // zeroing pass
  assert.deepEqual(ab.out, ["A"]);
  w.step(63 * RANGE);
  assert.equal(ab.cpu[CPU_PASS], 63);
  assert.deepEqual(ab.out, ["A"]);
  w.step(RANGE - 1);
  assert.deepEqual(ab.out, ["A"]);
  w.step(1);
  assert.equal(ab.cpu[CPU_PASS], 64);
  assert.deepEqual(ab.out, ["A", "B"]);
  w.step(64 * RANGE + 5);
  assert.deepEqual(ab.out, ["A", "B", "B"]);
  assert.equal(ab.cpu[CPU_PASS], 128);
  assert.equal(ab.cpu[CPU_INDEX], FIRST + 5);
  // 64 increments per page per 64 passes: 129 increments wrap to 129 mod 256 on the first 5 pages.
  const fb = firstBytes(ab);
  assert.equal(fb[0], 129);
  assert.equal(fb[5], 128);
});

Deno.test("workload a-b: upstream's check holds after any number of steps; every write is logged (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 3 * RANGE })), {
        minLength: 1,
        maxLength: 8,
      }),
      (budgets) => {
        resetAb();
        const w = createWorkload({ kind: "a-b" }, ab);
        const log = ab.blocks[0].dirtyLog;
        let written = 0;
        for (const budget of budgets) {
          const before = firstBytes(ab);
          log.fill(0);
          w.step(budget);
          written += budget;
          const after = firstBytes(ab);
          const report = checkGuestsRam(after, AB_START);
          assert.equal(report.bad, 0, report.lines.join("\n"));
          // Each page changed in this step has its dirty bit; no bits outside the range.
          const dirty = new Set(dirtyPages(log));
          for (let k = 0; k < RANGE; k++) {
            if (before[k] !== after[k]) assert.ok(dirty.has(FIRST + k), `page ${FIRST + k} not logged`);
          }
          assert.ok([...dirty].every((p) => p >= FIRST && p < END));
          // A budget of at least the range dirties the whole range.
          assert.equal(dirty.size, Math.min(budget, RANGE));
        }
        // The program counter agrees with the total work done.
        const phase2 = written - RANGE;
        if (phase2 < 0) assert.equal(ab.cpu[CPU_INDEX], FIRST + written);
        else {
          assert.equal(ab.cpu[CPU_PHASE], 2);
          assert.equal(ab.cpu[CPU_INDEX], FIRST + (phase2 % RANGE));
          assert.equal(ab.cpu[CPU_PASS], Math.floor(phase2 / RANGE));
        }
      },
    ),
    { seed: 64, numRuns: 25 },
  );
});

const RANDOM_BLOCKS = [300, 200];

function randomGuest(spec: Extract<WorkloadSpec, { kind: "random" }>) {
  const g = guest(RANDOM_BLOCKS);
  seedRandomRegisters(g.cpu, spec.seed);
  return { g, w: createWorkload(spec, g) };
}

Deno.test("workload random: same seed, same writes; another seed, other writes", () => {
  const spec = { kind: "random", seed: 7 } as const;
  const a = randomGuest(spec);
  const b = randomGuest(spec);
  const c = randomGuest({ ...spec, seed: 8 });
  for (const budget of [1, 50, 999, 3]) {
    a.w.step(budget);
    b.w.step(budget);
    c.w.step(budget);
  }
  for (let i = 0; i < RANDOM_BLOCKS.length; i++) {
    assert.deepEqual(a.g.blocks[i].mem, b.g.blocks[i].mem);
    assert.deepEqual(a.g.blocks[i].dirtyLog, b.g.blocks[i].dirtyLog);
  }
  assert.deepEqual(a.g.cpu, b.g.cpu);
  assert.deepEqual(a.g.dev, b.g.dev);
  assert.notDeepEqual(a.g.blocks[0].mem, c.g.blocks[0].mem);
  // Seed 0 is usable (xorshift state must not be all zero).
  const z = randomGuest({ ...spec, seed: 0 });
  z.w.step(10);
  assert.ok(z.g.blocks.some((blk) => blk.mem.some((v) => v !== 0)));
});

Deno.test("workload random: writes land in the hot set at about hotPercent, one logged page per write", () => {
  const hotPages = 50;
  const { g, w } = randomGuest({ kind: "random", seed: 1234, hotPages, hotPercent: 80 });
  const total = RANDOM_BLOCKS[0] + RANDOM_BLOCKS[1];
  const n = 5000;
  let hot = 0;
  let second = 0;
  for (let i = 0; i < n; i++) {
    for (const b of g.blocks) b.dirtyLog.fill(0);
    w.step(1);
    const pages = g.blocks.flatMap((b, bi) => dirtyPages(b.dirtyLog).map((p) => [bi, p] as const));
    assert.equal(pages.length, 1);
    const [bi, p] = pages[0];
    if (bi === 0 && p < hotPages) hot++;
    if (bi === 1) second++;
  }
  // Expected: 80 % hot plus the cold writes that fall in the hot pages by chance.
  const expected = 0.8 + 0.2 * hotPages / total;
  assert.ok(Math.abs(hot / n - expected) < 0.03, `hot fraction ${hot / n}, expected ~${expected}`);
  assert.ok(Math.abs(second / n - 0.2 * 200 / total) < 0.02, `second-block fraction ${second / n}`);
  assert.equal(g.cpu[CPU_PASS], n);
});

Deno.test("workload random: queue indices stay within 0 <= prod - cons <= RING_SIZE (property)", () => {
  fc.assert(
    fc.property(fc.nat(), fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 20 }), (seed, budgets) => {
      const { g, w } = randomGuest({ kind: "random", seed });
      // Start near the int32 wrap, where a plain subtraction would go wrong.
      g.dev[DEV_RING_PROD] = 0x7fffffff - 10;
      g.dev[DEV_RING_CONS] = 0x7fffffff - 10;
      let steps = 0;
      for (const budget of budgets) {
        w.step(budget);
        steps++;
        const used = (g.dev[DEV_RING_PROD] - g.dev[DEV_RING_CONS]) | 0;
        assert.ok(used >= 0 && used <= RING_SIZE, `prod - cons = ${used}`);
      }
      const produced = budgets.reduce((s, b) => s + b, 0);
      assert.equal((g.dev[DEV_RING_PROD] - (0x7fffffff - 10)) | 0, produced | 0);
      assert.equal(g.dev[DEV_TIMER_LO], steps);
      // Every page whose content changed is in the dirty log.
      g.blocks.forEach((b) => {
        const dirty = new Set(dirtyPages(b.dirtyLog));
        const words = new Uint32Array(b.mem.buffer);
        for (let i = 0; i < words.length; i++) {
          if (words[i] !== 0) assert.ok(dirty.has(i >>> 10), `page ${i >>> 10} written but not logged`);
        }
      });
    }),
    { seed: 4711, numRuns: 40 },
  );
});

Deno.test("workload idle: only the timer advances, carrying into the high word", () => {
  const g = guest([4]);
  g.dev[DEV_TIMER_LO] = -1;
  const w = createWorkload({ kind: "idle" }, g);
  w.step(1000);
  w.step(1000);
  assert.equal(g.dev[DEV_TIMER_LO], 1);
  assert.equal(g.dev[DEV_TIMER_HI], 1);
  assert.ok(g.blocks[0].mem.every((v) => v === 0));
  assert.deepEqual(Array.from(g.cpu), new Array(CPU_WORDS).fill(0));
  assert.deepEqual(g.out, []);
});

function zeroChurnGuest(spec: Extract<WorkloadSpec, { kind: "zero-churn" }>) {
  const g = guest([64, 16]);
  seedRandomRegisters(g.cpu, spec.seed);
  return { g, w: createWorkload(spec, g) };
}

/** The page's content as one of: zero, its restored content (a fill and a version word), other data. */
function zeroChurnState(mem: Uint8Array, page: number): "zero" | "restored" | "data" {
  const p = mem.subarray(page * AB_PAGE, (page + 1) * AB_PAGE);
  if (p.every((v) => v === 0)) return "zero";
  const fill = (page * 0x9d + 0x35) & 0xff | 1;
  const at = (page * 37 & 1023) * 4;
  const version = new DataView(p.buffer, p.byteOffset).getUint32(at);
  const rest = p.every((v, i) => (i >= at && i < at + 4) || v === fill);
  return rest && (version === 1 || version === 2) ? "restored" : "data";
}

Deno.test("workload zero-churn restore: pages turn zero and back to the content they held before", () => {
  const { g, w } = zeroChurnGuest({ kind: "zero-churn", seed: 3, pages: 8, restore: true });
  const seen = new Set<string>();
  const restored: string[][] = Array.from({ length: 8 }, () => []);
  for (let i = 0; i < 400; i++) {
    w.step(16);
    for (let p = 0; p < 8; p++) {
      const s = zeroChurnState(g.blocks[0].mem, p);
      seen.add(s);
      if (s === "restored") restored[p].push(g.blocks[0].mem.slice(p * AB_PAGE, (p + 1) * AB_PAGE).join());
    }
  }
  assert.deepEqual([...seen].sort(), ["data", "restored", "zero"]);
  // A page comes back to the very bytes it held before (two versions of its content).
  assert.ok(restored.some((xs) => new Set(xs).size <= 2 && xs.length > 2));
  assert.ok(g.blocks[0].mem.subarray(8 * AB_PAGE).every((v) => v === 0), "writes stay in the first 8 pages");
});

Deno.test("workload touch: zero-churn writes its own pages only, random any page; each write is logged", () => {
  const z = zeroChurnGuest({ kind: "zero-churn", seed: 5, pages: 8, restore: true });
  z.w.touch!(1, 3);
  z.w.touch!(0, 20);
  assert.deepEqual(dirtyPages(z.g.blocks[1].dirtyLog), []);
  assert.deepEqual(dirtyPages(z.g.blocks[0].dirtyLog), []);
  for (let i = 0; i < 8; i++) z.w.touch!(0, 6);
  assert.deepEqual(dirtyPages(z.g.blocks[0].dirtyLog), [6]);
  const r = randomGuest({ kind: "random", seed: 5, hotPages: 4 });
  r.w.touch!(1, 150);
  assert.deepEqual(dirtyPages(r.g.blocks[1].dirtyLog), [150]);
  assert.ok(r.g.blocks[1].mem.subarray(150 * AB_PAGE, 151 * AB_PAGE).some((v) => v !== 0));
  assert.equal(createWorkload({ kind: "a-b" }, ab).touch, undefined, "a-b's pattern is an invariant");
});
