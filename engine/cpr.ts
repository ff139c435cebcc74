/**
 * CPR state (migration/cpr.c, cpr-transfer.c; QEMU 10.0): what cpr-transfer sends on the cpr channel
 * before the migration itself: the descriptors behind guest RAM, so that the new QEMU maps the old one's
 * memory instead of receiving it. Layout, as QEMU 10.0.2 writes it (read off its cpr socket): be32 magic
 * "QCPR", be32 version 1, then vmstate_cpr_state's fds list — per entry a 0x01 marker, be32 name length
 * (with its NUL), the name and NUL, be32 id, and one 0x20 byte the descriptor rides with (VMSTATE_FD over
 * SCM_RIGHTS) — and 0x00 after the last. QEMU inserts at the list's head, so the last block comes first.
 */
export const QEMU_CPR_FILE_MAGIC = 0x51435052;
export const QEMU_CPR_FILE_VERSION = 1;
const FD_MARKER = 0x20;

/** One preserved descriptor (CprFd): a RAM block's memory, named by its block. */
export interface CprFd {
  name: string;
  id: number;
  fd: number;
}

/** The state's bytes, the list in the order given; the descriptors travel with them in that order. */
export function encodeCprState(fds: readonly CprFd[]): Uint8Array {
  const parts: number[] = [];
  const be32 = (v: number) => parts.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  be32(QEMU_CPR_FILE_MAGIC);
  be32(QEMU_CPR_FILE_VERSION);
  for (const f of fds) {
    const name = new TextEncoder().encode(f.name);
    parts.push(1);
    be32(name.length + 1);
    parts.push(...name, 0);
    be32(f.id);
    parts.push(FD_MARKER);
  }
  parts.push(0);
  return new Uint8Array(parts);
}

/** Parses a CPR state; `fds` are the descriptors that came with it, in order. Throws what is wrong. */
export function decodeCprState(bytes: Uint8Array, fds: readonly number[]): CprFd[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number, what: string) => {
    if (at + n > bytes.length) throw new Error(`cpr state: truncated in ${what} at offset ${at}`);
  };
  need(8, "the header");
  const magic = v.getUint32(0);
  if (magic !== QEMU_CPR_FILE_MAGIC) {
    throw new Error(`Not a migration stream (bad magic ${magic.toString(16)})`);
  }
  const version = v.getUint32(4);
  if (version !== QEMU_CPR_FILE_VERSION) throw new Error(`Unsupported migration stream version ${version}`);
  at = 8;
  const out: CprFd[] = [];
  while (true) {
    need(1, "a list marker");
    const marker = bytes[at++];
    if (marker === 0) break;
    if (marker !== 1) {
      throw new Error(`cpr state: list marker ${marker} at offset ${at - 1} (expected 0 or 1)`);
    }
    need(4, "a name length");
    const len = v.getUint32(at);
    at += 4;
    need(len + 5, "an entry");
    if (len === 0 || bytes[at + len - 1] !== 0) {
      throw new Error(`cpr state: name at offset ${at} is not NUL-terminated`);
    }
    const name = new TextDecoder().decode(bytes.subarray(at, at + len - 1));
    at += len;
    const id = v.getInt32(at);
    at += 4;
    if (bytes[at++] !== FD_MARKER) throw new Error(`cpr state: no descriptor marker for ${name}`);
    const fd = fds[out.length];
    if (fd === undefined) throw new Error(`cpr state: no descriptor came with ${name}`);
    out.push({ name, id, fd });
  }
  if (at !== bytes.length) throw new Error(`cpr state: ${bytes.length - at} bytes after the list`);
  if (fds.length !== out.length) {
    throw new Error(`cpr state: ${fds.length} descriptors for ${out.length} entries`);
  }
  return out;
}

/** The cpr channel, as a side's host provides it (unix sockets carrying descriptors). */
export interface CprChannel {
  /**
   * The source: connects to `path` and sends the state with its descriptors, then closes its writing
   * half; resolves once sent, with a promise of the target's hang-up (its main channel is ready then).
   */
  send(path: string, bytes: Uint8Array, fds: number[]): Promise<{ hangup: Promise<void> }>;
}
