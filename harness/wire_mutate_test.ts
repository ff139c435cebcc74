import assert from "node:assert/strict";
import { describeMutation, type Edit, StreamMutator } from "./wire_mutate.ts";
import { COLO_MESSAGE } from "./wire_colo.ts";

/** The bytes 0..n-1 fed in parts of `sizes`, and what arrives. */
function feed(edits: Edit[], n: number, sizes: number[]): { out: number[]; m: StreamMutator } {
  const m = new StreamMutator({ connection: 0, direction: "forward", edits });
  const src = Uint8Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  let off = 0;
  for (const s of sizes) {
    out.push(...m.apply(src.subarray(off, off + s)));
    off += s;
    if (m.cut) break;
  }
  return { out, m };
}

Deno.test("edits land at their stream offsets whatever the delivery's chunks", () => {
  const edits: Edit[] = [
    { op: "xor", at: 2, mask: 0x80 },
    { op: "set", at: 4, bytes: [0xaa, 0xbb] },
    { op: "insert", at: 7, bytes: [0xee] },
    { op: "remove", at: 8, count: 2 },
  ];
  const want = [0, 1, 0x82, 3, 0xaa, 0xbb, 6, 0xee, 7, 10, 11];
  for (const sizes of [[12], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [5, 7], [3, 2, 4, 3]]) {
    const { out, m } = feed(edits, 12, sizes);
    assert.deepEqual(out, want, `chunks ${sizes}`);
    assert.deepEqual(m.applied, [2, 4, 5, 7, 8, 9]);
  }
});

Deno.test("a cut delivers the bytes before it, then asks for a reset", () => {
  const { out, m } = feed([{ op: "cut", at: 5 }], 10, [3, 4, 3]);
  assert.deepEqual(out, [0, 1, 2, 3, 4]);
  assert.equal(m.cut, true);
  assert.equal(m.apply(new Uint8Array([1, 2])).length, 0, "nothing after the cut");
});

Deno.test("no edits: bytes pass through untouched, and are kept when asked", () => {
  const m = new StreamMutator({ connection: 1, direction: "back", edits: [] }, { keep: true });
  const a = new Uint8Array([1, 2, 3]);
  assert.equal(m.apply(a), a);
  m.apply(new Uint8Array([4]));
  assert.deepEqual([...m.kept()], [1, 2, 3, 4]);
  assert.equal(m.position, 4);
});

Deno.test("offsets from a COLO checkpoint's place count from where the tracker finds it", () => {
  const m = new StreamMutator({
    connection: 0,
    direction: "forward",
    from: { place: "request-sent", checkpoint: 1 },
    edits: [{ op: "xor", at: 1, mask: 0xff }],
  });
  const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  // Precopy before the secondary's READY is not parsed: an edit cannot land there.
  assert.deepEqual([...m.apply(new Uint8Array([9, 9, 9]))], [9, 9, 9]);
  m.other(Uint8Array.from(be32(COLO_MESSAGE["checkpoint-ready"])));
  const request = be32(COLO_MESSAGE["checkpoint-request"]);
  const out = m.apply(Uint8Array.from([...request, 0x10, 0x20]));
  // The request's 4 bytes, then byte 1 after them flipped.
  assert.deepEqual([...out], [...request, 0x10, 0x20 ^ 0xff]);
  assert.deepEqual(m.applied, [3 + 4 + 1]);
  assert.match(
    describeMutation(m.mutation),
    /^connection 0 forward from request-sent of checkpoint 1: xor 0xff at 1$/,
  );
});
