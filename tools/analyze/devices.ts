/**
 * Device state decoded through the vmdesc alone: device (FULL) sections carry no self-description on the
 * wire, so each is matched to its vmdesc entry (by name + instance_id, in stream order) and decoded field
 * by field from that entry, as analyze-migration.py does. The engine's vmstate loader is not involved.
 */
import { type QEMUFileReader, StreamError } from "../../engine/qemu_file.ts";
import { parseWithVmdesc, type VmdescObject, type VmJsonObject } from "../../engine/vmdesc.ts";
import { isRecord, type VmdescScan } from "./vmdesc.ts";
import { errorMessage } from "../../engine/error.ts";

/** What the stream parser knows of a FULL section when its body starts. */
export interface DeviceSection {
  idstr: string;
  instanceId: number;
  sectionId: number;
  versionId: number;
}

export class DeviceDecoder {
  /** Keyed "idstr (instance)", with " #2", " #3" for repeats (what `--dump state` prints). */
  readonly devices: Record<string, VmJsonObject> = {};
  /** vmdesc entries already matched, so a second section with the same name takes the next one. */
  readonly #used = new Set<number>();

  constructor(private readonly scan: VmdescScan, private readonly warnings: string[]) {}

  /** The body of a device section starting at `at` (the section's type byte). */
  async section(r: QEMUFileReader, s: DeviceSection, at: number): Promise<void> {
    const { idstr, instanceId: instance, sectionId: id } = s;
    const found = this.scan.found;
    if (!found) {
      const t = this.scan.truncated;
      const why = t
        ? `the vmdesc at offset ${t.offset} is truncated (announces ${t.announced} bytes, ${t.present} present)`
        : "the file has no vmdesc";
      throw r.error(
        `Cannot decode device section '${idstr}' instance ${instance} (section ${id}): ${why}, and device ` +
          `sections carry no self-description`,
        at,
      );
    }
    const index = found.json.devices.findIndex((d, i) =>
      !this.#used.has(i) && isRecord(d) && d.name === idstr && d.instance_id === instance
    );
    if (index < 0) {
      throw r.error(
        `Section '${idstr}' instance ${instance} (section ${id}) is not described by the vmdesc`,
        at,
      );
    }
    this.#used.add(index);
    const desc = found.json.devices[index];
    if (typeof desc.version === "number" && desc.version !== s.versionId) {
      this.warnings.push(
        `section '${idstr}' (${instance}) has version ${s.versionId} but its vmdesc says ${desc.version}`,
      );
    }
    let key = `${idstr} (${instance})`;
    for (let n = 2; Object.hasOwn(this.devices, key); n++) key = `${idstr} (${instance}) #${n}`;
    this.devices[key] = await decode(r, desc, `'${idstr}' instance ${instance}`, at);
  }

  /**
   * A configuration subsection this tool does not know by name, decoded from the vmdesc's "configuration"
   * description. Without one it is what the engine's loader calls it: a subsection that does not exist.
   */
  async configurationSubsection(
    r: QEMUFileReader,
    name: string,
    version: number,
    at: number,
  ): Promise<VmJsonObject> {
    const desc = this.scan.found?.json.configuration?.subsections?.find((d) => d.vmsd_name === name);
    if (!desc) throw r.error(`VM subsection '${name}' in 'configuration' does not exist`, at);
    if (desc.version !== version) {
      throw r.error(`${name}: version_id ${version} differs from the vmdesc's ${desc.version}`, at);
    }
    return await decode(r, desc, name, at);
  }
}

/** A vmdesc entry that does not fit the stream is a StreamError; one that is itself broken says so. */
async function decode(
  r: QEMUFileReader,
  desc: VmdescObject,
  what: string,
  at: number,
): Promise<VmJsonObject> {
  try {
    return await parseWithVmdesc(r, desc);
  } catch (e) {
    if (e instanceof StreamError) throw e;
    throw r.error(`vmdesc entry for ${what} is malformed: ${errorMessage(e)}`, at);
  }
}
