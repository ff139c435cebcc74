import assert from "node:assert/strict";
import { encode, withReader } from "./testing/streams_test_util.ts";
import { getInt, intFits, type IntType, putInt } from "./vmstate_types.ts";

Deno.test("integers are big-endian, int64 two's complement", async () => {
  const values: [IntType, number][] = [
    ["int64", -1],
    ["int64", Number.MIN_SAFE_INTEGER],
    ["int16", -2],
    ["uint32", 0x01020304],
  ];
  const bytes = await encode((w) => values.forEach(([t, v]) => putInt(w, t, v)));
  assert.deepEqual(
    bytes,
    new Uint8Array([
      ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
      ...[0xff, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
      ...[0xff, 0xfe],
      ...[0x01, 0x02, 0x03, 0x04],
    ]),
  );
  const back = await withReader(bytes, async (r) => {
    await r.need(bytes.length, "integers");
    return values.map(([t]) => getInt(r, t));
  });
  // 64-bit values come back as bigint, whatever their size.
  assert.deepEqual(back, [-1n, BigInt(Number.MIN_SAFE_INTEGER), -2, 0x01020304]);
});

Deno.test("64-bit values beyond a safe integer are read exactly", async () => {
  const bytes = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]);
  const back = await withReader(bytes, async (r) => {
    await r.need(bytes.length, "integers");
    return [getInt(r, "uint64"), getInt(r, "int64")];
  });
  assert.deepEqual(back, [2n ** 64n - 1n, -(2n ** 63n)]);
});

Deno.test("intFits: each type's range, safe integers only", () => {
  const cases: [IntType, number, boolean][] = [
    ["uint8", 255, true],
    ["uint8", 256, false],
    ["int8", -128, true],
    ["int8", 128, false],
    ["uint16", -1, false],
    ["int32", -0x80000000, true],
    ["int32", 0x80000000, false],
    ["uint32", 0xffffffff, true],
    ["uint64", -1, false],
    ["uint64", Number.MAX_SAFE_INTEGER, true],
    ["int64", Number.MIN_SAFE_INTEGER, true],
    ["int64", 2 ** 53, false],
    ["int64", 1.5, false],
  ];
  for (const [t, v, fits] of cases) assert.equal(intFits(t, v), fits, `${t} ${v}`);
});
