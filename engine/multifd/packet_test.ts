/**
 * The multifd wire formats against QEMU's layout (MultiFDInit_t, MultiFDPacket_t; research notes §3.2-3.4):
 * every field at its byte offset, round trips, and the precise errors of multifd_ram_unfill_packet.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { StreamError } from "../qemu_file.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { encode, withReader } from "../testing/streams_test_util.ts";
import {
  decodeInit,
  encodeInit,
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_FLAG_SYNC,
  MULTIFD_FLAG_ZSTD,
  MULTIFD_INIT_SIZE,
  MULTIFD_MAGIC,
  MULTIFD_PACKET_LEN,
  MULTIFD_PAGE_COUNT,
  MULTIFD_VERSION,
  type MultifdPacket,
  readPacket,
  writePacket,
} from "./packet.ts";

const PAGE = TARGET_PAGE_SIZE;
const BLOCK = new RamBlock({ idstr: "pc.ram", size: 256 * PAGE });
const find = (idstr: string) => (idstr === BLOCK.idstr ? BLOCK : undefined);
const UUID = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

function packet(over: Partial<MultifdPacket> = {}): MultifdPacket {
  return {
    flags: MULTIFD_FLAG_ZSTD,
    pagesAlloc: MULTIFD_PAGE_COUNT,
    normalPages: 2,
    zeroPages: 1,
    nextPacketSize: 0x1234,
    packetNum: 0x1_0000_0007,
    ramblock: "pc.ram",
    offsets: [0, 5 * PAGE, 255 * PAGE],
    ...over,
  };
}

const bytesOf = (p: MultifdPacket) => encode((f) => writePacket(f, p));
const read = (b: Uint8Array) => withReader(b, (r) => readPacket(r, 3, find));

/** A packet whose be32 at `offset` is replaced by `value`. */
async function patched(offset: number, value: number, p = packet()): Promise<Uint8Array> {
  const b = await bytesOf(p);
  new DataView(b.buffer).setUint32(offset, value);
  return b;
}

async function readError(b: Uint8Array, detail: string): Promise<void> {
  await assert.rejects(read(b), (e: unknown) => {
    assert.ok(e instanceof StreamError, String(e));
    assert.equal(e.detail, `multifd channel 3: ${detail}`);
    assert.equal(e.offset, 0, "the error names where the packet starts");
    return true;
  });
}

// Guards interop with QEMU: a field moved in MultiFDInit_t (or a wrong endianness) fails here.
Deno.test("multifd init: 64 bytes, QEMU's field offsets, round trip", () => {
  const b = encodeInit(UUID, 5);
  assert.equal(b.length, MULTIFD_INIT_SIZE);
  assert.equal(MULTIFD_INIT_SIZE, 64);
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(0), 0x11223344, "magic, big-endian at 0");
  assert.equal(v.getUint32(4), 1, "version at 4");
  assert.deepEqual(b.subarray(8, 24), UUID, "uuid at 8");
  assert.equal(b[24], 5, "id (u8) at 24");
  assert.ok(b.subarray(25).every((x) => x === 0), "unused1 and unused2 are zero");
  assert.deepEqual(decodeInit(b), { magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid: UUID, id: 5 });
});

// Guards interop with QEMU: a header field at the wrong offset fails here even when our own writer and
// reader agree (checked by moving zero_pages to offset 36 in both: this test and the next error test fail).
Deno.test("multifd packet: 1344 bytes, every header field at QEMU's offset", async () => {
  assert.equal(MULTIFD_PACKET_LEN, 1344);
  const b = await bytesOf(packet());
  assert.equal(b.length, 1344);
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(0), MULTIFD_MAGIC);
  assert.equal(v.getUint32(4), MULTIFD_VERSION);
  assert.equal(v.getUint32(8), MULTIFD_FLAG_ZSTD, "flags at 8");
  assert.equal(v.getUint32(12), 128, "pages_alloc at 12");
  assert.equal(v.getUint32(16), 2, "normal_pages at 16");
  assert.equal(v.getUint32(20), 0x1234, "next_packet_size at 20");
  assert.equal(v.getBigUint64(24), 0x1_0000_0007n, "packet_num (be64) at 24");
  assert.equal(v.getUint32(32), 1, "zero_pages at 32");
  assert.ok(b.subarray(36, 64).every((x) => x === 0), "unused32 and unused64 are zero");
  assert.equal(new TextDecoder().decode(b.subarray(64, 70)), "pc.ram", "ramblock at 64");
  assert.ok(b.subarray(70, 320).every((x) => x === 0), "ramblock is NUL padded to 256 bytes");
  assert.deepEqual(
    [0, 1, 2].map((i) => v.getBigUint64(320 + 8 * i)),
    [0n, BigInt(5 * PAGE), BigInt(255 * PAGE)],
    "offsets (be64) from 320: normal pages first, then zero pages",
  );
  assert.ok(b.subarray(320 + 24).every((x) => x === 0), "unused offset slots are zero");
});

// Guards writer/reader symmetry for any page split, packet number (above 2^32) and flags.
Deno.test("multifd packet: write then read gives the packet back (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: MULTIFD_PAGE_COUNT }).chain((pages) =>
        fc.record({
          pages: fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { minLength: pages, maxLength: pages }),
          normal: fc.integer({ min: 0, max: pages }),
          packetNum: fc.maxSafeNat(),
          flags: fc.constantFrom(0, MULTIFD_FLAG_SYNC, MULTIFD_FLAG_ZSTD, MULTIFD_FLAG_SYNC | 0x02),
          size: fc.nat(),
        })
      ),
      async ({ pages, normal, packetNum, flags, size }) => {
        const p = packet({
          flags,
          normalPages: normal,
          zeroPages: pages.length - normal,
          nextPacketSize: size >>> 0,
          packetNum,
          ramblock: pages.length ? "pc.ram" : "",
          offsets: pages.map((i) => i * PAGE),
        });
        const got = await read(await bytesOf(p));
        assert.deepEqual(got, { ...p, block: pages.length ? BLOCK : null });
      },
    ),
    { numRuns: 60 },
  );
});

// Guards the SYNC packet: no pages means no block lookup (its ramblock is empty).
Deno.test("multifd packet: a SYNC packet without pages names no block", async () => {
  const got = await read(
    await bytesOf(
      packet({ flags: MULTIFD_FLAG_SYNC, normalPages: 0, zeroPages: 0, ramblock: "", offsets: [] }),
    ),
  );
  assert.equal(got.block, null);
  assert.deepEqual(got.offsets, []);
});

// Guards the 255-byte name limit (checked by reading all 256 bytes: this fails).
Deno.test("multifd packet: the receiver forces byte 255 of the ramblock name to NUL", async () => {
  const b = await bytesOf(packet({ normalPages: 0, zeroPages: 0, offsets: [] }));
  b.fill(0x41, 64, 320); // 256 × 'A', no terminator
  const got = await read(b);
  assert.equal(got.ramblock, "A".repeat(255));
});

// Guards DESIGN 2.1 (the engine never trusts its peer): each bad field is refused with the message
// multifd_ram_unfill_packet gives, naming the channel and the packet's stream offset.
Deno.test("multifd packet: malformed headers give QEMU's precise errors", async (t) => {
  await t.step("bad magic", async () => {
    await readError(
      await patched(0, 0x11223345),
      "received packet magic 11223345 and expected magic 11223344",
    );
  });
  await t.step("bad version", async () => {
    await readError(await patched(4, 2), "received packet version 2 and expected version 1");
  });
  await t.step("device-state flag", async () => {
    await readError(await patched(8, MULTIFD_FLAG_DEVICE_STATE), "device state packets are not supported");
  });
  await t.step("pages_alloc above the page count", async () => {
    await readError(await patched(12, 129), "received packet with size 129 and expected a size of 128");
  });
  await t.step("normal_pages above pages_alloc", async () => {
    await readError(
      await patched(16, 20, packet({ pagesAlloc: 10 })),
      "received packet with 20 normal pages and expected maximum pages are 10",
    );
  });
  await t.step("zero_pages above what normal_pages leaves", async () => {
    await readError(
      await patched(32, 127),
      "received packet with 127 zero pages and expected maximum zero pages are 126",
    );
  });
  await t.step("unknown block", async () => {
    await readError(await bytesOf(packet({ ramblock: "vga.vram" })), "unknown ram block vga.vram");
  });
  await t.step("offset past the block, and one not page-aligned", async () => {
    await readError(
      await bytesOf(packet({ offsets: [0, 256 * PAGE, 0] })),
      "offset too long 100000 (block pc.ram)",
    );
    await readError(await bytesOf(packet({ offsets: [0, 1, 0] })), "offset too long 1 (block pc.ram)");
  });
  await t.step("a truncated packet names the channel", async () => {
    const b = (await bytesOf(packet())).subarray(0, 1000);
    await assert.rejects(read(b), /multifd packet on channel 3/);
  });
});
