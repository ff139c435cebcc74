/**
 * multifd-flush-after-each-section (hw_compat_8_0) end to end between RamSaveState and RamLoadState over
 * a multifd channel: per section, the channels sync at every EOS and no MULTIFD_FLUSH is written (QEMU
 * before 8.0 refuses the flag); per round, MULTIFD_FLUSH is the destination's cue. Found by the mixed
 * pairs against QEMU 7.2, whose machine type turns it on.
 */
import assert from "node:assert/strict";
import "./multifd/methods.ts";
import { multifdMethod } from "./multifd/compression.ts";
import { MULTIFD_INIT_SIZE, MULTIFD_MAGIC, MULTIFD_VERSION } from "./multifd/packet.ts";
import { MultifdRecvState } from "./multifd/recv.ts";
import { MultifdSendState } from "./multifd/send.ts";
import { QEMUFileReader, QEMUFileWriter } from "./qemu_file.ts";
import { RamLoadState, RamSaveState } from "./ram.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "./ram_block.ts";
import { memoryLinkPair } from "./transport/link.ts";

const UUID = new Uint8Array(16);
const PAGES = 48;

async function roundTrip(syncPerSection: boolean): Promise<{ flushes: number; equal: boolean }> {
  const src = new RamBlock({ idstr: "pc.ram", size: PAGES * TARGET_PAGE_SIZE });
  for (let i = 0; i < PAGES; i++) src.page(i).fill(i + 1);
  const dst = new RamBlock({ idstr: "pc.ram", size: PAGES * TARGET_PAGE_SIZE });
  const [chA, chB] = memoryLinkPair(1 << 22, "multifd0");
  const [mainA, mainB] = memoryLinkPair(1 << 22, "main");
  const recv = new MultifdRecvState({
    channels: 1,
    uuid: UUID,
    method: multifdMethod("none"),
    blocks: [dst],
  }, () => {});
  const send = await MultifdSendState.open(1, () => Promise.resolve(chA), {
    uuid: UUID,
    method: multifdMethod("none"),
    level: 1,
    detectZeroPages: false,
  });
  const r = new QEMUFileReader(chB);
  await r.need(MULTIFD_INIT_SIZE, "initial packet");
  r.getBytes(MULTIFD_INIT_SIZE);
  recv.addChannel({ magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid: UUID, id: 0 }, r, chB, 0);
  const save = new RamSaveState([src], () => "legacy", () => 0, { multifd: send, syncPerSection });
  const load = new RamLoadState([dst], recv);
  load.syncPerSection = syncPerSection;
  const f = new QEMUFileWriter(mainA);
  const main = new QEMUFileReader(mainB);
  try {
    await save.setup(f);
    await f.flush();
    await load.load(main, 4);
    // Half the pages in one section, the rest dirtied again and sent with the rest: two rounds.
    let budget = PAGES / 2;
    await save.iterate(f, () => budget-- <= 0);
    await f.flush();
    await load.load(main, 4);
    for (let i = 0; i < PAGES; i += 3) src.page(i).fill(0xee);
    for (let i = 0; i < PAGES; i += 3) src.markDirty(i);
    await save.complete(f);
    await f.flush();
    await load.load(main, 4);
    let equal = true;
    for (let i = 0; i < PAGES; i++) if (src.page(i)[0] !== dst.page(i)[0]) equal = false;
    return { flushes: load.counters.multifdFlush, equal };
  } finally {
    send.close();
    mainA.close();
    mainB.close();
    await recv.close();
  }
}

Deno.test("ram + multifd: synced per section, no MULTIFD_FLUSH goes out and every EOS is a barrier", async () => {
  const r = await roundTrip(true);
  assert.deepEqual(r, { flushes: 0, equal: true });
});

Deno.test("ram + multifd: synced per round, MULTIFD_FLUSH is the barrier", async () => {
  const r = await roundTrip(false);
  assert.ok(r.flushes >= 2, `MULTIFD_FLUSH records: ${r.flushes}`);
  assert.equal(r.equal, true);
});
