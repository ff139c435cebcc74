import assert from "node:assert/strict";
import { pageDigests } from "../../engine/testing/ram_digest.ts";
import { compareRam, describePageDifference, type DigestReply, type RamSource } from "./ram_equal.ts";

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

/** A RAM source over an in-memory image, digested with the engine's page digest. */
function imageSource(name: string, mem: Uint8Array, pages = true): RamSource {
  const digests = (): Promise<DigestReply> =>
    Promise.resolve({
      "page-size": 4096,
      blocks: [{ idstr: "pc.ram", pages: mem.length / 4096, digests: pageDigests(mem, 4096).toBase64() }],
    });
  return pages
    ? { name, digests, readPage: (_id, offset, size) => Promise.resolve(mem.slice(offset, offset + size)) }
    : { name, digests };
}

Deno.test("compareRam: equal images match; a changed page is named with its bytes", async () => {
  const a = new Uint8Array(16 * 4096);
  const b = a.slice();
  assert.equal((await compareRam(imageSource("src", a), imageSource("dst", b))).mismatches, 0);
  b[5 * 4096 + 9] = 1;
  const r = await compareRam(imageSource("src", a), imageSource("dst", b));
  assert.equal(r.mismatches, 1);
  assert.match(r.lines[0], /block pc\.ram page 5 \(block offset 0x5000\): 1 byte\(s\) differ/);
});

Deno.test("compareRam: against a digest-only snapshot, a changed page is named without bytes", async () => {
  const a = new Uint8Array(16 * 4096);
  const b = a.slice();
  b[3 * 4096] = 7;
  const r = await compareRam(imageSource("snapshot", a, false), imageSource("now", b));
  assert.equal(r.mismatches, 1);
  assert.equal(
    r.lines[0],
    "block pc.ram page 3 (block offset 0x3000) differs (only digests were kept of snapshot)",
  );
});
