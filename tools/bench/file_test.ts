import assert from "node:assert/strict";
import { ALL_CASES } from "../../cases/all.ts";
import { FILE_BENCH_CASES } from "./file.ts";

Deno.test("file bench: every case it times exists and is a file case", () => {
  for (const name of FILE_BENCH_CASES) {
    const c = ALL_CASES.find((x) => x.name === name);
    assert.equal(c?.flow, "file", name);
  }
});
