/**
 * A device the model does not have, loaded as QEMU describes it: its entry in a QEMU stream's vmdesc.
 * QEMU's device sections carry no self-description, so a model destination of a QEMU source loads them
 * through QEMU's own description of the machine (the qemu-to-engine pair reads it from a twin of the
 * source). Integers of up to 4 bytes and bools keep their values; anything else (8-byte integers, which a
 * timer's expiry in ns outgrows as a JS number, buffers, pointers) its bytes. Subsections are taken when
 * the stream has them and their fields kept under the subsection's name.
 */
import { INTS, isIntType } from "../../vmstate_types.ts";
import type { VMStateDescription, VMStateField } from "../../vmstate.ts";
import type { VmdescDevice, VmdescField, VmdescObject } from "../../vmdesc.ts";
import type { Device } from "./device.ts";

/** VMStateInfo names that are plain integers on the wire (vmdesc.ts reads them the same way). */
const INT_ALIASES: Record<string, string> = { "int32 le": "int32", timer: "int64" };

function fieldOf(f: VmdescField, prefix: string): VMStateField {
  const named = f.type.endsWith(" equal") ? f.type.slice(0, -" equal".length) : f.type;
  const base = INT_ALIASES[named] ?? named;
  const name = `${prefix}${f.name}${f.index === undefined ? "" : `[${f.index}]`}`;
  const arrayLen = f.array_len === undefined ? {} : { arrayLen: f.array_len };
  if (base === "struct") {
    if (!f.struct) throw new Error(`vmdesc: struct field ${f.name} without a "struct" description`);
    return { name, type: "struct", struct: vmsdOf(f.struct), ...arrayLen };
  }
  if (base === "bool" && f.size === 1) return { name, type: "bool", ...arrayLen };
  if (isIntType(base) && INTS[base].width === f.size && f.size <= 4) return { name, type: base, ...arrayLen };
  if (!Number.isInteger(f.size) || f.size < 0) throw new Error(`vmdesc: field ${f.name} has size ${f.size}`);
  return { name, type: "buffer", size: f.size, ...arrayLen };
}

/** The model's description of a vmstate QEMU described (a device, a struct, a subsection). */
export function vmsdOf(o: VmdescObject, prefix = ""): VMStateDescription {
  if (!Array.isArray(o.fields)) throw new Error(`vmdesc: ${o.vmsd_name} has no fields`);
  return {
    name: o.vmsd_name,
    versionId: o.version,
    // QEMU's stream is the same binary's as its description: only that version is known here.
    minimumVersionId: o.version,
    fields: o.fields.map((f) => fieldOf(f, prefix)),
    subsections: o.subsections?.map((s) => ({ ...vmsdOf(s, `${s.vmsd_name}.`), needed: () => false })),
  };
}

export class DescribedDevice implements Device {
  readonly idstr: string;
  readonly instanceId: number;
  readonly vmsd: VMStateDescription;
  readonly state: Record<string, unknown> = {};

  constructor(desc: VmdescDevice) {
    this.idstr = desc.name;
    this.instanceId = desc.instance_id;
    this.vmsd = vmsdOf(desc);
  }

  reset(): void {
    for (const k of Object.keys(this.state)) delete this.state[k];
  }
}
