import assert from "node:assert/strict";
import fc from "fast-check";
import { TARGET_PAGE_SIZE } from "./ram_block.ts";
import { uleb128DecodeSmall, uleb128EncodeSmall, xbzrleDecode, xbzrleEncode, XbzrleError } from "./xbzrle.ts";

/** A page of deterministic non-trivial bytes. */
function filledPage(seed: number, size = TARGET_PAGE_SIZE): Uint8Array {
  const p = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

/**
 * Byte-at-a-time reference encoder with exact runs and the same overflow accounting (two bytes must
 * remain before each header, nzrun data must fit). The word-at-a-time encoder must agree with it exactly.
 */
function referenceEncode(oldPage: Uint8Array, newPage: Uint8Array, dlen: number): number[] | -1 {
  const out: number[] = [];
  const uleb = (n: number) => n < 0x80 ? out.push(n) : out.push((n & 0x7f) | 0x80, n >> 7);
  let i = 0;
  while (i < newPage.length) {
    const z = i;
    while (i < newPage.length && oldPage[i] === newPage[i]) i++;
    if (i === newPage.length) break;
    if (out.length + 2 > dlen) return -1;
    uleb(i - z);
    const n = i;
    while (i < newPage.length && oldPage[i] !== newPage[i]) i++;
    if (out.length + 2 > dlen) return -1;
    uleb(i - n);
    if (out.length + (i - n) > dlen) return -1;
    for (let k = n; k < i; k++) out.push(newPage[k]);
  }
  return out;
}

function encodeToArray(oldPage: Uint8Array, newPage: Uint8Array, dlen = oldPage.length): number[] | -1 {
  const out = new Uint8Array(dlen);
  const n = xbzrleEncode(oldPage, newPage, out);
  return n < 0 ? -1 : [...out.subarray(0, n)];
}

Deno.test("xbzrle: the documented example encodes to exactly 24 bytes", () => {
  const oldPage = filledPage(7);
  const newPage = oldPage.slice();
  const changed = Array.from({ length: 15 }, (_, k) => 0x30 + k);
  for (let k = 0; k < 15; k++) {
    newPage[1001 + k] = oldPage[1001 + k] === changed[k] ? changed[k] ^ 0xff : changed[k];
  }
  // 1001 equal, 15 changed (1001..1015), 3 equal, 1 changed (1019), 1 equal, 1 changed (1021), rest equal.
  newPage[1019] = 0x67;
  newPage[1021] = 0x69;
  assert.notEqual(oldPage[1019], 0x67);
  assert.notEqual(oldPage[1021], 0x69);
  for (let k = 0; k < 15; k++) assert.notEqual(oldPage[1001 + k], newPage[1001 + k]);

  const expected = [0xe9, 0x07, 0x0f, ...newPage.subarray(1001, 1016), 0x03, 0x01, 0x67, 0x01, 0x01, 0x69];
  assert.equal(expected.length, 24);
  assert.deepEqual(encodeToArray(oldPage, newPage), expected);

  const dst = oldPage.slice();
  assert.equal(xbzrleDecode(Uint8Array.from(expected), dst), 1022);
  assert.deepEqual(dst, newPage);
});

Deno.test("xbzrle: identical pages encode to 0, a fully different page overflows", () => {
  const p = filledPage(1);
  const out = new Uint8Array(TARGET_PAGE_SIZE);
  assert.equal(xbzrleEncode(p, p.slice(), out), 0);
  assert.equal(xbzrleEncode(new Uint8Array(4096), new Uint8Array(4096), out), 0);
  const inverted = p.map((b) => b ^ 0xff);
  assert.equal(xbzrleEncode(p, inverted, out), -1);
  // Every other byte changed: 2048 runs of 1+1+1 bytes cannot fit in a page either.
  const alternate = p.slice();
  for (let i = 0; i < alternate.length; i += 2) alternate[i] ^= 0x5a;
  assert.equal(xbzrleEncode(p, alternate, out), -1);
});

Deno.test("xbzrle: a change at offset 0 starts with a zero-length zrun; the trailing zero run is omitted", () => {
  const oldPage = new Uint8Array(64);
  const newPage = oldPage.slice();
  newPage[0] = 1;
  newPage[1] = 2;
  newPage[63] = 3;
  assert.deepEqual(encodeToArray(oldPage, newPage), [0x00, 0x02, 1, 2, 0x3d, 0x01, 3]);
  const tail = oldPage.slice();
  tail[5] = 9;
  assert.deepEqual(encodeToArray(oldPage, tail), [0x05, 0x01, 9]);
});

Deno.test("xbzrle: overflow follows the source's accounting at the budget edge", () => {
  const oldPage = new Uint8Array(64);
  const newPage = oldPage.slice();
  newPage.fill(1, 10, 15); // encoding: 0a 05 + 5 bytes = 7 bytes
  assert.equal(xbzrleEncode(oldPage, newPage, new Uint8Array(7)), 7); // ending exactly at the budget is fine
  assert.equal(xbzrleEncode(oldPage, newPage, new Uint8Array(6)), -1);
  newPage[20] = 1; // + 05 01 01 = 10 bytes; the second zrun header needs 2 bytes left at offset 7
  assert.equal(xbzrleEncode(oldPage, newPage, new Uint8Array(10)), 10);
  assert.equal(xbzrleEncode(oldPage, newPage, new Uint8Array(8)), -1);
});

Deno.test("xbzrle: a 4 KiB page with a few scattered changes encodes small", () => {
  const oldPage = filledPage(3);
  const newPage = oldPage.slice();
  for (const at of [5, 700, 701, 1500, 2222, 3000, 4095]) newPage[at] ^= 0xa5;
  newPage.fill(0xee, 3500, 3520);
  const out = new Uint8Array(TARGET_PAGE_SIZE);
  const n = xbzrleEncode(oldPage, newPage, out);
  assert.ok(n > 0 && n < 100, `encoded ${n} bytes`);
  const dst = oldPage.slice();
  xbzrleDecode(out.subarray(0, n), dst);
  assert.deepEqual(dst, newPage);
});

Deno.test("xbzrle: matches the byte-wise reference and round-trips (property)", () => {
  const edit = fc.record({
    at: fc.nat({ max: TARGET_PAGE_SIZE - 1 }),
    len: fc.integer({ min: 1, max: 64 }),
    xor: fc.integer({ min: 1, max: 255 }),
    // Some edits write a value that may equal the old byte, so nzruns get interrupted mid-word.
    mode: fc.constantFrom("xor", "set"),
  });
  fc.assert(
    fc.property(fc.integer(), fc.array(edit, { maxLength: 40 }), (seed, edits) => {
      const oldPage = filledPage(seed);
      const newPage = oldPage.slice();
      for (const e of edits) {
        const end = Math.min(TARGET_PAGE_SIZE, e.at + e.len);
        for (let i = e.at; i < end; i++) newPage[i] = e.mode === "xor" ? newPage[i] ^ e.xor : e.xor;
      }
      const got = encodeToArray(oldPage, newPage);
      assert.deepEqual(got, referenceEncode(oldPage, newPage, TARGET_PAGE_SIZE));
      if (got === -1) return;
      const dst = oldPage.slice();
      const end = xbzrleDecode(Uint8Array.from(got), dst);
      assert.deepEqual(dst, newPage);
      // The decoder stops after the last changed byte (the trailing zero run is not sent).
      let last = newPage.length - 1;
      while (last >= 0 && oldPage[last] === newPage[last]) last--;
      assert.equal(end, last + 1);
    }),
    { seed: 0x5a17, numRuns: 300 },
  );
});

Deno.test("xbzrle: dense random edits, tight budgets and unaligned views agree with the reference (property)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 300 }),
      fc.uint8Array({ minLength: 300, maxLength: 300 }),
      fc.nat({ max: 3 }),
      fc.nat({ max: 3 }),
      fc.integer({ min: 1, max: 400 }),
      (oldBytes, mask, offOld, offNew, dlen) => {
        const len = oldBytes.length;
        // Sparse-ish XOR mask: a byte changes only when the mask byte is below 64.
        const newBytes = oldBytes.map((b, i) => mask[i] < 64 ? b ^ (mask[i] + 1) : b);
        const oldBuf = new Uint8Array(len + offOld);
        oldBuf.set(oldBytes, offOld);
        const newBuf = new Uint8Array(len + offNew);
        newBuf.set(newBytes, offNew);
        const oldPage = oldBuf.subarray(offOld);
        const newPage = newBuf.subarray(offNew);
        const got = encodeToArray(oldPage, newPage, dlen);
        assert.deepEqual(got, referenceEncode(oldBytes, newBytes, dlen));
        if (got === -1) return;
        const dst = oldBytes.slice();
        xbzrleDecode(Uint8Array.from(got), dst);
        assert.deepEqual(dst, newBytes);
      },
    ),
    { seed: 20260125, numRuns: 500 },
  );
});

Deno.test("xbzrle: the decoder accepts unchanged bytes inside an nzrun", () => {
  const page = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  // zrun 1, nzrun of 4 whose middle two bytes equal the old ones.
  assert.equal(xbzrleDecode(Uint8Array.from([0x01, 0x04, 9, 3, 4, 9]), page), 5);
  assert.deepEqual([...page], [1, 9, 3, 4, 9, 6, 7, 8]);
  // A two-byte zrun length (300), then a one-byte nzrun that fills the last byte of the page.
  const big = new Uint8Array(301);
  assert.equal(xbzrleDecode(Uint8Array.from([0xac, 0x02, 0x01, 0x77]), big), 301);
  assert.equal(big[299], 0);
  assert.equal(big[300], 0x77);
  // The non-canonical two-byte form of a small length (0x82 0x00 = 2) is accepted, as QEMU's reader does.
  const small = new Uint8Array(4);
  assert.equal(xbzrleDecode(Uint8Array.from([0x82, 0x00, 0x01, 0x55]), small), 3);
  assert.deepEqual([...small], [0, 0, 0x55, 0]);
});

Deno.test("xbzrle: decoder errors", () => {
  const page = () => new Uint8Array(TARGET_PAGE_SIZE);
  const fails = (bytes: number[], re: RegExp, p = page()) =>
    assert.throws(() => xbzrleDecode(Uint8Array.from(bytes), p), (e: unknown) => {
      assert.ok(e instanceof XbzrleError);
      assert.match(e.message, re);
      return true;
    });

  // Truncated: a lone zrun, a zrun with its nzrun header cut, a two-byte ULEB cut after its first byte.
  fails([0x05], /^xbzrle: truncated input: zrun at input offset 0 needs at least 2 bytes, 1 left$/);
  fails([0x05, 0x01, 0xaa, 0x03], /^xbzrle: truncated input: zrun at input offset 3 needs at least 2 bytes/);
  fails([0x05, 0x01, 0xaa, 0x03, 0x02], /^xbzrle: truncated input: nzrun at input offset 4 needs/);
  fails([0x85], /^xbzrle: truncated input: zrun at input offset 0/);
  fails([0x01, 0x82], /^xbzrle: truncated input: nzrun at input offset 1 needs at least 2 bytes, 1 left$/);
  // nzrun data cut short.
  fails([0x00, 0x04, 1, 2], /^xbzrle: nzrun of 4 at input offset 1 runs past the input end \(4\)$/);
  // Zero-length zrun after the start; zero-length nzrun.
  fails([0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb], /^xbzrle: zero-length zrun at input offset 3 \(only allowed/);
  fails([0x03, 0x00, 0xaa], /^xbzrle: zero-length nzrun at input offset 1$/);
  fails([0x03, 0x80, 0x00, 0xaa], /^xbzrle: zero-length nzrun at input offset 1$/);
  // Past the page end: a zrun beyond it, a zrun up to it then an nzrun, an nzrun beyond it.
  fails([0xff, 0x7f, 0x01, 0xaa], /^xbzrle: zrun of 16383 at page offset 0 runs past the page end \(4096\)$/);
  fails([0x80, 0x20, 0x01, 0xaa], /^xbzrle: nzrun of 1 at page offset 4096 runs past the page end \(4096\)$/);
  fails(
    [0x02, 0x03, 1, 2, 3],
    /^xbzrle: nzrun of 3 at page offset 2 runs past the page end \(4\)$/,
    new Uint8Array(4),
  );
  // A ULEB128 with a continuation bit on its second byte.
  fails([0x81, 0x80, 0x01, 0x01, 0xaa], /^xbzrle: ULEB128 at input offset 0 is longer than 2 bytes$/);
  fails([0x01, 0x81, 0x80, 0x01, 0xaa], /^xbzrle: ULEB128 at input offset 1 is longer than 2 bytes$/);
  // Empty input is a valid (empty) delta.
  assert.equal(xbzrleDecode(new Uint8Array(0), page()), 0);
});

Deno.test("xbzrle: ULEB128 small form edge values", () => {
  const buf = new Uint8Array(2);
  const cases: [number, number[]][] = [[0, [0x00]], [1, [0x01]], [0x7f, [0x7f]], [0x80, [0x80, 0x01]], [
    0x3e9,
    [0xe9, 0x07],
  ], [0x3fff, [0xff, 0x7f]]];
  for (const [n, bytes] of cases) {
    buf.fill(0);
    assert.equal(uleb128EncodeSmall(buf, 0, n), bytes.length, `size of ${n}`);
    assert.deepEqual([...buf.subarray(0, bytes.length)], bytes);
    assert.deepEqual(uleb128DecodeSmall(Uint8Array.from(bytes), 0), { value: n, size: bytes.length });
  }
  assert.throws(() => uleb128EncodeSmall(buf, 0, 0x4000), /0x4000|16384 is outside 0\.\.0x3fff/);
  assert.throws(() => uleb128EncodeSmall(buf, 0, -1), RangeError);
  assert.throws(() => uleb128EncodeSmall(buf, 1, 0x80), /no room at offset 1/);
  // 0x4000 would need a third byte: 0x80 0x80 0x01.
  assert.throws(
    () => uleb128DecodeSmall(Uint8Array.from([0x80, 0x80, 0x01]), 0),
    /ULEB128 at input offset 0 is longer than 2 bytes/,
  );
  assert.throws(() => uleb128DecodeSmall(Uint8Array.from([0x80]), 0), /lacks its second byte/);
  assert.throws(() => uleb128DecodeSmall(new Uint8Array(0), 0), /no ULEB128 at input offset 0/);
});

Deno.test("xbzrle: encoder argument checks", () => {
  const out = new Uint8Array(16);
  assert.throws(
    () => xbzrleEncode(new Uint8Array(8), new Uint8Array(12), out),
    /old page is 8 bytes, new page 12/,
  );
  const huge = new Uint8Array(0x4001);
  assert.throws(() => xbzrleEncode(huge, huge, out), /exceeds the 16 KiB/);
  // A 16 KiB page is the largest the format describes; a sparse delta of it still works.
  const oldPage = new Uint8Array(0x4000);
  const newPage = oldPage.slice();
  newPage[0x3fff] = 1;
  const big = new Uint8Array(0x4000);
  assert.equal(xbzrleEncode(oldPage, newPage, big), 4);
  assert.deepEqual([...big.subarray(0, 4)], [0xff, 0x7f, 0x01, 0x01]);
});
