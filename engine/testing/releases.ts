/**
 * Older releases of the model's devices, for cross-version migration: `x-test-release` makes a side
 * save and load its devices as an earlier release of the engine did, the way upstream's CI migrates
 * between the previous QEMU release and this one (QTEST_QEMU_BINARY_SRC/_DST naming an older binary).
 * A release is told by the devices it differs in: the version their description had then (a field
 * added in a later version, VMSTATE_*_V, did not exist yet) and the subsections it had (a subsection
 * added later is unknown to it, so it refuses one that arrives). The devices' state objects and the
 * guest stay as they are: only what goes on the wire and what is accepted from it change.
 */
import type { Device } from "../guest/devices/device.ts";
import type { Machine } from "../guest/machine.ts";
import type { VMStateDescription, VMStateField } from "../vmstate.ts";

/** How one device's description differed in an older release. */
export interface OlderDevice {
  /** Its version_id then (fields added in later versions are left out); absent: the same as now. */
  version?: number;
  /** The subsections it had then, by name; absent: the same as now. */
  subsections?: readonly string[];
}

export interface OlderRelease {
  /** What this release is, in one line. */
  what: string;
  /** By device idstr. */
  devices: Readonly<Record<string, OlderDevice>>;
}

export const OLDER_RELEASES = {
  "before-serial-tx": {
    what: "the serial's transmit accounting is not migrated yet: no serial/tx subsection, the same " +
      "device versions as now",
    devices: { serial: { subsections: [] } },
  },
  "serial-v2-timer-v1": {
    what: "serial version 2 (before fcr), migtest-timer version 1 (before period_ns), no serial/tx " +
      "subsection",
    devices: { serial: { version: 2, subsections: [] }, "migtest-timer": { version: 1 } },
  },
  "serial-v1": {
    what: "serial version 1 (before the divisor latch), which the serial no longer loads " +
      "(minimum_version_id 2), migtest-timer version 1, no serial/tx subsection",
    devices: { serial: { version: 1, subsections: [] }, "migtest-timer": { version: 1 } },
  },
} as const satisfies Record<string, OlderRelease>;

export type ReleaseName = keyof typeof OLDER_RELEASES;
export const RELEASE_NAMES = Object.keys(OLDER_RELEASES) as readonly ReleaseName[];

export function isRelease(name: string): name is ReleaseName {
  return Object.hasOwn(OLDER_RELEASES, name);
}

/** A field this side's release does not have, by device key ("idstr/instance") and field name. */
export interface LackedField {
  device: string;
  field: string;
  /** Where it came in: "serial version 3", "subsection serial/tx". */
  since: string;
}

type AnyVmsd = VMStateDescription<Record<string, unknown>>;

function fieldNames(fields: readonly VMStateField[]): string[] {
  return [...new Set(fields.map((f) => f.name))];
}

/** `vmsd` as `older` describes it, and the fields left out of it (with where each came in). */
export function olderDescription(
  vmsd: AnyVmsd,
  older: OlderDevice,
): { vmsd: AnyVmsd; lacks: { field: string; since: string }[] } {
  const version = older.version ?? vmsd.versionId;
  if (version > vmsd.versionId) throw new Error(`${vmsd.name}: version ${version} is not older`);
  const lacks: { field: string; since: string }[] = [];
  const fields = vmsd.fields.filter((f) => {
    const had = (f.versionId ?? 0) <= version;
    if (!had) lacks.push({ field: f.name, since: `${vmsd.name} version ${f.versionId}` });
    return had;
  });
  let subsections = vmsd.subsections;
  if (older.subsections !== undefined) {
    const keep = older.subsections;
    subsections = vmsd.subsections?.filter((s) => {
      if (keep.includes(s.name)) return true;
      for (const field of fieldNames(s.fields)) lacks.push({ field, since: `subsection ${s.name}` });
      return false;
    });
  }
  return {
    vmsd: {
      ...vmsd,
      versionId: version,
      minimumVersionId: Math.min(vmsd.minimumVersionId, version),
      fields,
      subsections,
    },
    lacks,
  };
}

const applied = new WeakSet<object>();

/**
 * Makes `machine`'s devices those of `release` (once per machine, before it migrates) and returns the
 * fields the release does not have: a destination keeps its own value of each one it does not receive.
 */
export function applyRelease(machine: Pick<Machine, "devices">, release: ReleaseName): LackedField[] {
  if (applied.has(machine)) throw new Error("a release is applied once, before the side migrates");
  applied.add(machine);
  const spec: OlderRelease = OLDER_RELEASES[release];
  const out: LackedField[] = [];
  machine.devices.forEach((d, i) => {
    const older = spec.devices[d.idstr];
    if (!older) return;
    const { vmsd, lacks } = olderDescription(d.vmsd, older);
    const device: Device = {
      idstr: d.idstr,
      instanceId: d.instanceId,
      vmsd,
      state: d.state,
      reset: () => d.reset(),
    };
    machine.devices[i] = device;
    for (const l of lacks) out.push({ device: `${d.idstr}/${d.instanceId}`, ...l });
  });
  return out;
}
