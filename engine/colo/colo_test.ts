/**
 * COLO in one process over in-memory links: checkpoints keep the secondary equal to the primary (and the
 * cache equal to the secondary's RAM), and failover works on either side.
 */
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { InProcessPair } from "../testing/in_process_test_util.ts";
import { until } from "../wait.ts";

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** A primary and a secondary in COLO (over multifd channels when asked), checkpointing every 30 ms. */
async function startColo(multifd: boolean): Promise<InProcessPair> {
  const p = new InProcessPair({
    names: ["primary", "secondary"],
    workload: { kind: "random", seed: 7, hotPages: 64, hotPercent: 80 },
    capabilities: ["x-colo", "events"],
  });
  for (const e of [p.src.engine, p.dst.engine]) {
    if (multifd) {
      e.options.setCapabilities([{ capability: "multifd", state: true }]);
      e.options.params["multifd-channels"] = 4;
    }
  }
  p.src.engine.options.params["x-checkpoint-delay"] = 30;
  await sleep(20);
  p.migrate({ returnPath: false });
  return p;
}

for (const multifd of [false, true]) {
  const kind = multifd ? "multifd" : "plain";
  Deno.test(`colo (${kind}): every applied checkpoint equals the primary; secondary failover takes over`, async () => {
    await using p = await startColo(multifd);
    const { src: s, dst: d } = p;
    await until("COLO", () => s.engine.migration.status === "colo" && d.engine.incoming.status === "colo");
    d.engine.breakpoints.arm("colo-applied", true);
    for (let n = 1; n <= 3; n++) {
      await until(`checkpoint ${n} applied`, () => d.engine.incoming.colo?.applied === n);
      // Paused after the apply: the primary is stopped until VMSTATE_LOADED, the secondary not resumed.
      const sm = s.engine.machine;
      const dm = d.engine.machine;
      const cache = d.engine.incoming.coloCache!;
      for (let i = 0; i < sm.blocks.length; i++) {
        assert.ok(
          same(sm.blocks[i].mem, dm.blocks[i].mem),
          `checkpoint ${n}: ${sm.blocks[i].idstr} differs`,
        );
        assert.ok(
          same(cache.blockMemory(dm.blocks[i]), dm.blocks[i].mem),
          `checkpoint ${n}: cache differs`,
        );
      }
      assert.deepEqual(dm.deviceState(), sm.deviceState(), `checkpoint ${n}: devices differ`);
      assert.equal(dm.runstate, "colo");
      d.engine.breakpoints.continue("colo-applied");
    }
    d.engine.breakpoints.disarm("colo-applied");
    d.engine.incoming.colo!.requestFailover();
    await until("secondary completed", () => d.engine.incoming.status === "completed");
    assert.ok(d.engine.machine.running, "the secondary runs after the takeover");
    assert.ok(
      d.events.some((e) =>
        e.event === "COLO_EXIT" && e.data?.mode === "secondary" && e.data?.reason === "request"
      ),
    );
    assert.ok(d.engine.incoming.coloCache!.released, "the cache is released after the takeover");
    // The primary lost its peer: an error exit, then its own failover.
    await until("primary COLO error", () => s.engine.migration.colo?.lastError !== null);
    s.engine.migration.colo!.requestFailover();
    await until("primary completed", () => s.engine.migration.status === "completed");
    assert.ok(s.engine.machine.running);
  });
}

Deno.test("colo: failover requested during the apply is deferred (relaunch) until the apply is done", async () => {
  await using p = await startColo(false);
  const d = p.dst;
  await until("COLO", () => d.engine.incoming.status === "colo");
  d.engine.breakpoints.arm("colo-apply-middle", false);
  await until("apply in progress", () => d.engine.incoming.colo?.loading === true);
  d.engine.incoming.colo!.requestFailover();
  assert.equal(d.engine.incoming.colo!.failover.status, "relaunch");
  d.engine.breakpoints.continue("colo-apply-middle");
  await until("secondary completed", () => d.engine.incoming.status === "completed");
  assert.equal(d.engine.incoming.colo!.applied, 1, "the checkpoint was applied completely");
  assert.ok(d.engine.machine.running);
});

Deno.test("colo: a checkpoint interrupted before the apply leaves guest RAM and devices untouched", async () => {
  await using p = await startColo(false);
  const { src: s, dst: d } = p;
  await until("COLO", () => d.engine.incoming.status === "colo");
  await until("first checkpoint", () => (d.engine.incoming.colo?.applied ?? 0) >= 1);
  d.engine.breakpoints.arm("colo-stopped", false);
  d.engine.breakpoints.arm("colo-device-buffer-received", false);
  // Paused at colo-stopped: the vCPU has parked, so RAM and devices are stable.
  await until("secondary paused after its stop", () => d.engine.breakpoints.isPaused("colo-stopped"));
  const before = d.engine.machine.blocks.map((b) => b.mem.slice());
  const devices = d.engine.machine.deviceState();
  d.engine.breakpoints.continue("colo-stopped");
  await until(
    "device buffer received",
    () =>
      d.events.some((e) => e.event === "X_TEST_BREAKPOINT" && e.data?.name === "colo-device-buffer-received"),
  );
  // The primary dies here: the secondary has the whole checkpoint in its cache but has not applied it.
  s.engine.migration.yank();
  d.engine.breakpoints.continue("colo-device-buffer-received");
  await until("secondary error", () => d.engine.incoming.colo?.lastError !== null);
  // Stopped mid-checkpoint and waiting for management: RAM and devices are as at the stop.
  assert.equal(d.engine.machine.runstate, "colo");
  d.engine.machine.blocks.forEach((b, i) => assert.ok(same(before[i], b.mem), `${b.idstr} changed`));
  assert.deepEqual(d.engine.machine.deviceState(), devices);
  assert.ok(d.events.some((e) => e.event === "COLO_EXIT" && e.data?.reason === "error"));
  d.engine.incoming.colo!.requestFailover();
  await until("secondary completed", () => d.engine.incoming.status === "completed");
  assert.ok(d.engine.machine.running);
});
