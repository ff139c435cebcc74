import assert from "node:assert/strict";
import fc from "fast-check";
import { QEMUFileWriter } from "./qemu_file.ts";
import { encode, withReader } from "./testing/streams_test_util.ts";
import { memoryLinkPair } from "./transport/link.ts";
import { vmdescDevice } from "./vmdesc.ts";
import { loadState, saveState, type VMStateDescription } from "./vmstate.ts";
import {
  dev,
  devStateArb,
  inner,
  irqSub,
  MAGIC,
  rejectsWith,
  resetState,
  sampleState,
  saved,
  TRAILER,
} from "./vmstate_test_util.ts";

/** Loads `bytes` and checks that exactly the trailer byte is left. */
function load<S>(bytes: Uint8Array, vmsd: VMStateDescription<S>, state: S, version: number): Promise<void> {
  return withReader(bytes, async (r) => {
    await loadState(r, vmsd, state, version);
    await r.need(1, "trailer");
    assert.equal(r.get8(), TRAILER);
    assert.ok(await r.atEnd());
  });
}

Deno.test("round trip with structs, arrays, buffers and a needed subsection", async () => {
  for (const irqPending of [true, false]) {
    const src = sampleState(irqPending);
    const [bytes] = await saved(dev, src);
    const dst = resetState();
    const inners = dst.inners;
    const innerObj = dst.inner;
    const mem = dst.mem;
    await load(bytes, dev, dst, dev.versionId);
    assert.deepEqual(dst, src);
    // Loading writes into the existing objects, as QEMU loads into device memory.
    assert.equal(dst.inners, inners);
    assert.equal(dst.inner, innerObj);
    assert.equal(dst.mem, mem);
  }
});

Deno.test("subsection wire form: 0x05, counted name, be32 version, then its fields", async () => {
  const vmsd: VMStateDescription = {
    name: "d",
    versionId: 1,
    minimumVersionId: 1,
    fields: [{ name: "a", type: "uint8" }],
    subsections: [{
      name: "d/s",
      versionId: 7,
      minimumVersionId: 1,
      fields: [{ name: "b", type: "uint16" }],
    }],
  };
  const [bytes] = await saved(vmsd, { a: 1, b: 0x0203 });
  assert.deepEqual(Array.from(bytes), [1, 0x05, 3, 0x64, 0x2f, 0x73, 0, 0, 0, 7, 2, 3, TRAILER]);
});

Deno.test("fields newer than the incoming version are neither read nor touched", async () => {
  const devV2: VMStateDescription = { ...dev, versionId: 2 };
  const src = sampleState(false);
  const [bytes] = await saved(devV2, src);
  const dst = resetState();
  dst.v3only = 1234;
  await load(bytes, dev, dst, 2);
  assert.deepEqual(dst, { ...src, v3only: 1234 });
});

Deno.test("version too new / too old", async () => {
  await withReader(new Uint8Array([0]), async (r) => {
    await rejectsWith(
      loadState(r, dev, resetState(), 5),
      "dev: incoming version_id 5 is too new for local version_id 3",
    );
    await rejectsWith(
      loadState(r, dev, resetState(), 1),
      "dev: incoming version_id 1 is too old for local minimum version_id 2",
    );
  });
  // A subsection's own version is checked too.
  const newerIrq: VMStateDescription = { ...irqSub, versionId: 2 };
  const [bytes] = await saved({ ...dev, subsections: [newerIrq] }, sampleState(true));
  await withReader(
    bytes,
    (r) => rejectsWith(loadState(r, dev, resetState(), 3), "dev/irq: incoming version_id 2"),
  );
});

Deno.test("unknown subsection with our prefix is an error; another prefix is left alone", async () => {
  const ghost: VMStateDescription = {
    name: "dev/ghost",
    versionId: 1,
    minimumVersionId: 1,
    fields: [{ name: "g", type: "uint8" }],
  };
  const [bytes] = await saved({ ...dev, subsections: [irqSub, ghost] }, { ...sampleState(true), g: 1 });
  await withReader(
    bytes,
    (r) =>
      rejectsWith(loadState(r, dev, resetState(), 3), "VM subsection 'dev/ghost' in 'dev' does not exist"),
  );

  // 0x05 followed by something that is not "t/..." belongs to whoever reads next.
  const t: VMStateDescription = { name: "t", versionId: 1, minimumVersionId: 1, fields: [] };
  const foreign = await encode((w) => {
    w.put8(0x05);
    w.putCountedString("other/x");
  });
  await withReader(foreign, async (r) => {
    await loadState(r, t, {}, 1);
    assert.equal(r.position, 0);
  });
  // ...even when the stream ends before the whole name could be peeked,
  await withReader(new Uint8Array([0x05, 40, 0x78]), async (r) => {
    await loadState(r, t, {}, 1);
    assert.equal(r.position, 0);
  });
  // but a cut-short name that starts with "t/" is our subsection, truncated.
  await withReader(
    new Uint8Array([0x05, 40, 0x74, 0x2f]),
    (r) => rejectsWith(loadState(r, t, {}, 1), "while reading t subsection name"),
  );
});

Deno.test("post_load rejection names the vmsd; equal mismatch is rejected", async () => {
  const picky: VMStateDescription = {
    ...dev,
    postLoad(s, v) {
      if (s.irqLine === 11) throw new Error(`irq line 11 is reserved (v${v})`);
    },
  };
  const [bytes] = await saved(dev, sampleState(true));
  const err = await withReader(
    bytes,
    (r) =>
      rejectsWith(
        loadState(r, picky, resetState(), 3),
        "dev: post_load failed: irq line 11 is reserved (v3)",
      ),
  );
  assert.ok(err.cause instanceof Error);

  const pickyInner: VMStateDescription = { ...inner, postLoad: () => assert.fail("nope") };
  const devPickyInner: VMStateDescription = {
    ...dev,
    fields: dev.fields.map((f) => f.name === "inner" ? { ...f, struct: pickyInner } : f),
  };
  await withReader(
    bytes,
    (r) => rejectsWith(loadState(r, devPickyInner, resetState(), 3), "inner: post_load failed"),
  );

  const dst = { ...resetState(), magic: MAGIC + 1 };
  await withReader(
    bytes,
    (r) =>
      rejectsWith(
        loadState(r, dev, dst, 3),
        `dev.magic: incoming value ${MAGIC} differs from the current value`,
      ),
  );
});

Deno.test("truncation anywhere is a StreamError naming what was being read", async () => {
  const [bytes] = await saved(dev, sampleState(true));
  const body = bytes.subarray(0, bytes.length - 1);
  for (let cut = 0; cut <= body.length; cut++) {
    await withReader(body.subarray(0, cut), async (r) => {
      const e = await rejectsWith(
        loadState(r, dev, resetState(), 3),
        "Unexpected end of stream while reading",
      );
      assert.match(e.message, /reading (dev|inner|cell)[./ ]/);
    });
  }
  // magic(4) u8 i8 u16 i16 u32 i32 u64 i64 on mem(5) = 40 bytes, then regs: cut in regs[2].
  await withReader(
    bytes.subarray(0, 40 + 9),
    (r) => rejectsWith(loadState(r, dev, resetState(), 3), "while reading dev.regs[2]"),
  );
  await withReader(
    bytes.subarray(0, 40 + 16 + 1),
    (r) => rejectsWith(loadState(r, dev, resetState(), 3), "while reading inner.a"),
  );
});

Deno.test("bool other than 0/1 is rejected", async () => {
  const vmsd: VMStateDescription = {
    name: "t",
    versionId: 1,
    minimumVersionId: 1,
    fields: [{ name: "b", type: "bool" }],
  };
  await withReader(
    new Uint8Array([2, TRAILER]),
    (r) => rejectsWith(loadState(r, vmsd, {}, 1), "t.b: invalid bool value 2"),
  );
});

Deno.test("save rejects values that do not fit the field", () => {
  const vmsd = (type: "uint8" | "int64" | "uint64" | "buffer", size?: number): VMStateDescription => ({
    name: "t",
    versionId: 1,
    minimumVersionId: 1,
    fields: [{ name: "v", type, size }],
  });
  const [a] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 0);
  assert.throws(() => saveState(w, vmsd("uint8"), { v: 256 }), /t\.v: 256 does not fit uint8/);
  assert.throws(() => saveState(w, vmsd("uint64"), { v: -1 }), /does not fit uint64/);
  assert.throws(() => saveState(w, vmsd("int64"), { v: 2 ** 53 }), /does not fit int64/);
  assert.throws(() => saveState(w, vmsd("int64"), { v: 1.5 }), /does not fit int64/);
  assert.throws(() => saveState(w, vmsd("buffer", 4), { v: new Uint8Array(3) }), /Uint8Array of 4 bytes/);
  const arr: VMStateDescription = { ...vmsd("uint8"), fields: [{ name: "v", type: "uint8", arrayLen: 3 }] };
  assert.throws(() => saveState(w, arr, { v: [1, 2] }), /array of 3 elements/);
  const badSub: VMStateDescription = { ...vmsd("uint8"), subsections: [{ ...inner, name: "elsewhere/x" }] };
  assert.throws(() => saveState(w, badSub, { v: 1, a: 1, flag: true }), /must be named 't\/\.\.\.'/);
  a.close();
});

Deno.test("vmdesc JSON has QEMU's shape and key order", async () => {
  const [, desc] = await saved(dev, sampleState(true));
  const device = vmdescDevice("dev-0", 2, desc);
  const innerDesc = {
    vmsd_name: "inner",
    version: 1,
    fields: [{ name: "a", type: "uint16", size: 2 }, { name: "flag", type: "bool", size: 1 }],
  };
  const cellDesc = (x: number) => ({
    vmsd_name: "cell",
    version: 2,
    fields: [{ name: "x", type: "int32", size: 4 }],
    ...(x !== 0
      ? {
        subsections: [{
          vmsd_name: "cell/extra",
          version: 1,
          fields: [{ name: "y", type: "uint8", size: 1 }],
        }],
      }
      : {}),
  });
  const expected = {
    name: "dev-0",
    instance_id: 2,
    vmsd_name: "dev",
    version: 3,
    fields: [
      { name: "magic", type: "uint32 equal", size: 4 },
      { name: "u8", type: "uint8", size: 1 },
      { name: "i8", type: "int8", size: 1 },
      { name: "u16", type: "uint16", size: 2 },
      { name: "i16", type: "int16", size: 2 },
      { name: "u32", type: "uint32", size: 4 },
      { name: "i32", type: "int32", size: 4 },
      { name: "u64", type: "uint64", size: 8 },
      { name: "i64", type: "int64", size: 8 },
      { name: "on", type: "bool", size: 1 },
      { name: "mem", type: "buffer", size: 5 },
      { name: "regs", array_len: 4, type: "uint32", size: 4 },
      { name: "inner", type: "struct", struct: innerDesc, size: 3 },
      { name: "inners", array_len: 2, type: "struct", struct: innerDesc, size: 3 },
      // Subsections make elements vary, so each is described on its own with "index".
      { name: "cells", index: 0, type: "struct", struct: cellDesc(0), size: 4 },
      { name: "cells", index: 1, type: "struct", struct: cellDesc(-5), size: 4 + 1 + 1 + 10 + 4 + 1 },
      { name: "v3only", type: "uint16", size: 2 },
    ],
    subsections: [{
      vmsd_name: "dev/irq",
      version: 1,
      fields: [{ name: "irqPending", type: "bool", size: 1 }, { name: "irqLine", type: "uint8", size: 1 }],
    }],
  };
  // String comparison checks key order too.
  assert.equal(JSON.stringify(device), JSON.stringify(expected));

  const [, noSub] = await saved(dev, sampleState(false));
  assert.ok(!("subsections" in noSub));

  // Repeated field names are made unique; a one-element array is a plain field.
  const rep: VMStateDescription = {
    name: "rep",
    versionId: 1,
    minimumVersionId: 1,
    fields: [
      { name: "unused", type: "buffer", size: 2 },
      { name: "one", type: "uint8", arrayLen: 1 },
      { name: "unused", type: "buffer", size: 2 },
      { name: "none", type: "uint8", arrayLen: 0 },
    ],
  };
  const [, repDesc] = await saved(rep, { unused: new Uint8Array(2), one: [3], none: [] });
  assert.deepEqual(repDesc.fields, [
    { name: "unused[0]", type: "buffer", size: 2 },
    { name: "one", type: "uint8", size: 1 },
    { name: "unused[1]", type: "buffer", size: 2 },
  ]);
});

Deno.test("property: random states round-trip through save and load", async () => {
  await fc.assert(
    fc.asyncProperty(devStateArb(), async (src) => {
      const [bytes] = await saved(dev, src);
      const dst = resetState();
      await load(bytes, dev, dst, dev.versionId);
      assert.deepEqual(dst, src);
    }),
    { seed: 20260215, numRuns: 150 },
  );
});
