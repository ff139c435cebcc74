import assert from "node:assert/strict";
import fc from "fast-check";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { memoryLinkPair } from "./transport/link.ts";
import {
  loadState,
  parseWithVmdesc,
  saveState,
  vmdescDevice,
  type VmdescObject,
  type VmJson,
  type VmJsonObject,
  type VMStateDescription,
} from "./vmstate.ts";

type Obj = Record<string, unknown>;

/** Byte that stands for whatever follows a vmstate on the wire (here QEMU_VM_EOF). */
const TRAILER = 0x00;

/** Runs `fn` on a writer over an in-memory link and returns every byte it wrote. */
async function encode(fn: (w: QEMUFileWriter) => void): Promise<Uint8Array> {
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 4096);
  fn(w);
  await w.flush();
  a.close();
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (let n = await b.read(buf); n !== null; n = await b.read(buf)) chunks.push(buf.slice(0, n));
  b.close();
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Feeds `bytes` to a reader over an in-memory link that ends after them. */
async function withReader<T>(bytes: Uint8Array, fn: (r: QEMUFileReader) => Promise<T>): Promise<T> {
  const [a, b] = memoryLinkPair();
  await a.write(bytes);
  a.close();
  try {
    return await fn(new QEMUFileReader(b, 4096));
  } finally {
    b.close();
  }
}

/** Saves `state` followed by the trailer byte; returns the bytes and the vmdesc. */
async function saved<S>(vmsd: VMStateDescription<S>, state: S): Promise<[Uint8Array, VmdescObject]> {
  let desc: VmdescObject | undefined;
  const bytes = await encode((w) => {
    desc = saveState(w, vmsd, state);
    w.put8(TRAILER);
  });
  assert.ok(desc);
  return [bytes, desc];
}

/** Loads `bytes` and checks that exactly the trailer byte is left. */
function load<S>(bytes: Uint8Array, vmsd: VMStateDescription<S>, state: S, version: number): Promise<void> {
  return withReader(bytes, async (r) => {
    await loadState(r, vmsd, state, version);
    await r.need(1, "trailer");
    assert.equal(r.get8(), TRAILER);
    assert.ok(await r.atEnd());
  });
}

const inner: VMStateDescription = {
  name: "inner",
  versionId: 1,
  minimumVersionId: 1,
  fields: [{ name: "a", type: "uint16" }, { name: "flag", type: "bool" }],
};

/** A struct with a subsection, so arrays of it cannot be described with array_len. */
const cell: VMStateDescription = {
  name: "cell",
  versionId: 2,
  minimumVersionId: 1,
  fields: [{ name: "x", type: "int32" }],
  subsections: [{
    name: "cell/extra",
    versionId: 1,
    minimumVersionId: 1,
    needed: (s) => s.x !== 0,
    fields: [{ name: "y", type: "uint8" }],
  }],
};

const MAGIC = 0x5eed;

const irqSub: VMStateDescription = {
  name: "dev/irq",
  versionId: 1,
  minimumVersionId: 1,
  needed: (s) => s.irqPending === true,
  fields: [{ name: "irqPending", type: "bool" }, { name: "irqLine", type: "uint8" }],
};

const dev: VMStateDescription = {
  name: "dev",
  versionId: 3,
  minimumVersionId: 2,
  fields: [
    { name: "magic", type: "uint32", equal: true },
    { name: "u8", type: "uint8" },
    { name: "i8", type: "int8" },
    { name: "u16", type: "uint16" },
    { name: "i16", type: "int16" },
    { name: "u32", type: "uint32" },
    { name: "i32", type: "int32" },
    { name: "u64", type: "uint64" },
    { name: "i64", type: "int64" },
    { name: "on", type: "bool" },
    { name: "mem", type: "buffer", size: 5 },
    { name: "regs", type: "uint32", arrayLen: 4 },
    { name: "inner", type: "struct", struct: inner },
    { name: "inners", type: "struct", struct: inner, arrayLen: 2 },
    { name: "cells", type: "struct", struct: cell, arrayLen: 2 },
    { name: "v3only", type: "uint16", versionId: 3 },
  ],
  subsections: [
    irqSub,
    {
      name: "dev/never",
      versionId: 1,
      minimumVersionId: 1,
      needed: () => false,
      fields: [{ name: "neverField", type: "uint8" }],
    },
  ],
};

/** The destination's state before loading: what a freshly reset device holds. */
function resetState(): Obj {
  return {
    magic: MAGIC,
    u8: 0,
    i8: 0,
    u16: 0,
    i16: 0,
    u32: 0,
    i32: 0,
    u64: 0,
    i64: 0,
    on: false,
    mem: new Uint8Array(5),
    regs: [0, 0, 0, 0],
    inner: { a: 0, flag: false },
    inners: [{ a: 0, flag: false }, { a: 0, flag: false }],
    cells: [{ x: 0, y: 0 }, { x: 0, y: 0 }],
    v3only: 0,
    irqPending: false,
    irqLine: 0,
    neverField: 0,
  };
}

function sampleState(irqPending: boolean): Obj {
  return {
    ...resetState(),
    u8: 255,
    i8: -128,
    u16: 0xfffe,
    i16: -2,
    u32: 0xdeadbeef,
    i32: -0x80000000,
    u64: Number.MAX_SAFE_INTEGER,
    i64: Number.MIN_SAFE_INTEGER,
    on: true,
    mem: new Uint8Array([1, 2, 3, 0xfe, 0xff]),
    regs: [1, 2, 3, 0xffffffff],
    inner: { a: 7, flag: true },
    inners: [{ a: 1, flag: false }, { a: 2, flag: true }],
    cells: [{ x: 0, y: 0 }, { x: -5, y: 9 }],
    v3only: 33,
    irqPending,
    irqLine: irqPending ? 11 : 0,
  };
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** What parseWithVmdesc should give for `state` saved with `vmsd`, derived independently of vmdesc. */
function expectedJson(vmsd: VMStateDescription, state: Obj): VmJsonObject {
  const out: VmJsonObject = {};
  for (const f of vmsd.fields) {
    if ((f.versionId ?? 0) > vmsd.versionId) continue;
    const conv = (v: unknown): VmJson => {
      if (f.type === "struct" && f.struct) return expectedJson(f.struct, v as Obj);
      if (v instanceof Uint8Array) return hex(v);
      return v as VmJson;
    };
    const v = state[f.name];
    if (f.arrayLen === undefined) out[f.name] = conv(v);
    else if (f.arrayLen === 1) out[f.name] = conv((v as unknown[])[0]);
    else if (f.arrayLen > 1) out[f.name] = (v as unknown[]).map(conv);
  }
  for (const sub of vmsd.subsections ?? []) {
    if (!sub.needed || sub.needed(state)) out[sub.name] = expectedJson(sub, state);
  }
  return out;
}

async function rejectsWith(p: Promise<unknown>, text: string): Promise<StreamError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(
    caught instanceof StreamError,
    `expected a StreamError containing "${text}", got ${String(caught)}`,
  );
  assert.ok(caught.message.includes(text), `"${caught.message}" does not contain "${text}"`);
  return caught;
}

Deno.test("round trip with structs, arrays, buffers and a needed subsection", async () => {
  for (const irqPending of [true, false]) {
    const src = sampleState(irqPending);
    const [bytes] = await saved(dev, src);
    const dst = resetState();
    const inners = dst.inners as unknown[];
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

Deno.test("integers are big-endian, int64 two's complement", async () => {
  const vmsd: VMStateDescription = {
    name: "n",
    versionId: 1,
    minimumVersionId: 1,
    fields: [
      { name: "a", type: "int64" },
      { name: "b", type: "int64" },
      { name: "c", type: "int16" },
      { name: "d", type: "uint32" },
    ],
  };
  const state = { a: -1, b: Number.MIN_SAFE_INTEGER, c: -2, d: 0x01020304 };
  const [bytes] = await saved(vmsd, state);
  assert.equal(
    hex(bytes),
    "ffffffffffffffff" + "ffe0000000000001" + "fffe" + "01020304" + "00",
  );
  const dst: Obj = {};
  await load(bytes, vmsd, dst, 1);
  assert.deepEqual(dst, state);
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
  await withReader(
    new Uint8Array([2, TRAILER]),
    (r) =>
      rejectsWith(
        parseWithVmdesc(r, { vmsd_name: "t", version: 1, fields: [{ name: "b", type: "bool", size: 1 }] }),
        "t.b: invalid bool value 2",
      ),
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

Deno.test("property: random states round-trip through save and load", async () => {
  const int = (min: number, max: number) => fc.integer({ min, max });
  const rec = { noNullPrototype: true };
  const innerArb = fc.record({ a: int(0, 0xffff), flag: fc.boolean() }, rec);
  const cellArb = fc.record({ x: int(-0x80000000, 0x7fffffff), y: int(0, 255) }, rec)
    .map((c) => c.x === 0 ? { x: 0, y: 0 } : c);
  const stateArb = fc.record({
    u8: int(0, 0xff),
    i8: int(-0x80, 0x7f),
    u16: int(0, 0xffff),
    i16: int(-0x8000, 0x7fff),
    u32: fc.maxSafeNat().map((v) => v % 2 ** 32),
    i32: int(-0x80000000, 0x7fffffff),
    u64: fc.maxSafeNat(),
    i64: fc.maxSafeInteger(),
    on: fc.boolean(),
    mem: fc.uint8Array({ minLength: 5, maxLength: 5 }),
    regs: fc.array(fc.maxSafeNat().map((v) => v % 2 ** 32), { minLength: 4, maxLength: 4 }),
    inner: innerArb,
    inners: fc.array(innerArb, { minLength: 2, maxLength: 2 }),
    cells: fc.array(cellArb, { minLength: 2, maxLength: 2 }),
    v3only: int(0, 0xffff),
    irqPending: fc.boolean(),
    irqLine: int(0, 255),
  }, rec).map((s): Obj => ({ ...s, magic: MAGIC, irqLine: s.irqPending ? s.irqLine : 0, neverField: 0 }));

  await fc.assert(
    fc.asyncProperty(stateArb, async (src) => {
      const [bytes, desc] = await saved(dev, src);
      const dst = resetState();
      await load(bytes, dev, dst, dev.versionId);
      assert.deepEqual(dst, src);
      const parsed = await withReader(bytes, (r) => parseWithVmdesc(r, desc));
      assert.deepEqual(parsed, expectedJson(dev, src));
    }),
    { seed: 20260215, numRuns: 150 },
  );
});
