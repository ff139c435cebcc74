/** QEMU's UUID text form (qemu_uuid_parse / qemu_uuid_unparse), for -uuid, QMP and the streams. */

export function uuidToString(u: Uint8Array): string {
  const h = Array.from(u, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function parseUuid(s: string): Uint8Array {
  const hex = s.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex) || !/^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i.test(s)) {
    throw new Error(`Fail to parse UUID string '${s}'`);
  }
  return Uint8Array.from(hex.match(/../g)!, (x) => parseInt(x, 16));
}
