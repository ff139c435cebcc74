import assert from "node:assert/strict";
import fc from "fast-check";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "./qemu_file.ts";
import { memoryLinkPair } from "./transport/link.ts";
import { readAll } from "./transport/buffer.ts";
import { encode, withReader } from "./testing/streams_test_util.ts";

async function rejectsStream(p: Promise<unknown>, detail: RegExp, offset?: number): Promise<StreamError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof StreamError, `expected a StreamError, got ${String(caught)}`);
  assert.match(caught.detail, detail);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  return caught;
}

Deno.test("qemu_file: be16/be32/be64 and u8 round trip (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.record({ k: fc.constant(8 as const), v: fc.integer({ min: 0, max: 0xff }) }),
          fc.record({ k: fc.constant(16 as const), v: fc.integer({ min: 0, max: 0xffff }) }),
          fc.record({ k: fc.constant(32 as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
          fc.record({ k: fc.constant(64 as const), v: fc.maxSafeNat() }),
        ),
        { maxLength: 40 },
      ),
      async (items) => {
        const bytes = await encode((w) => {
          for (const { k, v } of items) {
            if (k === 8) w.put8(v);
            else if (k === 16) w.putBe16(v);
            else if (k === 32) w.putBe32(v);
            else w.putBe64(v);
          }
        });
        assert.equal(bytes.length, items.reduce((n, { k }) => n + k / 8, 0));
        await withReader(bytes, async (r) => {
          for (const { k, v } of items) {
            await r.need(k / 8, `u${k}`);
            const got = k === 8 ? r.get8() : k === 16 ? r.getBe16() : k === 32 ? r.getBe32() : r.getBe64("v");
            assert.equal(got, v);
          }
          assert.ok(await r.atEnd());
        });
      },
    ),
    { seed: 4242, numRuns: 60 },
  );
});

Deno.test("qemu_file: integers are big-endian on the wire", async () => {
  const bytes = await encode((w) => {
    w.putBe16(0x0102);
    w.putBe32(0x03040506);
    w.putBe64(0x0708090a0b0c0d);
    w.putCountedString("ram");
  });
  assert.deepEqual(
    Array.from(bytes),
    [1, 2, 3, 4, 5, 6, 0, 7, 8, 9, 10, 11, 12, 13, 3, 0x72, 0x61, 0x6d],
  );
});

Deno.test("qemu_file: getBe64 accepts 2^53-1 and rejects 2^53 with its offset", async () => {
  const bytes = await encode((w) => {
    w.put8(0xaa);
    w.putBe64(Number.MAX_SAFE_INTEGER);
    w.putBytes(new Uint8Array([0, 0x20, 0, 0, 0, 0, 0, 0]));
  });
  await withReader(bytes, async (r) => {
    await r.need(17, "all");
    r.skip(1);
    assert.equal(r.getBe64("size"), Number.MAX_SAFE_INTEGER);
    const e = await rejectsStream(Promise.resolve().then(() => r.getBe64("block size")), /^block size 0x/, 9);
    assert.equal(e.message, "block size 0x20000000000000 is out of range (at stream offset 9)");
  });
});

Deno.test("qemu_file: need() assembles values from one-byte chunks", async () => {
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 1);
  const payload = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);
  const writing = (async () => {
    // One flush per byte, so the reader sees 1-byte link chunks.
    w.putBe32(0xdeadbeef);
    await w.flush();
    for (const byte of new Uint8Array([0x12, 0x34, 0, 0, 0, 0, 0, 0x99])) {
      w.put8(byte);
      await w.flush();
    }
    for (const byte of payload) {
      w.put8(byte);
      await w.flush();
    }
    a.close();
  })();
  // A 16-byte buffer forces compaction and growth inside need().
  const r = new QEMUFileReader(b, 16);
  await r.need(4, "magic");
  assert.equal(r.getBe32(), 0xdeadbeef);
  await r.need(8, "word");
  assert.deepEqual(r.getBe64Parts(), [0x12340000, 0x99]);
  await r.need(300, "payload");
  assert.deepEqual(r.getBytes(300), payload);
  assert.equal(r.position, 312);
  assert.ok(await r.atEnd());
  await writing;
  b.close();
});

Deno.test("qemu_file: truncated stream names what was being read and where it ended", async (t) => {
  await t.step("mid-value", async () => {
    await withReader(new Uint8Array([1, 2, 3, 4, 5, 6]), async (r) => {
      await r.need(4, "a");
      r.skip(4);
      await rejectsStream(r.need(4, "section id"), /^Unexpected end of stream while reading section id$/, 6);
      const e = await rejectsStream(r.need(4, "section id"), /./);
      assert.equal(e.message, "Unexpected end of stream while reading section id (at stream offset 6)");
    });
  });
  await t.step("empty stream", async () => {
    await withReader(new Uint8Array(), async (r) => {
      await rejectsStream(r.need(1, "file header"), /file header/, 0);
    });
  });
  await t.step("larger than the buffer", async () => {
    await withReader(new Uint8Array(100), async (r) => {
      await rejectsStream(r.need(200, "page data"), /page data/, 100);
    }, 16);
  });
});

Deno.test("qemu_file: getCountedString and atEnd", async () => {
  const bytes = await encode((w) => w.putCountedString("pc.ram"));
  await withReader(bytes, async (r) => {
    assert.equal(await r.atEnd(), false);
    assert.equal(await r.getCountedString("idstr"), "pc.ram");
    assert.equal(await r.atEnd(), true);
    assert.equal(await r.atEnd(), true);
  });
  await withReader(new Uint8Array([5, 0x61]), async (r) => {
    await rejectsStream(r.getCountedString("idstr"), /reading idstr$/, 2);
  });
  assert.throws(() => new QEMUFileWriter(memoryLinkPair()[0]).putCountedString("x".repeat(256)), /too long/);
});

Deno.test("qemu_file: peek does not consume; position tracks skips and copies", async () => {
  await withReader(new Uint8Array([9, 8, 7, 6, 5]), async (r) => {
    await r.need(5, "x");
    assert.deepEqual(Array.from(r.peek(2)), [9, 8]);
    assert.equal(r.position, 0);
    r.skip(1);
    const dest = new Uint8Array(3);
    r.copyTo(dest);
    assert.deepEqual(Array.from(dest), [8, 7, 6]);
    assert.equal(r.position, 4);
    assert.equal(r.available, 1);
  });
});

/** Writes `total` bytes (value = offset & 0xff) flushing every `step` bytes; returns what the peer saw. */
async function writeWithFaults(
  total: number,
  step: number,
  faults: QEMUFileWriter["faults"],
): Promise<{ seen: Uint8Array; flushError: Error | null }> {
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 4096);
  w.faults = faults;
  const reading = readAll(b);
  let flushError: Error | null = null;
  for (let off = 0; off < total; off += step) {
    for (let i = off; i < Math.min(total, off + step); i++) w.put8(i & 0xff);
    try {
      await w.flush();
    } catch (e) {
      assert.ok(e instanceof Error);
      flushError = e;
      break;
    }
  }
  a.close();
  const seen = await reading;
  b.close();
  return { seen, flushError };
}

Deno.test("qemu_file: corruptAt flips exactly one byte at an absolute offset (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2000 }),
      fc.integer({ min: 1, max: 300 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (total, step, atSeed, xor) => {
        const at = atSeed % total;
        const { seen, flushError } = await writeWithFaults(total, step, { corruptAt: at, xor });
        assert.equal(flushError, null);
        assert.equal(seen.length, total);
        for (let i = 0; i < total; i++) {
          assert.equal(seen[i], i === at ? (i & 0xff) ^ xor : i & 0xff, `byte ${i}`);
        }
      },
    ),
    { seed: 777, numRuns: 80 },
  );
  // Default xor is 0xff.
  const { seen } = await writeWithFaults(10, 3, { corruptAt: 4 });
  assert.equal(seen[4], 4 ^ 0xff);
});

Deno.test("qemu_file: truncateAt delivers exactly N bytes, closes, and makes flush throw (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2000 }),
      fc.integer({ min: 1, max: 300 }),
      fc.nat(),
      async (total, step, nSeed) => {
        const n = nSeed % total;
        const { seen, flushError } = await writeWithFaults(total, step, { truncateAt: n });
        assert.equal(seen.length, n);
        for (let i = 0; i < n; i++) assert.equal(seen[i], i & 0xff);
        assert.ok(flushError);
        assert.match(flushError.message, new RegExp(`connection dropped after ${n} bytes \\(fault\\)`));
        // `position` after the fault counts bytes handed to the link, not delivered: not asserted.
      },
    ),
    { seed: 1234, numRuns: 80 },
  );
});

Deno.test("qemu_file: after a truncation fault the writer keeps failing and the peer sees a short stream", async () => {
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 4096);
  w.faults = { truncateAt: 6 };
  w.putBe32(1);
  await w.flush();
  w.putBe32(2);
  await assert.rejects(w.flush(), /connection dropped after 6 bytes/);
  const first = w.error;
  assert.ok(first);
  w.put8(3);
  await assert.rejects(w.flush(), (e) => e === first);
  const r = new QEMUFileReader(b, 64);
  await r.need(4, "one");
  assert.equal(r.getBe32(), 1);
  await rejectsStream(r.need(4, "two"), /reading two$/, 6);
  a.close();
  b.close();
});

Deno.test("qemu_file: writer buffer grows past its threshold and position counts buffered bytes", async () => {
  const big = new Uint8Array(10000).map((_, i) => i & 0xff);
  const [a, b] = memoryLinkPair();
  const w = new QEMUFileWriter(a, 16);
  w.putBytes(big);
  w.putBe32(7);
  assert.equal(w.position, 10004);
  const reading = readAll(b);
  await w.maybeFlush();
  a.close();
  const seen = await reading;
  b.close();
  assert.equal(seen.length, 10004);
  assert.deepEqual(seen.subarray(0, 10000), big);
});
