/**
 * VMState: QEMU's table-driven device state format (migration/vmstate.c). A description lists fields in
 * order and the wire carries only their big-endian values, with no tags or lengths, so a reader needs the
 * same description, or the vmdesc JSON the source appends after EOF, to parse it. Optional data travels in
 * subsections: u8 0x05, u8 name length, name ("parent/child"), be32 version_id, then the subsection's
 * own vmstate, all after the parent's fields.
 */
import { errorMessage } from "./error.ts";
import { type QEMUFileReader, type QEMUFileWriter, StreamError } from "./qemu_file.ts";
import type { VmdescField, VmdescObject } from "./vmdesc.ts";
import {
  getInt,
  intFits,
  INTS,
  type IntType,
  isIntType,
  putInt,
  QEMU_VM_SUBSECTION,
} from "./vmstate_types.ts";

/** The integer types are the codec's (vmstate_types.ts), so the two cannot drift apart. */
export type VMStateFieldType = IntType | "bool" | "buffer" | "struct";

export interface VMStateField {
  /** Also the key of the value in the state object. */
  name: string;
  type: VMStateFieldType;
  /** Byte size of a "buffer" field. */
  size?: number;
  /** Fixed-length array of this field's element; the state value is then a JS array of that length. */
  arrayLen?: number;
  /** Child description of a "struct" field (loaded at the child's own version, as VMS_STRUCT is). */
  struct?: VMStateDescription;
  /** The field exists only in versions >= this (VMSTATE_*_V). */
  versionId?: number;
  /** VMSTATE_*_EQUAL: loading fails if the incoming value differs from the current one (integers only). */
  equal?: boolean;
}

export interface VMStateDescription<S = Record<string, unknown>> {
  name: string;
  versionId: number;
  minimumVersionId: number;
  fields: VMStateField[];
  /** Each works on the same state object as its parent; names must be "<parent name>/...". */
  subsections?: VMStateDescription<S>[];
  /** Decides whether a subsection is sent; absent means always. */
  needed?(s: S): boolean;
  preSave?(s: S): void;
  preLoad?(s: S): void;
  /** Throws to reject the loaded state. */
  postLoad?(s: S, versionId: number): void;
}

type Obj = Record<string, unknown>;
type Vmsd = VMStateDescription<Obj>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function fieldExists(field: VMStateField, versionId: number): boolean {
  return (field.versionId ?? 0) <= versionId;
}

function structOf(field: VMStateField, where: string): Vmsd {
  if (!field.struct) throw new Error(`${where}: struct field without a struct description`);
  return field.struct;
}

function bufferSize(field: VMStateField, where: string): number {
  const size = field.size;
  if (size === undefined || !Number.isInteger(size) || size < 0) {
    throw new Error(`${where}: buffer field needs a non-negative integer size`);
  }
  return size;
}

function typeName(field: VMStateField, where: string): string {
  if (!field.equal) return field.type;
  if (!isIntType(field.type)) throw new Error(`${where}: equal is only supported on integer fields`);
  return `${field.type} equal`;
}

/** vmdesc names a repeated field name[n] so the JSON keys stay unique (vmfield_name_num). */
function uniqueName(fields: VMStateField[], field: VMStateField): string {
  const same = fields.filter((f) => f.name === field.name);
  return same.length > 1 ? `${field.name}[${same.indexOf(field)}]` : field.name;
}

/** Arrays are described once ("array_len") unless an element's layout can vary (vmsd_can_compress). */
function canCompress(field: VMStateField): boolean {
  if (field.type !== "struct" || !field.struct) return true;
  if ((field.struct.subsections?.length ?? 0) > 0) return false;
  return field.struct.fields.every(canCompress);
}

function wrapHook(what: string, e: unknown): Error {
  const err = new Error(`${what}: ${errorMessage(e)}`);
  err.cause = e;
  return err;
}

// ---------------------------------------------------------------------------------------------------
// Save

/**
 * Writes `state` as described by `vmsd` (pre_save, fields, needed subsections) and returns the vmdesc
 * object for exactly what was written. Values that do not fit their field type throw a plain Error.
 */
export function saveState<S>(w: QEMUFileWriter, vmsd: VMStateDescription<S>, state: S): VmdescObject {
  return saveVmsd(w, vmsd as unknown as Vmsd, state as unknown as Obj);
}

function saveVmsd(w: QEMUFileWriter, vmsd: Vmsd, state: Obj): VmdescObject {
  if (vmsd.preSave) {
    try {
      vmsd.preSave(state);
    } catch (e) {
      throw wrapHook(`${vmsd.name}: pre_save failed`, e);
    }
  }
  const desc: VmdescObject = { vmsd_name: vmsd.name, version: vmsd.versionId, fields: [] };
  for (const field of vmsd.fields) {
    if (!fieldExists(field, vmsd.versionId)) continue;
    const where = `${vmsd.name}.${field.name}`;
    const name = uniqueName(vmsd.fields, field);
    const type = typeName(field, where);
    const value = state[field.name];
    if (field.arrayLen === undefined) {
      desc.fields.push(fieldDesc(name, {}, type, saveElement(w, field, value, where)));
      continue;
    }
    const n = field.arrayLen;
    if (!Array.isArray(value) || value.length !== n) {
      throw new Error(`${where}: expected an array of ${n} elements`);
    }
    const compress = canCompress(field);
    for (let i = 0; i < n; i++) {
      const written = saveElement(w, field, value[i], `${where}[${i}]`);
      // As in QEMU, a one-element array is described as a plain field.
      if (n === 1) desc.fields.push(fieldDesc(name, {}, type, written));
      else if (!compress) desc.fields.push(fieldDesc(name, { index: i }, type, written));
      else if (i === 0) desc.fields.push(fieldDesc(name, { array_len: n }, type, written));
    }
  }
  const subs: VmdescObject[] = [];
  for (const sub of vmsd.subsections ?? []) {
    if (sub.needed && !sub.needed(state)) continue;
    // The loader ignores subsections without the parent's prefix, so such a name is a definition bug.
    if (!sub.name.startsWith(`${vmsd.name}/`)) {
      throw new Error(`subsection '${sub.name}' of '${vmsd.name}' must be named '${vmsd.name}/...'`);
    }
    w.put8(QEMU_VM_SUBSECTION);
    w.putCountedString(sub.name);
    w.putBe32(sub.versionId);
    subs.push(saveVmsd(w, sub, state));
  }
  if (subs.length > 0) desc.subsections = subs;
  return desc;
}

/** What one element put on the wire, as its vmdesc entry tells it. */
type Written = Pick<VmdescField, "struct" | "size">;

function fieldDesc(
  name: string,
  arr: { array_len?: number; index?: number },
  type: string,
  written: Written,
): VmdescField {
  // Key order follows QEMU's writer: name, array_len/index, type, struct, size.
  const d = { name, ...arr, type };
  return written.struct ? { ...d, struct: written.struct, size: written.size } : { ...d, size: written.size };
}

function saveElement(w: QEMUFileWriter, field: VMStateField, value: unknown, where: string): Written {
  const start = w.position;
  let struct: VmdescObject | undefined;
  switch (field.type) {
    case "bool":
      if (typeof value !== "boolean") throw new Error(`${where}: expected a boolean, got ${String(value)}`);
      w.put8(value ? 1 : 0);
      break;
    case "buffer": {
      const size = bufferSize(field, where);
      if (!(value instanceof Uint8Array) || value.length !== size) {
        throw new Error(`${where}: expected a Uint8Array of ${size} bytes`);
      }
      w.putBytes(value);
      break;
    }
    case "struct":
      if (!isObj(value)) throw new Error(`${where}: expected an object`);
      struct = saveVmsd(w, structOf(field, where), value);
      break;
    default:
      if (typeof value !== "number" || !intFits(field.type, value)) {
        throw new RangeError(`${where}: ${String(value)} does not fit ${field.type}`);
      }
      putInt(w, field.type, value);
  }
  return struct ? { struct, size: w.position - start } : { size: w.position - start };
}

// ---------------------------------------------------------------------------------------------------
// Load

/**
 * Reads a vmstate written at `versionId` into `state` (mutating it, nested objects and arrays included).
 * Every failure caused by the stream, by a version mismatch or by a hook is a StreamError.
 */
export async function loadState<S>(
  r: QEMUFileReader,
  vmsd: VMStateDescription<S>,
  state: S,
  versionId: number,
): Promise<void> {
  await loadVmsd(r, vmsd as unknown as Vmsd, state as unknown as Obj, versionId);
}

function hookError(r: QEMUFileReader, vmsd: Vmsd, hook: string, e: unknown): StreamError {
  const err = r.error(`${vmsd.name}: ${hook} failed: ${errorMessage(e)}`);
  err.cause = e;
  return err;
}

async function loadVmsd(r: QEMUFileReader, vmsd: Vmsd, state: Obj, versionId: number): Promise<void> {
  if (versionId > vmsd.versionId) {
    throw r.error(
      `${vmsd.name}: incoming version_id ${versionId} is too new for local version_id ${vmsd.versionId}`,
    );
  }
  if (versionId < vmsd.minimumVersionId) {
    throw r.error(
      `${vmsd.name}: incoming version_id ${versionId} is too old for local minimum version_id ${vmsd.minimumVersionId}`,
    );
  }
  if (vmsd.preLoad) {
    try {
      vmsd.preLoad(state);
    } catch (e) {
      throw hookError(r, vmsd, "pre_load", e);
    }
  }
  for (const field of vmsd.fields) {
    if (!fieldExists(field, versionId)) continue;
    const where = `${vmsd.name}.${field.name}`;
    if (field.arrayLen === undefined) {
      state[field.name] = await loadElement(r, field, state[field.name], where);
      continue;
    }
    const n = field.arrayLen;
    const cur = state[field.name];
    const arr: unknown[] = Array.isArray(cur) && cur.length === n ? cur : Array.from({ length: n });
    state[field.name] = arr;
    for (let i = 0; i < n; i++) arr[i] = await loadElement(r, field, arr[i], `${where}[${i}]`);
  }
  await loadSubsections(r, vmsd, state);
  if (vmsd.postLoad) {
    try {
      vmsd.postLoad(state, versionId);
    } catch (e) {
      throw hookError(r, vmsd, "post_load", e);
    }
  }
}

async function loadElement(
  r: QEMUFileReader,
  field: VMStateField,
  cur: unknown,
  where: string,
): Promise<unknown> {
  if (field.equal) typeName(field, where); // rejects "equal" on non-integer fields, as save does
  switch (field.type) {
    case "bool": {
      await r.need(1, where);
      const at = r.position;
      const b = r.get8();
      if (b > 1) throw r.error(`${where}: invalid bool value ${b}`, at);
      return b === 1;
    }
    case "buffer": {
      const size = bufferSize(field, where);
      await r.need(size, where);
      // Fill the existing buffer, as QEMU loads into device memory in place.
      if (cur instanceof Uint8Array && cur.length === size) {
        r.copyTo(cur);
        return cur;
      }
      return r.getBytes(size);
    }
    case "struct": {
      const child = structOf(field, where);
      const obj = isObj(cur) ? cur : {};
      await loadVmsd(r, child, obj, child.versionId);
      return obj;
    }
    default: {
      const t = field.type;
      await r.need(INTS[t].width, where);
      const at = r.position;
      const raw = getInt(r, t);
      const v = Number(raw);
      if (!Number.isSafeInteger(v)) throw r.error(`${where}: ${t} value ${raw} is beyond a safe integer`, at);
      if (field.equal && v !== cur) {
        throw r.error(`${where}: incoming value ${v} differs from the current value ${String(cur)}`, at);
      }
      return v;
    }
  }
}

/** Waits for `n` bytes; false if the stream ends first. */
async function arrives(r: QEMUFileReader, n: number): Promise<boolean> {
  try {
    await r.need(n, "");
    return true;
  } catch (e) {
    if (e instanceof StreamError) return false;
    throw e;
  }
}

async function loadSubsections(r: QEMUFileReader, vmsd: Vmsd, state: Obj): Promise<void> {
  const prefix = new TextEncoder().encode(`${vmsd.name}/`);
  for (;;) {
    // Something (a footer, EOF, a parent's field) always follows, so running out here is truncation.
    await r.need(1, `${vmsd.name} subsections`);
    if (r.peek(1)[0] !== QEMU_VM_SUBSECTION) return;
    await r.need(2, `${vmsd.name} subsection name length`);
    const len = r.peek(2)[1];
    // Like QEMU's peek: a 0x05 not followed by "<name>/..." belongs to whatever is read next.
    if (len <= prefix.length) return;
    if (!await arrives(r, 2 + len)) {
      const got = r.peek(r.available).subarray(2, 2 + prefix.length);
      if (got.some((b, i) => b !== prefix[i])) return;
      await r.need(2 + len, `${vmsd.name} subsection name`); // throws: our subsection was cut short
    }
    const raw = r.peek(2 + len).subarray(2);
    if (raw.subarray(0, prefix.length).some((b, i) => b !== prefix[i])) return;
    const name = new TextDecoder().decode(raw);
    const sub = vmsd.subsections?.find((s) => s.name === name);
    if (!sub) throw r.error(`VM subsection '${name}' in '${vmsd.name}' does not exist`);
    r.skip(2 + len);
    await r.need(4, `${name} version_id`);
    await loadVmsd(r, sub, state, r.getBe32());
  }
}
