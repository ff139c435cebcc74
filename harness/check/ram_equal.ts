/**
 * Exact page-by-page equality of two guests' RAM: per-page digests from both engines, then raw reads of
 * the first differing pages so the report names block, page index, offset and the first differing bytes.
 */
export interface DigestReply {
  "page-size": number;
  blocks: { idstr: string; pages: number; digests: string }[];
}

export interface RamEqualReport {
  /** Number of pages that differ (over all blocks). */
  mismatches: number;
  lines: string[];
}

const DIGEST = 8;
const SHOWN = 5;

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** Describes where two copies of one page differ. */
export function describePageDifference(
  idstr: string,
  page: number,
  pageSize: number,
  a: Uint8Array,
  b: Uint8Array,
  names: [string, string],
): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  let last = a.length - 1;
  while (last > i && a[last] === b[last]) last--;
  let count = 0;
  for (let j = i; j <= last; j++) if (a[j] !== b[j]) count++;
  const from = i - (i % 16);
  const to = Math.min(a.length, from + 16);
  const off = page * pageSize + i;
  return `block ${idstr} page ${page} (block offset 0x${
    (page * pageSize).toString(16)
  }): ${count} byte(s) differ, ` +
    `first at page offset 0x${i.toString(16)} (block offset 0x${off.toString(16)})\n` +
    `    ${names[0]} @+0x${from.toString(16)}: ${hex(a.subarray(from, to))}\n` +
    `    ${names[1]} @+0x${from.toString(16)}: ${hex(b.subarray(from, to))}`;
}

/**
 * Where a guest's RAM is read from: the engine's x-test commands, QEMU's pmemsave, a COLO cache, or a
 * snapshot of digests taken earlier (which has no pages to show: its differences are named, not dumped).
 */
export interface RamSource {
  name: string;
  digests(): Promise<DigestReply>;
  readPage?(idstr: string, offset: number, size: number): Promise<Uint8Array>;
}

export async function compareRam(a: RamSource, b: RamSource): Promise<RamEqualReport> {
  const [da, db] = await Promise.all([a.digests(), b.digests()]);
  const names: [string, string] = [a.name, b.name];
  const lines: string[] = [];
  let mismatches = 0;
  const blocksB = new Map(db.blocks.map((x) => [x.idstr, x]));
  for (const ba of da.blocks) {
    const bb = blocksB.get(ba.idstr);
    if (!bb) {
      lines.push(`block ${ba.idstr} exists on ${names[0]} but not on ${names[1]}`);
      mismatches += ba.pages;
      continue;
    }
    if (bb.pages !== ba.pages) {
      lines.push(`block ${ba.idstr}: ${names[0]} has ${ba.pages} pages, ${names[1]} has ${bb.pages}`);
    }
    const ga = Uint8Array.fromBase64(ba.digests);
    const gb = Uint8Array.fromBase64(bb.digests);
    const pages = Math.min(ba.pages, bb.pages);
    for (let p = 0; p < pages; p++) {
      let same = true;
      for (let k = 0; k < DIGEST; k++) {
        if (ga[p * DIGEST + k] !== gb[p * DIGEST + k]) {
          same = false;
          break;
        }
      }
      if (same) continue;
      mismatches++;
      if (mismatches <= SHOWN) {
        const size = da["page-size"];
        if (!a.readPage || !b.readPage) {
          const kept = a.readPage ? names[1] : names[0];
          lines.push(
            `block ${ba.idstr} page ${p} (block offset 0x${(p * size).toString(16)}) differs ` +
              `(only digests were kept of ${kept})`,
          );
          continue;
        }
        const [ra, rb] = await Promise.all([
          a.readPage(ba.idstr, p * size, size),
          b.readPage(ba.idstr, p * size, size),
        ]);
        lines.push(describePageDifference(ba.idstr, p, size, ra, rb, names));
      }
    }
  }
  for (const bb of db.blocks) {
    if (!da.blocks.some((x) => x.idstr === bb.idstr)) {
      lines.push(`block ${bb.idstr} exists on ${names[1]} but not on ${names[0]}`);
    }
  }
  if (mismatches > SHOWN) lines.push(`... and ${mismatches - SHOWN} more differing page(s)`);
  return { mismatches, lines };
}

/**
 * `source` with the pages set in `masked` (one bit per page, by block) left out of the comparison: their
 * digests read as zeros, so two masked sources agree on them whatever they hold. For a postcopy
 * destination whose guest has run: the pages it wrote itself since it started.
 */
export function withoutPages(source: RamSource, masked: Map<string, Uint8Array>): RamSource {
  return {
    name: source.name,
    readPage: source.readPage?.bind(source),
    async digests() {
      const d = await source.digests();
      return {
        ...d,
        blocks: d.blocks.map((b) => {
          const bits = masked.get(b.idstr);
          if (!bits) return b;
          const g = Uint8Array.fromBase64(b.digests);
          for (let p = 0; p < b.pages; p++) {
            if ((bits[p >>> 3] >> (p & 7)) & 1) g.fill(0, p * DIGEST, (p + 1) * DIGEST);
          }
          return { ...b, digests: g.toBase64() };
        }),
      };
    },
  };
}
