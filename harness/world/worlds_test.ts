/** The worlds by name. */
import assert from "node:assert/strict";
import { worldByName } from "./worlds.ts";

Deno.test("worlds: by name; an unknown name is refused with the list", () => {
  for (const name of ["engine", "qemu", "sim", "engine-to-qemu", "qemu-to-engine"]) {
    assert.equal(worldByName(name).name, name);
  }
  assert.throws(
    () => worldByName("kvm"),
    /backend must be one of engine\|qemu\|sim\|engine-to-qemu\|qemu-to-engine, got 'kvm'/,
  );
});
