import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import {
  describePanic,
  PARAMS_FILE_OFFSET,
  PARAMS_GPA,
  PARAMS_SIZE,
  programImage,
  type ProgramParams,
  programParams,
  programState,
  qemuRamBytes,
  WORKLOAD_IMAGE,
  WORKLOAD_IMAGE_SECTORS,
} from "./guest_program.ts";
import { qemuBinary, QemuProcess } from "./qemu_process.ts";
import { waitFor } from "../../engine/wait.ts";
import type { WorkloadSpec } from "../../engine/guest/workload.ts";

const MiB = 1 << 20;
const PAGE = 4096;

function params(spec: WorkloadSpec, ram = 150 * MiB): ProgramParams {
  const p = programParams(spec, ram);
  if ("none" in p) throw new Error(p.none);
  return p;
}

Deno.test("guest programs: the model's defaults, the region from 1 MiB to the end of RAM", () => {
  const r = params({ kind: "random", seed: 1 });
  assert.equal(r.base, MiB);
  assert.equal(r.pages, 149 * 256);
  assert.equal(r.hotPages, 256);
  assert.equal(r.hotPercent, 80);
  assert.notDeepEqual(r.rng, [0, 0, 0, 0]);
  assert.notDeepEqual(params({ kind: "random", seed: 2 }).rng, r.rng, "the seed moves the generator");
  assert.equal(params({ kind: "zero-churn", seed: 0 }).pages, 512);
  assert.equal(params({ kind: "zero-churn", seed: 0, restore: true }).restore, true);
  assert.equal(params({ kind: "versions", seed: 0, pages: 8192 }).pages, 8192);
  assert.equal(params({ kind: "idle" }).pages, 0);
  // The odd fixture: pc.ram 101 MiB + 12 KiB, which QEMU rounds up to 8 KiB.
  assert.equal(qemuRamBytes("pc-odd"), 101 * MiB + 16 * 1024);
  assert.equal(
    params({ kind: "random", seed: 0 }, qemuRamBytes("tiny")).pages,
    (qemuRamBytes("tiny") - MiB) / PAGE,
  );
});

Deno.test("guest programs: what no program can run is said", () => {
  const ab = programParams({ kind: "a-b" }, 150 * MiB);
  assert.ok("none" in ab && /own boot sector/.test(ab.none));
  const big = programParams({ kind: "versions", seed: 0, pages: 40_000 }, 150 * MiB);
  assert.ok("none" in big && /versions over 40000 pages/.test(big.none), JSON.stringify(big));
});

Deno.test("guest programs: the image carries its parameters where the program reads them", async () => {
  const image = await Deno.readFile(WORKLOAD_IMAGE);
  assert.equal(image.length, WORKLOAD_IMAGE_SECTORS * 512, "build it with: deno task bootsect");
  assert.equal(image[510], 0x55);
  assert.equal(image[511], 0xaa);
  const p = params({ kind: "zero-churn", seed: 7, pages: 300, restore: true });
  const out = programImage(image, p);
  const v = new DataView(out.buffer, PARAMS_FILE_OFFSET);
  assert.equal(v.getUint32(4, true), 4);
  assert.equal(v.getUint32(8, true), MiB);
  assert.equal(v.getUint32(12, true), 300);
  assert.equal(v.getUint32(24, true), 1);
  assert.equal(v.getUint32(32, true), p.rng[0]);
  assert.deepEqual(out.subarray(0, PARAMS_FILE_OFFSET), image.subarray(0, PARAMS_FILE_OFFSET));
  assert.throws(() => programImage(new Uint8Array(2048), p), /no parameter block at 0x200/);
});

Deno.test("guest programs: a panic's report names the page, the version seen and the journal's", () => {
  const block = new Uint8Array(PARAMS_SIZE);
  const v = new DataView(block.buffer);
  v.setUint32(28, 99, true);
  assert.deepEqual(programState(block), { heartbeat: 99 });
  v.setUint32(48, 1025, true);
  v.setUint32(52, 3, true);
  v.setUint32(56, 4, true);
  const state = programState(block);
  assert.deepEqual(state.panic, { page: 1025, seen: 3, wrote: 4 });
  assert.equal(
    describePanic(state.panic!, params({ kind: "versions", seed: 0, pages: 2048 })),
    "stale read: page 1025 (0x501000) holds version 3, but the guest's journal (0x901004) says it last " +
      "wrote version 4",
  );
});

Deno.test({
  name: "guest programs: the committed image is what nasm builds from the source",
  ignore: !hasNasm(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "migtest-nasm-" });
    try {
      const src = new URL("../../fixtures/guest/workload-bootblock.S", import.meta.url).pathname;
      const out = await new Deno.Command("nasm", { args: ["-f", "bin", "-o", `${dir}/w.img`, src] }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      assert.deepEqual(await Deno.readFile(`${dir}/w.img`), await Deno.readFile(WORKLOAD_IMAGE));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function hasNasm(): boolean {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const BINARY = qemuBinary("src");

/** Boots the program for `spec` under TCG, runs `body`, and always ends QEMU and removes the directory. */
async function withProgram(
  spec: WorkloadSpec,
  body: (q: QemuProcess, p: ProgramParams) => Promise<void>,
  ram = 150 * MiB,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-program-" });
  let q: QemuProcess | undefined;
  try {
    const p = params(spec, ram);
    q = await QemuProcess.spawn({
      name: "source",
      dir,
      binary: BINARY,
      transcript: [],
      timeoutMs: 20_000,
      accel: ["tcg"],
      memoryKiB: ram / 1024,
      program: programImage(await Deno.readFile(WORKLOAD_IMAGE), p),
    });
    await body(q, p);
  } finally {
    await q?.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

async function heartbeat(q: QemuProcess): Promise<number> {
  return programState(await q.qtest.read(PARAMS_GPA, PARAMS_SIZE)).heartbeat;
}

async function waitBeats(q: QemuProcess, n: number): Promise<void> {
  await waitFor(`${q.name}'s heartbeat past ${n}`, async () => (await heartbeat(q)) > n, {
    timeoutMs: 20_000,
    intervalMs: 20,
  });
}

/** Pages of [from, to) that are not all zero. */
async function nonZeroPages(q: QemuProcess, from: number, to: number): Promise<number> {
  const mem = await q.qtest.read(from, to - from);
  let n = 0;
  for (let at = 0; at < mem.length; at += PAGE) if (mem.subarray(at, at + PAGE).some((b) => b !== 0)) n++;
  return n;
}

Deno.test({
  name: "guest programs on QEMU: random writes its hot pages and beyond, zero-churn only its own",
  ignore: BINARY === undefined,
  async fn() {
    await withProgram({ kind: "random", seed: 3, hotPages: 16, hotPercent: 50 }, async (q) => {
      await waitBeats(q, 20_000);
      await q.qmp.execute("stop");
      assert.equal(await nonZeroPages(q, MiB, MiB + 16 * PAGE), 16, "every hot page written");
      // About 10,000 cold writes over 38,128 pages: a quarter of every stretch of RAM.
      assert.ok((await nonZeroPages(q, MiB + 16 * PAGE, 17 * MiB)) > 200, "cold pages written too");
      assert.equal(new TextDecoder().decode(await Deno.readFile(q.serialPath)).slice(0, 1), "A");
    });
    await withProgram({ kind: "zero-churn", seed: 3, pages: 64, restore: true }, async (q) => {
      await waitBeats(q, 5_000);
      await q.qmp.execute("stop");
      const inside = await nonZeroPages(q, MiB, MiB + 64 * PAGE);
      assert.ok(inside > 8 && inside < 64, `some of its pages hold data, some are zero (${inside} of 64)`);
      assert.equal(await nonZeroPages(q, MiB + 64 * PAGE, MiB + 256 * PAGE), 0, "nothing past its pages");
      // A restored page: its fill byte everywhere but at its version word.
      const mem = await q.qtest.read(MiB, 64 * PAGE);
      const restored = [...Array(64).keys()].filter((p) =>
        mem[p * PAGE + 1] === (((p * 0x9d + 0x35) & 0xff) | 1)
      );
      assert.ok(restored.length > 0, "some page holds its own content again");
    });
  },
});

Deno.test({
  name: "guest programs on QEMU: idle writes nothing; versions panics on a page it did not last write",
  ignore: BINARY === undefined,
  async fn() {
    await withProgram({ kind: "idle" }, async (q) => {
      await sleep(300);
      assert.equal(await heartbeat(q), 0);
      assert.equal(await nonZeroPages(q, MiB, 2 * MiB), 0);
    }, 16 * MiB);
    await withProgram({ kind: "versions", seed: 5, pages: 64 }, async (q, p) => {
      await waitBeats(q, 2_000);
      assert.equal(
        q.qmp.events.filter((e) => e.event === "GUEST_PANICKED").length,
        0,
        "no panic while intact",
      );
      // A stale page: its version word goes back by one, as a lost or stale copy would leave it.
      await q.qmp.execute("stop");
      const stale = 17;
      const at = p.base + stale * PAGE;
      const word = new DataView((await q.qtest.read(at, 4)).buffer).getUint32(0, true);
      const back = new Uint8Array(4);
      new DataView(back.buffer).setUint32(0, word - 1, true);
      await q.qtest.write(at, back);
      await q.qmp.execute("cont");
      await q.qmp.waitEvent("GUEST_PANICKED", undefined, { timeoutMs: 20_000 });
      const state = programState(await q.qtest.read(PARAMS_GPA, PARAMS_SIZE));
      assert.ok(state.panic, "the program recorded what it saw");
      assert.equal(
        describePanic(state.panic!, p),
        `stale read: page ${stale} (0x${at.toString(16)}) holds version ${word - 1}, but the guest's ` +
          `journal (0x${(p.base + 64 * PAGE + stale * 4).toString(16)}) says it last wrote version ${word}`,
      );
      const status = await q.qmp.execute<{ status: string }>("query-status");
      assert.equal(status.status, "guest-panicked");
      assert.match(new TextDecoder().decode(await Deno.readFile(q.serialPath)), /^A.*P$/s);
    });
  },
});
