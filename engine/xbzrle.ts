/**
 * XBZRLE: XOR-based zero run length encoding of a page against the copy of it sent earlier.
 *
 * Wire form of an encoded page (research doc §2.8):
 *
 *     page  = zrun nzrun | zrun nzrun page
 *     zrun  = length                 (bytes unchanged since the cached copy)
 *     nzrun = length byte...         (that many bytes of the NEW page)
 *
 * Every length is a ULEB128 of one or two bytes, so no run exceeds 0x3fff and pages are at most 16 KiB.
 * The encoding starts with a zrun (0 only when the page starts with a change), ends with an nzrun (the
 * trailing unchanged bytes are not sent), and an unchanged page encodes to nothing at all.
 */

/** Largest value a one- or two-byte ULEB128 can carry. */
export const ULEB128_SMALL_MAX = 0x3fff;
/** Largest page the format can describe: beyond this a run length could need a third ULEB128 byte. */
export const XBZRLE_MAX_PAGE_SIZE = 0x4000;

/** A malformed encoded page, found while decoding. */
export class XbzrleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XbzrleError";
  }
}

/**
 * Writes `n` (0..0x3fff) at `out[pos]` as a ULEB128 of one or two bytes; returns the bytes written.
 * Throws RangeError on a value the small form cannot carry or when `out` has no room.
 */
export function uleb128EncodeSmall(out: Uint8Array, pos: number, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > ULEB128_SMALL_MAX) {
    throw new RangeError(`uleb128EncodeSmall: ${n} is outside 0..0x3fff`);
  }
  if (n < 0x80) {
    if (pos >= out.length) throw new RangeError(`uleb128EncodeSmall: no room at offset ${pos}`);
    out[pos] = n;
    return 1;
  }
  if (pos + 1 >= out.length) throw new RangeError(`uleb128EncodeSmall: no room at offset ${pos}`);
  out[pos] = (n & 0x7f) | 0x80;
  out[pos + 1] = n >>> 7;
  return 2;
}

/**
 * Reads a one- or two-byte ULEB128 at `buf[pos]`. A continuation bit on the second byte means the value
 * needs a third byte, which the format never uses, so that is an error rather than a longer read.
 * Non-canonical forms (0x80 0x00) are accepted, as a C decoder of the small form accepts them.
 */
export function uleb128DecodeSmall(buf: Uint8Array, pos: number): { value: number; size: number } {
  if (pos >= buf.length) throw new XbzrleError(`xbzrle: truncated input: no ULEB128 at input offset ${pos}`);
  const b0 = buf[pos];
  if ((b0 & 0x80) === 0) return { value: b0, size: 1 };
  if (pos + 1 >= buf.length) {
    throw new XbzrleError(`xbzrle: truncated input: ULEB128 at input offset ${pos} lacks its second byte`);
  }
  const b1 = buf[pos + 1];
  if (b1 & 0x80) throw new XbzrleError(`xbzrle: ULEB128 at input offset ${pos} is longer than 2 bytes`);
  return { value: (b0 & 0x7f) | (b1 << 7), size: 2 };
}

/** 32-bit views of both pages when both start on a 4-byte boundary, else null (byte-at-a-time only). */
function wordViews(a: Uint8Array, b: Uint8Array): [Uint32Array, Uint32Array] | null {
  if (((a.byteOffset | b.byteOffset) & 3) !== 0) return null;
  const words = a.length >>> 2;
  return [new Uint32Array(a.buffer, a.byteOffset, words), new Uint32Array(b.buffer, b.byteOffset, words)];
}

/**
 * Encodes `newPage` against `oldPage` into `out`; returns the encoded length, 0 if the pages are equal,
 * or -1 on overflow. `out.length` is the budget (the caller passes the page size: an encoding that does
 * not beat a raw page is useless).
 *
 * Runs are exact: every zrun stops at the first changed byte and every nzrun at the first unchanged one,
 * so the example of the research doc comes out byte for byte. Words are compared 32 bits at a time;
 * the byte scans only cover the unaligned head and the single word where a run ends.
 *
 * Overflow follows the source's accounting so the pages sent as XBZRLE versus raw match QEMU's: before
 * each run header two bytes must remain, and an nzrun's data must fit. An encoding may therefore end
 * exactly at `out.length`, and a one-byte header in the last byte of the budget still overflows.
 *
 * `newPage` must not change while encoding (the source encodes a private copy of guest memory): the
 * bytes compared and the bytes copied must be the same ones that later go into the cache.
 */
export function xbzrleEncode(oldPage: Uint8Array, newPage: Uint8Array, out: Uint8Array): number {
  const len = newPage.length;
  if (oldPage.length !== len) {
    throw new RangeError(`xbzrleEncode: old page is ${oldPage.length} bytes, new page ${len}`);
  }
  if (len > XBZRLE_MAX_PAGE_SIZE) {
    throw new RangeError(`xbzrleEncode: page of ${len} bytes exceeds the 16 KiB the format can describe`);
  }
  const dlen = out.length;
  const views = wordViews(oldPage, newPage);
  const ow = views?.[0];
  const nw = views?.[1];
  const wordEnd = views ? len & ~3 : 0;
  let i = 0;
  let d = 0;

  while (i < len) {
    // zrun: bytes up to a word boundary, whole equal words, then bytes to the first difference.
    const zStart = i;
    if (ow && nw) {
      while ((i & 3) !== 0 && i < len && oldPage[i] === newPage[i]) i++;
      if ((i & 3) === 0) {
        let w = i >>> 2;
        const we = wordEnd >>> 2;
        while (w < we && ow[w] === nw[w]) w++;
        i = w << 2;
      }
    }
    while (i < len && oldPage[i] === newPage[i]) i++;
    if (i === len) break; // the trailing zero run is not sent (and zStart === 0 means "unchanged": 0)

    if (d + 2 > dlen) return -1;
    d += uleb128EncodeSmall(out, d, i - zStart);

    // nzrun: bytes up to a word boundary, words whose XOR has no zero byte, then bytes to the first match.
    const nStart = i;
    if (ow && nw) {
      while ((i & 3) !== 0 && i < len && oldPage[i] !== newPage[i]) i++;
      if ((i & 3) === 0) {
        let w = i >>> 2;
        const we = wordEnd >>> 2;
        while (w < we) {
          const x = ow[w] ^ nw[w];
          // Classic "has a zero byte" test: nonzero exactly when some byte of x is 0 (an equal byte).
          if (((x - 0x01010101) & ~x & 0x80808080) !== 0) break;
          w++;
        }
        i = w << 2;
      }
    }
    while (i < len && oldPage[i] !== newPage[i]) i++;
    const nz = i - nStart;

    if (d + 2 > dlen) return -1;
    d += uleb128EncodeSmall(out, d, nz);
    if (d + nz > dlen) return -1;
    if (nz <= 16) {
      for (let k = 0; k < nz; k++) out[d + k] = newPage[nStart + k];
    } else {
      out.set(newPage.subarray(nStart, i), d);
    }
    d += nz;
  }
  return d;
}

/**
 * Applies an encoded page onto `page`, which must hold the destination's current copy: zruns skip bytes,
 * nzruns overwrite them. Returns the page offset after the last nzrun. Throws XbzrleError on malformed
 * input. Bytes of an nzrun that happen to equal the old ones are accepted (an encoder may include them).
 * On error `page` may already be partly updated, as in QEMU; the load fails as a whole anyway.
 */
export function xbzrleDecode(encoded: Uint8Array, page: Uint8Array): number {
  const slen = encoded.length;
  const dlen = page.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    // Every zrun is followed by an nzrun of at least one byte, so fewer than 2 bytes cannot be complete.
    if (slen - i < 2) {
      throw new XbzrleError(
        `xbzrle: truncated input: zrun at input offset ${i} needs at least 2 bytes, ${slen - i} left`,
      );
    }
    const z = uleb128DecodeSmall(encoded, i);
    if (z.value === 0 && i !== 0) {
      throw new XbzrleError(`xbzrle: zero-length zrun at input offset ${i} (only allowed at offset 0)`);
    }
    if (d + z.value > dlen) {
      throw new XbzrleError(
        `xbzrle: zrun of ${z.value} at page offset ${d} runs past the page end (${dlen})`,
      );
    }
    i += z.size;
    d += z.value;

    if (slen - i < 2) {
      throw new XbzrleError(
        `xbzrle: truncated input: nzrun at input offset ${i} needs at least 2 bytes, ${slen - i} left`,
      );
    }
    const nzAt = i;
    const nz = uleb128DecodeSmall(encoded, i);
    if (nz.value === 0) throw new XbzrleError(`xbzrle: zero-length nzrun at input offset ${nzAt}`);
    i += nz.size;
    const count = nz.value;
    if (d + count > dlen) {
      throw new XbzrleError(`xbzrle: nzrun of ${count} at page offset ${d} runs past the page end (${dlen})`);
    }
    if (i + count > slen) {
      throw new XbzrleError(
        `xbzrle: nzrun of ${count} at input offset ${nzAt} runs past the input end (${slen})`,
      );
    }
    if (count <= 16) {
      for (let k = 0; k < count; k++) page[d + k] = encoded[i + k];
    } else {
      page.set(encoded.subarray(i, i + count), d);
    }
    d += count;
    i += count;
  }
  return d;
}
