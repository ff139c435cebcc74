import assert from "node:assert/strict";
import fc from "fast-check";
import { withReader } from "./testing/streams_test_util.ts";
import { parseWithVmdesc, vmdescDevice, type VmJson, type VmJsonObject } from "./vmdesc.ts";
import type { VMStateDescription } from "./vmstate.ts";
import {
  dev,
  devStateArb,
  hex,
  type Obj,
  rejectsWith,
  sampleState,
  saved,
  TRAILER,
} from "./vmstate_test_util.ts";

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** What parseWithVmdesc should give for `state` saved with `vmsd`, derived independently of vmdesc. */
function expectedJson(vmsd: VMStateDescription, state: Obj): VmJsonObject {
  const out: VmJsonObject = {};
  for (const f of vmsd.fields) {
    if ((f.versionId ?? 0) > vmsd.versionId) continue;
    const conv = (v: unknown): VmJson => {
      if (f.type === "struct" && f.struct && isObj(v)) return expectedJson(f.struct, v);
      if (v instanceof Uint8Array) return hex(v);
      if (typeof v === "number" || typeof v === "boolean") return v;
      throw new Error(`${vmsd.name}.${f.name}: no JSON for ${String(v)}`);
    };
    const v = state[f.name];
    if (f.arrayLen === undefined) out[f.name] = conv(v);
    else if (!Array.isArray(v)) throw new Error(`${vmsd.name}.${f.name}: expected an array`);
    else if (f.arrayLen === 1) out[f.name] = conv(v[0]);
    else if (f.arrayLen > 1) out[f.name] = v.map(conv);
  }
  for (const sub of vmsd.subsections ?? []) {
    if (!sub.needed || sub.needed(state)) out[sub.name] = expectedJson(sub, state);
  }
  return out;
}

Deno.test("parseWithVmdesc decodes what saveState wrote", async () => {
  for (const irqPending of [true, false]) {
    const state = sampleState(irqPending);
    const [bytes, desc] = await saved(dev, state);
    // The schema travels as JSON text after EOF.
    const device = JSON.parse(JSON.stringify(vmdescDevice("dev", 0, desc)));
    const parsed = await withReader(bytes, async (r) => {
      const out = await parseWithVmdesc(r, device);
      assert.equal(r.get8(), TRAILER);
      return out;
    });
    assert.deepEqual(parsed, expectedJson(dev, state));
    assert.equal(parsed.mem, "010203feff");
    assert.deepEqual(parsed.cells, [{ x: 0 }, { x: -5, "cell/extra": { y: 9 } }]);
  }
  // 64-bit values beyond a safe integer come out as decimal strings.
  const big = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]);
  const parsed = await withReader(big, (r) =>
    parseWithVmdesc(r, {
      vmsd_name: "b",
      version: 1,
      fields: [{ name: "u", type: "uint64", size: 8 }, { name: "i", type: "int64", size: 8 }],
    }));
  assert.deepEqual(parsed, { u: "18446744073709551615", i: "-9223372036854775808" });
});

Deno.test("parseWithVmdesc rejects a bool other than 0/1", async () => {
  await withReader(
    new Uint8Array([2, TRAILER]),
    (r) =>
      rejectsWith(
        parseWithVmdesc(r, { vmsd_name: "t", version: 1, fields: [{ name: "b", type: "bool", size: 1 }] }),
        "t.b: invalid bool value 2",
      ),
  );
});

Deno.test("property: random states saved by saveState parse through their vmdesc alone", async () => {
  await fc.assert(
    fc.asyncProperty(devStateArb(), async (src) => {
      const [bytes, desc] = await saved(dev, src);
      const parsed = await withReader(bytes, (r) => parseWithVmdesc(r, desc));
      assert.deepEqual(parsed, expectedJson(dev, src));
    }),
    { seed: 20260215, numRuns: 150 },
  );
});
