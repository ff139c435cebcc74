/**
 * Per-page digests of guest RAM (and later the COLO cache) for the harness's equality checks.
 *
 * Two 32-bit lanes per page. Lane A is a polynomial hash over 32-bit words with an odd multiplier, so
 * any change confined to one word (in particular any single wrong byte) always changes it: the delta is
 * multiplied by an odd power, which is invertible mod 2^32. Lane B mixes every word (murmur-style) so
 * that multi-word differences are caught with overwhelming probability.
 */
export const DIGEST_BYTES = 8;

export function pageDigests(mem: Uint8Array, pageSize: number): Uint8Array {
  const pages = Math.floor(mem.length / pageSize);
  const out = new Uint8Array(pages * DIGEST_BYTES);
  const dv = new DataView(out.buffer);
  const words = new Uint32Array(mem.buffer, mem.byteOffset, mem.length >>> 2);
  const perPage = pageSize >>> 2;
  for (let p = 0; p < pages; p++) {
    let a = 0;
    let b = 0x9747b28c;
    const base = p * perPage;
    for (let i = 0; i < perPage; i++) {
      const w = words[base + i];
      a = (Math.imul(a, 31) + w) | 0;
      let k = Math.imul(w ^ i, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      b ^= Math.imul(k, 0x1b873593);
      b = (b << 13) | (b >>> 19);
      b = (Math.imul(b, 5) + 0xe6546b64) | 0;
    }
    b ^= b >>> 16;
    b = Math.imul(b, 0x85ebca6b);
    b ^= b >>> 13;
    dv.setUint32(p * DIGEST_BYTES, a >>> 0);
    dv.setUint32(p * DIGEST_BYTES + 4, b >>> 0);
  }
  return out;
}
