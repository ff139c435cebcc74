import assert from "node:assert/strict";
import { describePageDifference } from "./ram_equal.ts";

Deno.test("ram_equal: a one-byte difference is located exactly", () => {
  const a = new Uint8Array(4096);
  const b = a.slice();
  b[0x123] = 0x5a;
  const s = describePageDifference("pc.ram", 7, 4096, a, b, ["source", "target"]);
  assert.match(
    s,
    /block pc\.ram page 7 \(block offset 0x7000\): 1 byte\(s\) differ, first at page offset 0x123/,
  );
  assert.match(s, /target @\+0x120: 00 00 00 5a/);
});
