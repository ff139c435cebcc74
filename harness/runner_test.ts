/**
 * The runner's artifacts, between real engine processes: a captured main-channel stream parses with
 * the analyzer and carries the source's device state; `keep` keeps a passing case's folder (with the
 * final status of both sides); a failed case's failure.txt ends with the last QMP messages; a world
 * that cannot capture says why and the case still runs; with keep and capture off nothing stays.
 */
import assert from "node:assert/strict";
import { COLO_CASES } from "../cases/colo.ts";
import { MISC_CASES } from "../cases/misc.ts";
import { PRECOPY_CASES } from "../cases/precopy.ts";
import { analyzeStream } from "../tools/analyze/stream.ts";
import type { MigrationCase } from "./families/mod.ts";
import type { PrecopyCase } from "./families/precopy/case.ts";
import { analyzerDeviceDiffs } from "./families/analyze/flow.ts";
import { runFlow, startPair } from "./families/mod.ts";
import { caseSlug, FAILURE_TRANSCRIPT_TAIL, MAIN_STREAM_FILE, runCase, type RunOptions } from "./runner.ts";
import { engineWorld } from "./world/engine.ts";
import { isUnavailable, type Side, type World } from "./world/world.ts";

function caseNamed<C extends MigrationCase>(table: readonly C[], name: string): C {
  const c = table.find((x) => x.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

function precopy(c: MigrationCase): PrecopyCase {
  assert.ok(c.flow === "precopy", `${c.name} is not a precopy case`);
  return c;
}

const PLAIN = precopy(caseNamed(PRECOPY_CASES, "/migration/precopy/unix/plain"));

/** A temp root for the pairs and one for the artifacts, both removed after `fn`. */
async function withDirs(fn: (root: string, art: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "migtest-root-" });
  const art = await Deno.makeTempDir({ prefix: "migtest-art-" });
  try {
    await fn(root, art);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(art, { recursive: true });
  }
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("capture: a real case's main-channel stream parses, and its devices equal the source's", async () => {
  await withDirs(async (root) => {
    const pair = await startPair(PLAIN, {
      seed: 1,
      world: engineWorld,
      tmpRoot: root,
      waitMs: 30_000,
      log: () => {},
    });
    try {
      const file = `${pair.dir}/${MAIN_STREAM_FILE}`;
      assert.equal(await pair.src.captureMainChannel(file), null);
      await runFlow(pair, PLAIN);
      const state = await pair.src.deviceState();
      assert.ok(!isUnavailable(state));
      const result = await analyzeStream(file);
      assert.ok(result.vmdesc, "the captured stream ends with its vmdesc");
      assert.ok((result.ram?.records ?? 0) > 0, "the captured stream carries RAM pages");
      assert.deepEqual(analyzerDeviceDiffs(state, result.devices), []);
      // The comparison can fail: one field of the source changed is found.
      const [key, fields] = Object.entries(state).find(([, f]) => Object.values(f).some(Number.isInteger))!;
      const field = Object.keys(fields).find((k) => Number.isInteger(fields[k]))!;
      const changed = { ...state, [key]: { ...fields, [field]: Number(fields[field]) + 1 } };
      assert.match(analyzerDeviceDiffs(changed, result.devices).join("\n"), new RegExp(`${key}\\.${field}`));
    } finally {
      await pair.close();
      await pair.removeDir();
    }
  });
});

Deno.test("keep + capture: a passing case keeps its folder with the stream and both sides' final status", async () => {
  await withDirs(async (root, art) => {
    const r = await runCase(PLAIN, { seed: 2, artifactsDir: art, tmpRoot: root, keep: true, capture: true });
    assert.ok(r.ok, r.error?.message);
    assert.equal(r.artifacts, `${art}/${caseSlug(PLAIN.name)}`);
    const got = names(r.artifacts!);
    for (
      const f of [MAIN_STREAM_FILE, "final-status.json", "qmp-transcript.txt", "source.log", "target.log"]
    ) {
      assert.ok(got.includes(f), `${f} missing from ${got.join(" ")}`);
    }
    assert.ok(!got.includes("failure.txt"), "a passing case has no failure.txt");
    const final = JSON.parse(await Deno.readTextFile(`${r.artifacts}/final-status.json`));
    assert.equal(final.source["query-migrate"].status, "completed");
    assert.equal(final.target["query-migrate"].status, "completed");
    assert.equal(final.source["query-colo-status"], undefined, "no COLO status outside COLO cases");
    const result = await analyzeStream(`${r.artifacts}/${MAIN_STREAM_FILE}`);
    assert.ok(result.vmdesc && Object.keys(result.devices).length > 0);
    assert.deepEqual(names(root), [], "the pair's directory is removed all the same");
  });
});

Deno.test("keep and capture off: a passing case leaves nothing behind (capture alone neither)", async () => {
  await withDirs(async (root, art) => {
    for (const opts of [{}, { capture: true }] satisfies Partial<RunOptions>[]) {
      const r = await runCase(PLAIN, { seed: 3, artifactsDir: art, tmpRoot: root, ...opts });
      assert.ok(r.ok, r.error?.message);
      assert.equal(r.artifacts, undefined);
      assert.deepEqual(names(art), [], `artifacts left by ${JSON.stringify(opts)}`);
      assert.deepEqual(names(root), [], `pair directory left by ${JSON.stringify(opts)}`);
    }
  });
});

Deno.test("a failed case: failure.txt ends with the last 40 QMP messages, the case's own", async () => {
  // One page byte corrupted in flight (as the canary does): the RAM check fails after many messages.
  const corrupt: MigrationCase = {
    ...PLAIN,
    srcParams: { "zero-page-detection": "none" },
    fault: { kind: "corrupt", offset: 120 + 40 * (8 + 4096) + 0x64, xor: 0x5a },
  };
  await withDirs(async (root, art) => {
    const r = await runCase(corrupt, { seed: 4, artifactsDir: art, tmpRoot: root });
    assert.ok(!r.ok, "the case with a corrupted page passed");
    const failure = await Deno.readTextFile(`${r.artifacts}/failure.txt`);
    const marker = `last ${FAILURE_TRANSCRIPT_TAIL} QMP messages (all in qmp-transcript.txt):\n`;
    assert.ok(failure.includes(marker), failure);
    const tail = failure.slice(failure.indexOf(marker) + marker.length).trimEnd().split("\n");
    assert.equal(tail.length, FAILURE_TRANSCRIPT_TAIL);
    for (const line of tail) assert.match(line, /^\S+Z (source|target) (->|<-|--) /);
    // The tail is the case's own last messages: the final-status queries come right after it.
    const transcript = await Deno.readTextFile(`${r.artifacts}/qmp-transcript.txt`);
    const at = transcript.indexOf(tail.join("\n"));
    assert.ok(at > 0, "the tail is not a run of the transcript, or the whole of it");
    const next = transcript.slice(at + tail.join("\n").length + 1).split("\n")[0];
    assert.match(next, /source -> \{"execute":"query-migrate"/);
    const final = JSON.parse(await Deno.readTextFile(`${r.artifacts}/final-status.json`));
    assert.equal(final.source["query-migrate"].status, "completed");
    assert.equal(final.target["query-migrate"].status, "completed");
  });
});

Deno.test("a failed case whose destination exited: final-status.json notes it", async () => {
  const exits = precopy(caseNamed(MISC_CASES, "/migration/validate_uuid_error"));
  // The destination refuses the stream and exits as expected, but with words the case does not expect.
  const wrong: MigrationCase = { ...exits, error: /words no destination says/ };
  await withDirs(async (root, art) => {
    const r = await runCase(wrong, { seed: 5, artifactsDir: art, tmpRoot: root });
    assert.ok(!r.ok, "the case with the wrong error text passed");
    const final = JSON.parse(await Deno.readTextFile(`${r.artifacts}/final-status.json`));
    assert.deepEqual(final.target, { exited: { code: 1, signal: null } });
    assert.equal(final.source["query-migrate"].status, "failed");
  });
});

Deno.test("final status of a COLO case has query-colo-status of both sides", async () => {
  const colo = caseNamed(COLO_CASES, "/migration/colo/plain/secondary_failover");
  await withDirs(async (root, art) => {
    const r = await runCase(colo, { seed: 5, artifactsDir: art, tmpRoot: root, keep: true });
    assert.ok(r.ok, r.error?.message);
    const final = JSON.parse(await Deno.readTextFile(`${r.artifacts}/final-status.json`));
    for (const side of ["source", "target"]) {
      assert.ok(final[side]["query-colo-status"]?.mode, `${side}: ${JSON.stringify(final[side])}`);
      assert.ok(final[side]["query-migrate"], side);
    }
  });
});

Deno.test("a world that cannot capture: the case runs, the log says why, no stream is kept", async () => {
  const reason = "this world has no stream capture";
  // The engine world with its sides' capture answered Unavailable, as the QEMU world answers it.
  const noCapture: World = {
    ...engineWorld,
    async spawn(spec) {
      const side = await engineWorld.spawn(spec);
      return new Proxy(side, {
        get(target, key) {
          if (key === "captureMainChannel") return () => Promise.resolve({ unavailable: reason });
          const v: unknown = Reflect.get(target, key, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      }) satisfies Side;
    },
  };
  await withDirs(async (root, art) => {
    const logs: string[] = [];
    const r = await runCase(PLAIN, {
      seed: 6,
      world: noCapture,
      artifactsDir: art,
      tmpRoot: root,
      keep: true,
      capture: true,
      log: (m) => logs.push(m),
    });
    assert.ok(r.ok, r.error?.message);
    assert.ok(logs.includes(`${PLAIN.name}: no stream capture: ${reason}`), logs.join("\n"));
    assert.ok(!names(r.artifacts!).includes(MAIN_STREAM_FILE));
  });
});

Deno.test("runner: a case over its time limit is stopped and fails saying so, leaving no directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "migtest-limit-" });
  try {
    const r = await runCase(
      {
        name: "/migration/test/over-limit",
        tier: "full",
        flow: "precopy",
        why: "a limit that must end it",
        live: true,
      },
      { seed: 1, artifactsDir: null, tmpRoot: root, timeoutMs: 400 },
    );
    assert.equal(r.ok, false);
    assert.match(r.error!.message, /failed \(seed=1\): case timed out after 400 ms/);
    assert.ok(r.timeMs < 10_000, `took ${r.timeMs} ms`);
    assert.deepEqual([...Deno.readDirSync(root)], []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
