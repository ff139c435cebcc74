/** The worlds by name, the simulated world's empty slot, and what the QEMU world decides from QEMU itself. */
import assert from "node:assert/strict";
import { PRECOPY_CASES } from "../../cases/precopy.ts";
import { COLO_CASES } from "../../cases/colo.ts";
import { SIM_NOT_BUILT, simWorld } from "./sim.ts";
import { worldByName } from "./worlds.ts";

Deno.test("worlds: by name; an unknown name is refused with the list", () => {
  for (const name of ["engine", "qemu", "sim"]) assert.equal(worldByName(name).name, name);
  assert.throws(() => worldByName("kvm"), /backend must be one of engine\|qemu\|sim, got 'kvm'/);
});

Deno.test("worlds: the simulated world runs nothing yet and says so", async () => {
  for (const c of [...PRECOPY_CASES, ...COLO_CASES]) assert.equal(simWorld.cannotRun(c), SIM_NOT_BUILT);
  const spec = {
    name: "source",
    dir: "/nonexistent",
    machine: "pc",
    workload: { kind: "a-b" },
    socketPaths: [],
    transcript: [],
    timeoutMs: 1000,
  } as const;
  await assert.rejects(() => simWorld.spawn({ ...spec, socketPaths: [], transcript: [] }), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.equal(e.message, SIM_NOT_BUILT);
    return true;
  });
});
