/**
 * The vmdesc: the JSON description of every device's vmstate that the source appends after QEMU_VM_EOF
 * (QEMU_VM_VMDESCRIPTION). Device sections carry no self-description, so with it alone a reader can
 * decode them, as scripts/analyze-migration.py does (its VMSDFieldStruct); the walker (vmstate.ts) writes
 * it while it saves.
 */
import type { QEMUFileReader } from "./qemu_file.ts";
import { getInt, INTS, type IntType, isIntType, QEMU_VM_SUBSECTION } from "./vmstate_types.ts";

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

/** The vmdesc "devices" element for a device saved with saveState, keys in QEMU's order. */
export function vmdescDevice(idstr: string, instanceId: number, desc: VmdescObject): VmdescDevice {
  return { name: idstr, instance_id: instanceId, ...desc };
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
