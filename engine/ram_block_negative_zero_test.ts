/**
 * Bug (caught before it landed): a faster zero-page test compared 64-bit float words with 0, and -0.0
 * equals 0, so a page whose only non-zero byte made a word read as -0.0 was sent as a ZERO record and
 * the destination lost that byte.
 */
import assert from "node:assert/strict";
import { isZeroPage } from "./ram_block.ts";

Deno.test("regression: a page holding the bytes of -0.0 is not a zero page", () => {
  for (let at = 0; at < 4096; at += 8) {
    const page = new Uint8Array(4096);
    new DataView(page.buffer).setFloat64(at, -0); // 0x80 00 00 00 00 00 00 00
    assert.equal(isZeroPage(page), false, `sign byte at ${at}`);
    new DataView(page.buffer).setFloat64(at, -0, true);
    assert.equal(isZeroPage(page), false, `sign byte at ${at + 7}`);
  }
});
