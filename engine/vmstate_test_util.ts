/**
 * What the walker's tests (vmstate_test.ts) and the vmdesc reader's tests (vmdesc_test.ts) share: one
 * device description that uses every kind of field, its states, and saving it to bytes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { StreamError } from "./qemu_file.ts";
import { encode } from "./testing/streams_test_util.ts";
import type { VmdescObject } from "./vmdesc.ts";
import { saveState, type VMStateDescription } from "./vmstate.ts";

export type Obj = Record<string, unknown>;

/** Byte that stands for whatever follows a vmstate on the wire (here QEMU_VM_EOF). */
export const TRAILER = 0x00;

/** Saves `state` followed by the trailer byte; returns the bytes and the vmdesc. */
export async function saved<S>(vmsd: VMStateDescription<S>, state: S): Promise<[Uint8Array, VmdescObject]> {
  let desc: VmdescObject | undefined;
  const bytes = await encode((w) => {
    desc = saveState(w, vmsd, state);
    w.put8(TRAILER);
  });
  assert.ok(desc);
  return [bytes, desc];
}

export const inner: VMStateDescription = {
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

export const MAGIC = 0x5eed;

export const irqSub: VMStateDescription = {
  name: "dev/irq",
  versionId: 1,
  minimumVersionId: 1,
  needed: (s) => s.irqPending === true,
  fields: [{ name: "irqPending", type: "bool" }, { name: "irqLine", type: "uint8" }],
};

export const dev: VMStateDescription = {
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
export function resetState(): Obj {
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

export function sampleState(irqPending: boolean): Obj {
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

/** Random states of `dev` that a save and load (or parse) must carry unchanged. */
export function devStateArb(): fc.Arbitrary<Obj> {
  const int = (min: number, max: number) => fc.integer({ min, max });
  const rec = { noNullPrototype: true };
  const innerArb = fc.record({ a: int(0, 0xffff), flag: fc.boolean() }, rec);
  const cellArb = fc.record({ x: int(-0x80000000, 0x7fffffff), y: int(0, 255) }, rec)
    .map((c) => c.x === 0 ? { x: 0, y: 0 } : c);
  return fc.record({
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
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export async function rejectsWith(p: Promise<unknown>, text: string): Promise<StreamError> {
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
