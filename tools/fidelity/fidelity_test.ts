import assert from "node:assert/strict";
import { main, recording } from "./fidelity.ts";
import type { World } from "../../harness/world/world.ts";

const SYSTEM_QEMU = "/usr/bin/qemu-system-x86_64";
const hasQemu = await Deno.stat(SYSTEM_QEMU).then(() => true, () => false);

Deno.test({
  name: "fidelity: two cases against the system QEMU, a row each and the counts",
  ignore: !hasQemu || Deno.permissions.querySync({ name: "run" }).state !== "granted",
  async fn() {
    const lines: string[] = [];
    const status = await main([
      "--filter",
      "/migration/precopy/unix/pause-before-switchover",
      "--filter",
      "/migration/bad_dest",
    ], (l) => lines.push(l));
    const text = lines.join("\n");
    assert.match(text, /\/migration\/precopy\/unix\/pause-before-switchover +agree/);
    assert.match(text, /\/migration\/bad_dest +(agree|known)/);
    assert.match(text, /: 2 cases run in both worlds: \d+ agree, \d+ known, 0 disagree/);
    assert.equal(status, 0, text);
  },
});

Deno.test("fidelity: the recording world is the world's own but for the transcript (wire faults, QEMU's sides)", () => {
  const world: World = {
    name: "qemu",
    wireFaults: true,
    qemuSides: { src: true, dst: true },
    cannotRun: () => null,
    spawn: () => Promise.reject(new Error("not here")),
  };
  const rec = recording(world).world;
  assert.equal(rec.wireFaults, true);
  assert.deepEqual(rec.qemuSides, { src: true, dst: true });
});
