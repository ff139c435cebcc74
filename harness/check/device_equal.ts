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
