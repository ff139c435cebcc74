/**
 * VMState: QEMU's table-driven device state format (migration/vmstate.c). A description lists fields in
 * order and the wire carries only their big-endian values, with no tags or lengths, so a reader needs the
 * same description, or the vmdesc JSON the source appends after EOF, to parse it. Optional data travels in
 * subsections: u8 0x05, u8 name length, name ("parent/child"), be32 version_id, then the subsection's
 * own vmstate, all after the parent's fields.
 */
import { errorMessage } from "./error.ts";
import { type QEMUFileReader, type QEMUFileWriter, StreamError } from "./qemu_file.ts";

export type VMStateFieldType =
  | "uint8"
  | "uint16"
  | "uint32"
  | "uint64"
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "bool"
  | "buffer"
  | "struct";

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

/** One field entry of the vmdesc JSON, keys in QEMU's order. */
export interface VmdescField {
  name: string;
  array_len?: number;
  index?: number;
  type: string;
  struct?: VmdescObject;
  /** Bytes written for one element. */
  size: number;
}

/** A vmsd as described in the vmdesc JSON (a struct, a subsection, or "configuration"). */
export interface VmdescObject {
  vmsd_name: string;
  version: number;
  fields: VmdescField[];
  subsections?: VmdescObject[];
}

/** One element of the vmdesc "devices" array. */
export interface VmdescDevice extends VmdescObject {
  name: string;
  instance_id: number;
}

/** What parseWithVmdesc returns. */
export type VmJson = number | string | boolean | VmJson[] | { [key: string]: VmJson };
export type VmJsonObject = { [key: string]: VmJson };

export const QEMU_VM_SUBSECTION = 0x05;

type Obj = Record<string, unknown>;
type Vmsd = VMStateDescription<Obj>;

const INTS = {
  uint8: { width: 1, signed: false },
  uint16: { width: 2, signed: false },
  uint32: { width: 4, signed: false },
  uint64: { width: 8, signed: false },
  int8: { width: 1, signed: true },
  int16: { width: 2, signed: true },
  int32: { width: 4, signed: true },
  int64: { width: 8, signed: true },
} as const;
type IntType = keyof typeof INTS;

const TWO32 = 0x1_0000_0000;

function isIntType(t: string): t is IntType {
  return Object.hasOwn(INTS, t);
}

function intFits(t: IntType, v: number): boolean {
  if (!Number.isSafeInteger(v)) return false;
  const { width, signed } = INTS[t];
  if (width === 8) return signed || v >= 0;
  const span = 2 ** (width * 8);
  return signed ? v >= -span / 2 && v < span / 2 : v >= 0 && v < span;
}

function putInt(w: QEMUFileWriter, t: IntType, v: number): void {
  switch (INTS[t].width) {
    case 1:
      w.put8(v & 0xff);
      break;
    case 2:
      w.putBe16(v & 0xffff);
      break;
    case 4:
      w.putBe32(v >>> 0);
      break;
    default: {
      // Two's complement split; exact for every safe integer.
      const hi = Math.floor(v / TWO32);
      w.putBe32(hi >>> 0);
      w.putBe32(v - hi * TWO32);
    }
  }
}

/** Reads a buffered integer; 64-bit values come back as bigint so callers decide what "too big" means. */
function getInt(r: QEMUFileReader, t: IntType): number | bigint {
  const { width, signed } = INTS[t];
  switch (width) {
    case 1: {
      const b = r.get8();
      return signed ? (b << 24) >> 24 : b;
    }
    case 2: {
      const v = r.getBe16();
      return signed ? (v << 16) >> 16 : v;
    }
    case 4: {
      const v = r.getBe32();
      return signed ? v | 0 : v;
    }
    default: {
      const [hi, lo] = r.getBe64Parts();
      const u = (BigInt(hi) << 32n) | BigInt(lo);
      return signed ? BigInt.asIntN(64, u) : u;
    }
  }
}

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

interface Written {
  struct?: VmdescObject;
  size: number;
}

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

/** The vmdesc "devices" element for a device saved with saveState, keys in QEMU's order. */
export function vmdescDevice(idstr: string, instanceId: number, desc: VmdescObject): VmdescDevice {
  return { name: idstr, instance_id: instanceId, ...desc };
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

// ---------------------------------------------------------------------------------------------------
// Schema-driven parsing (analyze-migration.py's VMSDFieldStruct)

/**
 * Decodes one vmstate using only its vmdesc description: integers by type and size (64-bit values
 * beyond a safe integer as decimal strings), bool, struct recursively, anything else as `size` raw bytes
 * in hex; arrays become lists; each listed subsection (it must be on the wire) lands under its name.
 */
export async function parseWithVmdesc(r: QEMUFileReader, desc: VmdescObject): Promise<VmJsonObject> {
  const label = desc.vmsd_name ?? "(old-style device)";
  if (!Array.isArray(desc.fields)) throw r.error(`vmdesc for ${label} has no fields`);
  const out: VmJsonObject = {};
  for (const f of desc.fields) {
    const count = f.array_len ?? 1;
    for (let i = 0; i < count; i++) {
      const index = f.array_len !== undefined ? i : f.index;
      const v = await parseField(r, f, `${label}.${f.name}${index === undefined ? "" : `[${index}]`}`);
      if (index === undefined) {
        out[f.name] = v;
        continue;
      }
      const list = out[f.name];
      if (Array.isArray(list)) list.push(v);
      else out[f.name] = [v];
    }
  }
  for (const sub of desc.subsections ?? []) {
    await r.need(1, `${label} subsection ${sub.vmsd_name}`);
    const at = r.position;
    if (r.get8() !== QEMU_VM_SUBSECTION) throw r.error(`${label}: subsection ${sub.vmsd_name} not found`, at);
    const name = await r.getCountedString(`${label} subsection name`);
    if (name !== sub.vmsd_name) {
      throw r.error(`${label}: expected subsection ${sub.vmsd_name}, found ${name}`, at);
    }
    await r.need(4, `${name} version_id`);
    const version = r.getBe32();
    if (version !== sub.version) {
      throw r.error(`${name}: subsection version_id ${version} differs from the vmdesc's ${sub.version}`, at);
    }
    out[name] = await parseWithVmdesc(r, sub);
  }
  return out;
}

/**
 * VMStateInfo names that are plain big-endian integers on the wire: "int32 le" (VMSTATE_INT32_POSITIVE_LE,
 * whose "le" means the loader checks less-or-equal) and "timer" (a QEMUTimer's be64 expire time, -1 when
 * not armed).
 */
const INT_ALIASES: Record<string, IntType> = { "int32 le": "int32", timer: "int64" };

async function parseField(r: QEMUFileReader, f: VmdescField, where: string): Promise<VmJson> {
  const named = f.type.endsWith(" equal") ? f.type.slice(0, -" equal".length) : f.type;
  const base = Object.hasOwn(INT_ALIASES, named) ? INT_ALIASES[named] : named;
  if (base === "struct") {
    if (!f.struct) throw r.error(`${where}: struct field without a "struct" description`);
    return await parseWithVmdesc(r, f.struct);
  }
  if (base === "capability") {
    // u8 length + name: variable-sized, so the vmdesc "size" (of the first element) does not apply.
    return await r.getCountedString(where);
  }
  const size = f.size;
  if (!Number.isInteger(size) || size < 0) throw r.error(`${where}: bad size ${String(size)} in vmdesc`);
  await r.need(size, where);
  const at = r.position;
  if (base === "bool" && size === 1) {
    const b = r.get8();
    if (b > 1) throw r.error(`${where}: invalid bool value ${b}`, at);
    return b === 1;
  }
  if (isIntType(base) && INTS[base].width === size) {
    const v = getInt(r, base);
    return typeof v === "number" || (v <= Number.MAX_SAFE_INTEGER && v >= Number.MIN_SAFE_INTEGER)
      ? Number(v)
      : v.toString();
  }
  return Array.from(r.getBytes(size), (b) => b.toString(16).padStart(2, "0")).join("");
}
