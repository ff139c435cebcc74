import assert from "node:assert/strict";
import fc from "fast-check";
import { DIGEST_BYTES, pageDigests } from "./ram_digest.ts";

const PAGE = 4096;

Deno.test("ram_digest: any single corrupted byte changes its page's digest and no other", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 4 * PAGE, maxLength: 4 * PAGE }),
      fc.nat(4 * PAGE - 1),
      fc.integer({ min: 1, max: 255 }),
      (mem, at, xor) => {
        const before = pageDigests(mem, PAGE);
        mem[at] ^= xor;
        const after = pageDigests(mem, PAGE);
        for (let p = 0; p < 4; p++) {
          const same = before.subarray(p * DIGEST_BYTES, (p + 1) * DIGEST_BYTES)
            .every((v, i) => v === after[p * DIGEST_BYTES + i]);
          assert.equal(same, p !== Math.floor(at / PAGE), `page ${p}`);
        }
      },
    ),
    { seed: 20261121, numRuns: 200 },
  );
});

Deno.test("ram_digest: equal pages have equal digests; swapped words differ", () => {
  const mem = new Uint8Array(2 * PAGE);
  mem.set([1, 2, 3, 4, 5, 6, 7, 8], 0);
  mem.set([5, 6, 7, 8, 1, 2, 3, 4], PAGE);
  const d = pageDigests(mem, PAGE);
  assert.notDeepEqual(d.subarray(0, 8), d.subarray(8, 16));
  mem.set([1, 2, 3, 4, 5, 6, 7, 8], PAGE);
  const e = pageDigests(mem, PAGE);
  assert.deepEqual(e.subarray(0, 8), e.subarray(8, 16));
});
