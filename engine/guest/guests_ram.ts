/**
 * Upstream's check_guests_ram for the a-b guest: every page's first byte equals the previous page's,
 * except for one step where the incrementer stopped mid-pass (previous = current + 1 mod 256).
 */
export interface GuestsRamReport {
  bad: number;
  /** The first 10 bad pages, as upstream prints them. */
  lines: string[];
}

/** `firstBytes[k]` is the first byte of page k of the test range, which starts at `startAddress`. */
export function checkGuestsRam(
  firstBytes: Uint8Array,
  startAddress: number,
  pageSize = 4096,
): GuestsRamReport {
  const lines: string[] = [];
  let bad = 0;
  let hitEdge = false;
  let last = firstBytes[0];
  for (let k = 1; k < firstBytes.length; k++) {
    const b = firstBytes[k];
    if (b !== last) {
      if (((b + 1) & 0xff) === last && !hitEdge) {
        // The guest stopped here: pages before were incremented once more than pages after.
        hitEdge = true;
        last = b;
        continue;
      }
      bad++;
      if (lines.length < 10) {
        const addr = startAddress + k * pageSize;
        lines.push(
          `Memory content inconsistency at 0x${addr.toString(16)} first_byte = ${
            firstBytes[0]
          } last_byte = ${last} current = ${b} hit_edge = ${hitEdge ? 1 : 0}`,
        );
      }
      last = b;
    }
  }
  if (bad > 10) lines.push(`and in another ${bad - 10} pages`);
  return { bad, lines };
}
