/** Field-by-field comparison of device state (x-test-device-state) between two engines. */
export function diffState(
  a: unknown,
  b: unknown,
  path: string,
  out: string[],
  names: [string, string],
): void {
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      diffState(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
        out,
        names,
      );
    }
    return;
  }
  if (a !== b) {
    out.push(`${path}: ${names[0]} ${JSON.stringify(a)}, ${names[1]} ${JSON.stringify(b)}`);
  }
}

export function compareDeviceState(a: unknown, b: unknown, names: [string, string]): string[] {
  const out: string[] = [];
  diffState(a, b, "", out, names);
  return out;
}

/**
 * A device field a world's devices legitimately hold differently on a source and its destination (host
 * clock, stale bookkeeping): left out of the comparison by name, with why, and said in the log.
 */
export interface UncomparedField {
  /** The device key ("idstr/instance"). */
  device: RegExp;
  /** The field's dotted path inside the device (subsections nest: "bmdma.migration_retry_unit"). */
  field: RegExp;
  /** Only these bytes of a hex-string field (e.g. the RTC's clock registers inside cmos_data). */
  bytes?: readonly number[];
  why: string;
}

/**
 * `state` without the fields `skip` names (bytes of a hex string masked as "--"), and one line per
 * field left out, naming it and why.
 */
export function withoutFields(
  state: Record<string, Record<string, unknown>>,
  skip: readonly UncomparedField[],
): { state: Record<string, Record<string, unknown>>; skipped: string[] } {
  const skipped = new Set<string>();
  const walk = (device: string, v: unknown, path: string): unknown => {
    const rule = path ? skip.find((s) => s.device.test(device) && s.field.test(path)) : undefined;
    if (rule) {
      const what = rule.bytes ? `${device} ${path} bytes ${rule.bytes.join(",")}` : `${device} ${path}`;
      skipped.add(`${what}: ${rule.why}`);
      if (!rule.bytes || typeof v !== "string") return undefined;
      const pairs = v.match(/../g) ?? [];
      for (const b of rule.bytes) if (b < pairs.length) pairs[b] = "--";
      return pairs.join("");
    }
    return typeof v === "object" && v !== null ? fieldsOf(device, v, path) : v;
  };
  // An array comes out as an object keyed by index: both sides go through here, so they compare alike.
  const fieldsOf = (device: string, v: object, path: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const y = walk(device, x, path ? `${path}.${k}` : k);
      if (y !== undefined) out[k] = y;
    }
    return out;
  };
  const out: Record<string, Record<string, unknown>> = {};
  for (const [device, fields] of Object.entries(state)) out[device] = fieldsOf(device, fields, "");
  return { state: out, skipped: [...skipped].sort() };
}

/** A rule that leaves out exactly one top-level field of one device ("idstr/instance"), and says why. */
export function exactField(device: string, field: string, why: string): UncomparedField {
  const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}$`);
  return { device: exactly(device), field: exactly(field), why };
}

/**
 * The named top-level fields whose value differs between `before` and `after` (one side's device state
 * at two moments): one line per field, naming it, where it came from, and both values.
 */
export function changedFields(
  fields: readonly { device: string; field: string; since: string }[],
  before: Record<string, Record<string, unknown>>,
  after: Record<string, Record<string, unknown>>,
): string[] {
  return fields.flatMap((l) => {
    const was = JSON.stringify(before[l.device]?.[l.field]);
    const now = JSON.stringify(after[l.device]?.[l.field]);
    return was === now ? [] : [`${l.device} ${l.field} (${l.since}): ${was} before, ${now} after`];
  });
}
