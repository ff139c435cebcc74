/**
 * The integers of a vmstate on the wire (the int VMStateInfos of QEMU's migration/vmstate-types.c):
 * big-endian, signed ones in two's complement, no tags. Both the description-driven walker (vmstate.ts)
 * and the vmdesc reader (vmdesc.ts) read and write them through here.
 */
import type { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";

/**
 * Marks a subsection after its parent's fields. Defined here, below both the walker and the vmdesc
 * reader, so that neither imports the other; savevm.ts re-exports it with the other section types.
 */
export const QEMU_VM_SUBSECTION = 0x05;

export const INTS = {
  uint8: { width: 1, signed: false },
  uint16: { width: 2, signed: false },
  uint32: { width: 4, signed: false },
  uint64: { width: 8, signed: false },
  int8: { width: 1, signed: true },
  int16: { width: 2, signed: true },
  int32: { width: 4, signed: true },
  int64: { width: 8, signed: true },
} as const;
export type IntType = keyof typeof INTS;

const TWO32 = 0x1_0000_0000;

export function isIntType(t: string): t is IntType {
  return Object.hasOwn(INTS, t);
}

export function intFits(t: IntType, v: number): boolean {
  if (!Number.isSafeInteger(v)) return false;
  const { width, signed } = INTS[t];
  if (width === 8) return signed || v >= 0;
  const span = 2 ** (width * 8);
  return signed ? v >= -span / 2 && v < span / 2 : v >= 0 && v < span;
}

export function putInt(w: QEMUFileWriter, t: IntType, v: number): void {
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
export function getInt(r: QEMUFileReader, t: IntType): number | bigint {
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
