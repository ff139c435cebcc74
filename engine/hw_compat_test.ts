import assert from "node:assert/strict";
import { multifdFlushAfterEachSection } from "./hw_compat.ts";

Deno.test("multifd-flush-after-each-section: on up to 8.0's machine types, off after and for the rest", () => {
  for (const t of ["pc-i440fx-7.2", "pc-q35-8.0", "pc-i440fx-2.12"]) {
    assert.equal(multifdFlushAfterEachSection(t), true, t);
  }
  for (const t of ["pc-i440fx-8.1", "pc-q35-10.0", "pc", "q35", "migtest-pc"]) {
    assert.equal(multifdFlushAfterEachSection(t), false, t);
  }
});
