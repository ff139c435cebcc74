import assert from "node:assert/strict";
import { memoryRegistry } from "./hostmem.ts";
import { QEMUFileWriter } from "./qemu_file.ts";
import {
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_PAGE,
  ramblockIsIgnored,
  RamLoadState,
  RamSaveState,
} from "./ram.ts";
import { PostcopyIncoming } from "./postcopy_ram.ts";
import { Userfault } from "./guest/userfault.ts";
import { hostClock } from "./clock.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import { encode, withReader } from "./testing/streams_test_util.ts";

const PAGE = TARGET_PAGE_SIZE;
const SHMEM = { id: "mem0", memPath: "/shm/guest", share: true };

/** A guest of a shared block (the backend's file) and a private one, as one side sees it. */
function guest(host: ReturnType<typeof memoryRegistry>, share = true): RamBlock[] {
  return [
    new RamBlock({ idstr: "mem0", size: 8 * PAGE, addr: 0 }, undefined, {
      ram: host.map({ ...SHMEM, share }, 8 * PAGE),
      share,
    }),
    new RamBlock({ idstr: "vga.vram", size: 3 * PAGE }),
  ];
}

async function save(blocks: RamBlock[]): Promise<{ bytes: Uint8Array; save: RamSaveState }> {
  const s = new RamSaveState(blocks, () => "legacy", () => 0, { ignoreShared: true });
  const bytes = await encode(async (w: QEMUFileWriter) => {
    await s.setup(w);
    await s.complete(w);
  });
  return { bytes, save: s };
}

Deno.test("ram: x-ignore-shared lists a shared block with its address and never sends it", async () => {
  const host = memoryRegistry();
  const src = guest(host);
  src[0].mem.fill(7);
  src[1].mem.fill(9);
  const { bytes, save: s } = await save(src);
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  // MEM_SIZE counts the shared block too (ram_bytes_total_with_ignored); each block is followed by its address.
  assert.equal(Number(v.getBigUint64(0)) & ~(PAGE - 1), 11 * PAGE);
  assert.equal(Number(v.getBigUint64(0)) & (PAGE - 1), RAM_SAVE_FLAG_MEM_SIZE);
  assert.equal(new TextDecoder().decode(bytes.subarray(9, 13)), "mem0");
  assert.equal(v.getBigUint64(13), BigInt(8 * PAGE));
  assert.equal(v.getBigUint64(21), 0n);
  assert.equal(s.counters.normal, 3);
  assert.equal(s.totalBytes, 3 * PAGE);
  assert.equal(s.blocks.map((b) => b.idstr).join(), "vga.vram");

  // The destination maps the same file: its shared block already holds the source's RAM.
  const dst = guest(host);
  const load = new RamLoadState(dst, null, null, true);
  await withReader(bytes, (r) => load.load(r, 4).then(() => load.load(r, 4)));
  assert.equal(load.counters.normal, 3);
  assert.ok(dst[0].mem.every((b) => b === 7));
  assert.ok(dst[1].mem.every((b) => b === 9));
  // The same memory, not a copy: the source's next write is the destination's.
  src[0].mem[5] = 1;
  assert.equal(dst[0].mem[5], 1);
});

Deno.test("ram: without share=on x-ignore-shared sends the block like any other", async () => {
  const host = memoryRegistry();
  const src = guest(host, false);
  src[0].mem.fill(7);
  const { save: s } = await save(src);
  assert.equal(s.counters.normal, 8);
  assert.equal(s.counters.duplicate, 3);
});

Deno.test("ram: the loader refuses a shared block at another address, and pages for a shared block", async () => {
  const host = memoryRegistry();
  const { bytes } = await save(guest(host));
  const moved = bytes.slice();
  new DataView(moved.buffer).setBigUint64(21, 0x100000n);
  await assert.rejects(
    withReader(moved, (r) => new RamLoadState(guest(host), null, null, true).load(r, 4)),
    /Mismatched GPAs for block mem0 1048576!= 0/,
  );
  // A source that sends the shared block's page anyway (its block list, then one page of mem0).
  const page = await encode((w: QEMUFileWriter) => {
    w.putBe64(RAM_SAVE_FLAG_PAGE);
    w.putCountedString("mem0");
    w.putBytes(new Uint8Array(PAGE));
  });
  const head = bytes.subarray(0, 9 + 4 + 8 + 8 + 1 + 8 + 8 + 8);
  await assert.rejects(
    withReader(
      new Uint8Array([...head, ...page]),
      (r) => new RamLoadState(guest(host), null, null, true).load(r, 4),
    ),
    /block mem0 should not be migrated !/,
  );
});

Deno.test("ram: postcopy registers only the blocks it migrates, not one x-ignore-shared leaves out", () => {
  const blocks = guest(memoryRegistry());
  const userfault = new Userfault(blocks.map((b) => b.pages));
  const pc = new PostcopyIncoming({
    blocks,
    userfault,
    clock: hostClock,
    enabled: () => true,
    ignored: (b) => ramblockIsIgnored(b, true),
    log: () => {},
  });
  const advise = new Uint8Array(16);
  new DataView(advise.buffer).setUint32(4, PAGE);
  new DataView(advise.buffer).setUint32(12, PAGE);
  pc.advise(advise);
  pc.listen();
  // The shared block is there already (the destination maps it); the private one faults until placed.
  assert.ok(userfault.isPresent(0, 0) && userfault.isPresent(0, 7));
  assert.equal(userfault.isPresent(1, 0), false);
  pc.end();
});
