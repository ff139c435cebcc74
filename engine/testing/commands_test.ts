/**
 * The x-test- commands: their range checks, x-test-inject-fault's argument errors and what it arms,
 * and their table kept apart from the model's.
 */
import assert from "node:assert/strict";
import type { Engine } from "../engine.ts";
import { engineCommands } from "../qmp/commands.ts";
import { memoryLinkPair } from "../transport/link.ts";
import { testCommands } from "./commands.ts";
import { qmpError, withQmpEngine } from "./qmp_fixture_test_util.ts";

Deno.test("x-test commands: only x-test- names, served beside the model's as main.ts does", async () => {
  const both = (e: Engine) => [...engineCommands(e), ...testCommands(e)];
  await withQmpEngine(undefined, both, async (qmp, engine) => {
    const names = testCommands(engine).map((c) => c.name);
    assert.deepEqual(names.filter((n) => !n.startsWith("x-test-")), []);
    const model = new Set(engineCommands(engine).map((c) => c.name));
    assert.deepEqual(names.filter((n) => model.has(n)), [], "a name in both tables would replace one");
    assert.equal(new Set(names).size, names.length, "no name twice");
    assert.deepEqual(await qmp.execute("x-test-device-state"), { devices: engine.machine.deviceState() });
    assert.deepEqual(await qmp.execute("query-migrate"), {});
  });
});

Deno.test("x-test commands: range checks and RAM round trips", async (t) => {
  await withQmpEngine(undefined, testCommands, async (qmp, engine) => {
    await t.step("reads outside a block, unknown blocks", async () => {
      assert.match(
        await qmpError(qmp, "x-test-ram-read", { block: "pc.ram", offset: 1 << 30, size: 16 }),
        /outside block 'pc.ram'/,
      );
      assert.match(await qmpError(qmp, "x-test-ram-digest", { block: "nope" }), /RAM block 'nope' not found/);
      assert.match(
        await qmpError(qmp, "x-test-ram-write", { block: "vga.vram", offset: 64 << 10, data: "AA==" }),
        /write of 1 bytes at 65536 is outside block 'vga.vram'/,
      );
      assert.match(await qmpError(qmp, "x-test-ram-fill", { seed: 1, "entropy-bits": 9 }), /between 1 and 8/);
      assert.match(await qmpError(qmp, "x-test-colo-cache-digest"), /there is no COLO cache/);
      assert.match(
        await qmpError(qmp, "x-test-colo-cache-read", { block: "pc.ram", offset: 0, size: 1 }),
        /there is no COLO cache/,
      );
    });
    await t.step("a write is read back and marks its pages dirty", async () => {
      const b = engine.machine.block("pc.ram")!;
      b.clearDirtyLog();
      const data = new Uint8Array([1, 2, 3, 4, 5, 6]);
      // Straddles the boundary of pages 1 and 2.
      const offset = 2 * b.pageSize - 3;
      await qmp.execute("x-test-ram-write", { block: "pc.ram", offset, data: data.toBase64() });
      const r = await qmp.execute<{ data: string }>("x-test-ram-read", { block: "pc.ram", offset, size: 6 });
      assert.deepEqual(Uint8Array.fromBase64(r.data), data);
      assert.equal(Atomics.load(b.dirtyLog, 0), 0b110, "pages 1 and 2, and only they, are dirty");
      const bytes = await qmp.execute<{ data: string }>("x-test-page-bytes", {
        block: "pc.ram",
        start: 2 * b.pageSize,
        end: 4 * b.pageSize,
      });
      assert.deepEqual(Uint8Array.fromBase64(bytes.data), new Uint8Array([4, 0]));
    });
  });
});

Deno.test("x-test-inject-fault: QEMU-style errors, and a valid fault is armed", async (t) => {
  await withQmpEngine(undefined, testCommands, async (qmp, engine) => {
    await t.step("bad arguments", async () => {
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "frob" }),
        "GenericError: Parameter 'kind' does not accept value 'frob'",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", {}),
        "GenericError: Parameter 'kind' is missing",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "corrupt", xor: 1 }),
        "GenericError: fault 'corrupt' needs 'offset'",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "multifd-channel-delay", channel: 0 }),
        "GenericError: fault 'multifd-channel-delay' needs 'channel' and 'delay-ms'",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "bad-footer", channel: 1 }),
        "GenericError: Parameter 'channel' is unexpected",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "corrupt", offset: 3, xor: 256 }),
        "GenericError: Parameter 'xor' expects a value between 1 and 255",
      );
      assert.equal(
        await qmpError(qmp, "x-test-inject-fault", { kind: "truncate", offset: "3" }),
        "GenericError: Invalid parameter type for 'offset', expected: integer",
      );
      assert.deepEqual(engine.faults.outgoing().output(), {}, "nothing armed by a refused fault");
    });
    await t.step("armed", async () => {
      await qmp.execute("x-test-inject-fault", { kind: "corrupt", offset: 5 });
      assert.deepEqual(engine.faults.outgoing().output(), { corruptAt: 5, xor: 0xff });
      await qmp.execute("x-test-inject-fault", { kind: "multifd-channel-delay", channel: 2, "delay-ms": 7 });
      assert.deepEqual([...engine.faults.incoming().multifdChannelDelays()], [[2, { ms: 7, every: false }]]);
    });
  });
});

Deno.test("x-test-capture: a file the engine cannot write is refused; a good one is armed, then stopped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest-capture-cmd-" });
  try {
    await withQmpEngine(undefined, testCommands, async (qmp, engine) => {
      const [a, b] = memoryLinkPair(16);
      assert.match(
        await qmpError(qmp, "x-test-capture", { file: `${dir}/missing/main-stream.mig` }),
        /^GenericError: cannot capture into '.*\/missing\/main-stream.mig': /,
      );
      assert.equal(engine.faults.outgoing().mainChannel(a), a, "nothing armed by a refused capture");
      await qmp.execute("x-test-capture", { file: `${dir}/main-stream.mig` });
      assert.deepEqual(
        await Deno.readFile(`${dir}/main-stream.mig`),
        new Uint8Array(),
        "an empty file at once",
      );
      assert.notEqual(engine.faults.outgoing().mainChannel(a), a, "armed: the main channel is teed");
      await qmp.execute("x-test-capture");
      assert.equal(engine.faults.outgoing().mainChannel(a), a, "stopped");
      a.close();
      b.close();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("x-test commands: x-test-release names what the release lacks, once, before migrating", async () => {
  await withQmpEngine(undefined, testCommands, async (qmp, engine) => {
    assert.match(await qmpError(qmp, "x-test-release", { name: "v0" }), /Parameter 'name' does not accept/);
    assert.deepEqual(await qmp.execute("x-test-release", { name: "before-serial-tx" }), {
      lacks: [
        { device: "serial/0", field: "txCount", since: "subsection serial/tx" },
        { device: "serial/0", field: "lastTx", since: "subsection serial/tx" },
      ],
    });
    assert.deepEqual(engine.machine.device("serial", 0)?.vmsd.subsections, []);
    assert.match(
      await qmpError(qmp, "x-test-release", { name: "serial-v1" }),
      /a release is applied once, before the side migrates/,
    );
  });
});
