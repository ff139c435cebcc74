/**
 * The multifd receiver: the handshake checks, the sync barrier, and where pages go (COLO routing and the
 * receivedmap rule for zero pages), driven packet by packet over in-memory channels.
 */
import assert from "node:assert/strict";
import "./methods.ts";
import { ColoCache } from "../colo/cache.ts";
import { QEMUFileReader, QEMUFileWriter, StreamError } from "../qemu_file.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { defectsOf } from "../testing/defects.ts";
import { memoryLinkPair } from "../transport/link.ts";
import type { Link } from "../transport/link.ts";
import { multifdMethod } from "./compression.ts";
import {
  MULTIFD_FLAG_SYNC,
  MULTIFD_MAGIC,
  MULTIFD_PAGE_COUNT,
  MULTIFD_VERSION,
  writePacket,
} from "./packet.ts";
import { type ChannelDelay, MultifdRecvState } from "./recv.ts";

const PAGE = TARGET_PAGE_SIZE;
const UUID = new Uint8Array(16);

interface Pages {
  /** [page index, fill byte] of each normal page. */
  normal?: [number, number][];
  /** Page indexes sent as zero pages. */
  zero?: number[];
}

/** A receiver with `channels` channels whose sending ends the test writes packets into. */
class Rig {
  readonly block = new RamBlock({ idstr: "pc.ram", size: 32 * PAGE });
  readonly recv: MultifdRecvState;
  readonly errors: Error[] = [];
  readonly #senders: { link: Link; f: QEMUFileWriter }[] = [];
  #packetNum = 0;

  constructor(
    channels: number,
    opts: { defects?: string[]; colo?: boolean; delays?: Map<number, ChannelDelay> } = {},
  ) {
    this.colo = opts.colo ? new ColoCache([this.block]) : null;
    this.recv = new MultifdRecvState({
      channels,
      uuid: UUID,
      method: multifdMethod("none"),
      blocks: [this.block],
      defects: defectsOf(new Set(opts.defects)),
      colo: this.colo,
      delays: opts.delays,
    }, (e) => this.errors.push(e));
    for (let id = 0; id < channels; id++) {
      const [a, b] = memoryLinkPair(1 << 20, `multifd${id}`);
      this.#senders.push({ link: a, f: new QEMUFileWriter(a) });
      this.recv.addChannel(
        { magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid: UUID, id },
        new QEMUFileReader(b),
        b,
        0,
      );
    }
  }

  readonly colo: ColoCache | null;

  /** One packet of pages on channel `id`. */
  async send(id: number, pages: Pages): Promise<void> {
    const normal = pages.normal ?? [];
    const zero = pages.zero ?? [];
    const { f } = this.#senders[id];
    writePacket(f, {
      flags: 0,
      pagesAlloc: MULTIFD_PAGE_COUNT,
      normalPages: normal.length,
      zeroPages: zero.length,
      nextPacketSize: normal.length * PAGE,
      packetNum: this.#packetNum++,
      ramblock: this.block.idstr,
      offsets: [...normal.map(([i]) => i * PAGE), ...zero.map((i) => i * PAGE)],
    });
    for (const [, fill] of normal) f.putBytes(new Uint8Array(PAGE).fill(fill));
    await f.flush();
  }

  /** A SYNC packet on channel `id` (next_packet_size as QEMU 7.2's zlib leaves it: the last one's). */
  async sync(id: number, staleSize = 0): Promise<void> {
    const { f } = this.#senders[id];
    writePacket(f, {
      flags: MULTIFD_FLAG_SYNC,
      pagesAlloc: MULTIFD_PAGE_COUNT,
      normalPages: 0,
      zeroPages: 0,
      nextPacketSize: staleSize,
      packetNum: this.#packetNum++,
      ramblock: "",
      offsets: [],
    });
    await f.flush();
  }

  /** A SYNC on every channel and the main channel's MULTIFD_FLUSH: every page sent so far is in. */
  async flush(): Promise<void> {
    for (let id = 0; id < this.#senders.length; id++) await this.sync(id);
    await this.recv.syncMain();
  }

  async close(): Promise<void> {
    for (const s of this.#senders) s.link.close();
    await this.recv.close();
  }
}

const first = (p: Uint8Array) => p[0];

/**
 * Round N sends page 3 on the slow channel 1; round N+1 sends it again, with new content, on the fast
 * channel 0. Returns page 3's first byte once both rounds are in.
 */
async function resentAcrossRounds(defects: string[]): Promise<number> {
  const rig = new Rig(2, { defects, delays: new Map([[1, { ms: 40, every: false }]]) });
  try {
    await rig.send(1, { normal: [[3, 0x0a]] }); // round N, held 40 ms before it is written
    await rig.sync(1);
    await rig.sync(0);
    await rig.send(0, { normal: [[3, 0x0b]] }); // round N+1
    await rig.recv.syncMain(); // the main channel's MULTIFD_FLUSH of round N
    await rig.flush(); // round N+1's
    assert.deepEqual(rig.errors, []);
    return first(rig.block.page(3));
  } finally {
    await rig.close();
  }
}

// Guards the sync barrier (multifd_recv_sync_main): a channel that read its SYNC waits for the main
// channel's MULTIFD_FLUSH, so the fast channel cannot write round N+1's copy before the slow channel's
// round-N copy is in. The second test is the same run with the barrier switched off (the defect
// multifd-no-recv-sync): the stale copy wins, so the first test's check can fail.
Deno.test("multifd recv: a page re-sent in round N+1 on a fast channel keeps its round-N+1 content", async () => {
  assert.equal(await resentAcrossRounds([]), 0x0b);
});

Deno.test("multifd recv: without the barrier (multifd-no-recv-sync) the round-N copy overwrites it", async () => {
  assert.equal(await resentAcrossRounds(["multifd-no-recv-sync"]), 0x0a);
});

// Guards: a channel holding a packet (the multifd-channel-delay/-slow faults) stopped holding it only when its
// timer fired, so a target shut down meanwhile waited the fault out (its teardown was killed). The held
// packet's timer must go with close(); the sanitizers see a timer left behind.
Deno.test("multifd recv: close() ends a channel that holds a packet, without waiting out the hold", async () => {
  for (const every of [false, true]) {
    const rig = new Rig(2, { delays: new Map([[1, { ms: 60_000, every }]]) });
    await rig.send(1, { normal: [[3, 0x0a]] });
    // The channel has read the packet's header and holds it.
    await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    await rig.close();
    assert.ok(performance.now() - t0 < 5_000, `close took ${performance.now() - t0} ms`);
    assert.equal(first(rig.block.page(3)), 0, "the held page was not written after close");
  }
});

/** Before COLO state: normal page 1, zero page 2 (non-zero on both sides, already received). */
async function coloPrecopy(rig: Rig): Promise<void> {
  await rig.send(0, { normal: [[2, 0x22]] });
  await rig.flush();
  await rig.send(0, { normal: [[1, 0x11]], zero: [2] });
  await rig.flush();
}

// Guards the COLO route of multifd (multifd-colo.c) before COLO state: guest RAM and the cache stay
// identical (the cache mirrors every page, zero pages included), pages are marked received, and no
// COLO bit is set (nothing needs flushing at the switch to COLO).
Deno.test("multifd recv: before COLO state pages go to guest RAM and the cache mirror, no bit recorded", async () => {
  const rig = new Rig(1, { colo: true });
  try {
    await coloPrecopy(rig);
    const colo = rig.colo!;
    assert.equal(first(rig.block.page(1)), 0x11);
    assert.equal(first(colo.page(rig.block, 1)), 0x11, "the cache mirrors a normal page");
    assert.equal(first(rig.block.page(2)), 0, "the zero page cleared guest RAM");
    assert.equal(first(colo.page(rig.block, 2)), 0, "and the cache");
    assert.equal(colo.pendingPages(), 0);
    assert.equal(rig.block.receivedmap[0], 0b110, "pages 1 and 2 received");
    assert.equal(rig.recv.normalPages, 2);
    assert.equal(rig.recv.zeroPages, 1);
  } finally {
    await rig.close();
  }
});

/** In COLO state: normal page 4 (new content) and zero page 1 (non-zero until now). */
async function coloCheckpoint(defects: string[]): Promise<{ rig: Rig; guest4: number; guest1: number }> {
  const rig = new Rig(1, { colo: true, defects });
  await coloPrecopy(rig);
  rig.colo!.inColoState = true;
  await rig.send(0, { normal: [[4, 0x44]], zero: [1] });
  await rig.flush();
  return { rig, guest4: first(rig.block.page(4)), guest1: first(rig.block.page(1)) };
}

// Guards the COLO route in COLO state: normal and zero pages go to the cache only, each with its bit
// recorded, so the flush after the checkpoint applies both (a page that turned zero included). The
// defects multifd-colo-bypass-cache and colo-zero-not-recorded make these checks fail (the next test).
Deno.test("multifd recv: in COLO state normal and zero pages go to the cache only, bits recorded", async () => {
  const { rig, guest4, guest1 } = await coloCheckpoint([]);
  try {
    const colo = rig.colo!;
    assert.equal(guest4, 0, "guest RAM waits for the flush");
    assert.equal(guest1, 0x11, "guest RAM waits for the flush (zero page)");
    assert.equal(first(colo.page(rig.block, 4)), 0x44);
    assert.equal(first(colo.page(rig.block, 1)), 0, "the zero page cleared the cache page");
    assert.equal(colo.pendingPages(), 2, "both pages recorded");
    assert.equal(rig.block.receivedmap[0], 0b110, "the receivedmap is not updated in COLO state");
    assert.equal(colo.flush(), 2);
    assert.equal(first(rig.block.page(4)), 0x44);
    assert.equal(first(rig.block.page(1)), 0, "the flush applies the page that turned zero");
  } finally {
    await rig.close();
  }
});

Deno.test("multifd recv: the COLO routing defects break exactly those checks", async (t) => {
  await t.step("multifd-colo-bypass-cache: straight into guest RAM, nothing recorded", async () => {
    const { rig, guest4, guest1 } = await coloCheckpoint(["multifd-colo-bypass-cache"]);
    try {
      assert.equal(guest4, 0x44);
      assert.equal(guest1, 0);
      assert.equal(rig.colo!.pendingPages(), 0);
    } finally {
      await rig.close();
    }
  });
  await t.step("colo-zero-not-recorded: the zero page clears the cache but has no bit", async () => {
    const { rig } = await coloCheckpoint(["colo-zero-not-recorded"]);
    try {
      assert.equal(first(rig.colo!.page(rig.block, 1)), 0);
      assert.equal(rig.colo!.pendingPages(), 1, "only the normal page is recorded");
      rig.colo!.flush();
      assert.equal(first(rig.block.page(1)), 0x11, "stale guest content survives the flush");
    } finally {
      await rig.close();
    }
  });
});

// Guards the receivedmap rule (multifd_recv_zero_page_process, commit 5ef7e26bdb): a zero page for a page
// never received does not touch memory (fresh destination memory is zero; touching it would fault it
// in), but marks it received; once received, a zero page writes zeros. Checked by making the rule write
// always (the untouched byte is lost) and never (the second zero page leaves 0x77): each fails.
Deno.test("multifd recv: zero pages follow the receivedmap rule", async () => {
  const rig = new Rig(1);
  try {
    // Marker bytes stand for memory the destination never received (the rule must not read or write it).
    rig.block.page(5).fill(0x77);
    await rig.send(0, { zero: [5] });
    await rig.flush();
    assert.equal(first(rig.block.page(5)), 0x77, "a never-received page is not touched");
    assert.equal(rig.block.receivedmap[0], 1 << 5, "but it is marked received");
    await rig.send(0, { zero: [5] });
    await rig.flush();
    assert.equal(first(rig.block.page(5)), 0, "a received page is zeroed");
  } finally {
    await rig.close();
  }
});

// Guards DESIGN 2.1 (never trust the peer): a bad handshake is refused with QEMU's message for it.
Deno.test("multifd recv: handshakes are checked as multifd_recv_initial_packet does", () => {
  const recv = new MultifdRecvState({
    channels: 2,
    uuid: UUID,
    method: multifdMethod("none"),
    blocks: [],
  }, () => {});
  const [a, b] = memoryLinkPair();
  const r = new QEMUFileReader(b);
  const init = { magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid: UUID, id: 0 };
  const refuse = (over: Partial<typeof init>, detail: string) =>
    assert.throws(() => recv.addChannel({ ...init, ...over }, r, b, 64), (e: unknown) => {
      assert.ok(e instanceof StreamError, String(e));
      assert.equal(e.detail, `multifd: ${detail}`);
      assert.equal(e.offset, 64);
      return true;
    });
  try {
    refuse({ magic: 0x11223345 }, "received packet magic 11223345 expected 11223344");
    refuse({ version: 2 }, "received packet version 2 expected 1");
    refuse(
      { uuid: Uint8Array.from({ length: 16 }, (_, i) => i) },
      "received uuid '00010203-0405-0607-0809-0a0b0c0d0e0f' and expected uuid " +
        "'00000000-0000-0000-0000-000000000000' for channel 0",
    );
    refuse({ id: 2 }, "received channel id 2 is greater than number of channels 2");
    assert.equal(recv.connected, 0, "nothing refused was connected");
  } finally {
    a.close();
    b.close();
  }
});

// Guards the compression check: a packet whose compression flag differs from ours fails the channel with
// "flags received ... flags expected" (both sides must use the same method).
// Regression (found by the qemu-to-engine pair): QEMU's SYNC packet carries MULTIFD_FLAG_SYNC alone, and
// QEMU checks the method's flag only on a packet with pages; the model refused QEMU 10.0's zlib streams.
Deno.test("multifd recv: a SYNC packet needs no method flag; a packet with pages and another flag fails", async () => {
  const recv = new MultifdRecvState({
    channels: 1,
    uuid: UUID,
    method: multifdMethod("zlib"),
    blocks: [new RamBlock({ idstr: "pc.ram", size: 4 * PAGE })],
  }, () => {});
  const [a, b] = memoryLinkPair();
  const f = new QEMUFileWriter(a);
  const packet = (normalPages: number, packetNum: number) =>
    writePacket(f, {
      flags: normalPages ? 0 : MULTIFD_FLAG_SYNC,
      pagesAlloc: MULTIFD_PAGE_COUNT,
      normalPages,
      zeroPages: 0,
      nextPacketSize: 0,
      packetNum,
      ramblock: normalPages ? "pc.ram" : "",
      offsets: normalPages ? [0] : [],
    });
  packet(0, 0);
  await f.flush();
  recv.addChannel(
    { magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid: UUID, id: 0 },
    new QEMUFileReader(b),
    b,
    0,
  );
  try {
    await recv.syncMain();
    packet(1, 1);
    packet(0, 2);
    await f.flush();
    await assert.rejects(recv.syncMain(), (e: unknown) => {
      assert.ok(e instanceof StreamError, String(e));
      assert.equal(e.detail, "multifd channel 0: flags received 0 flags expected 2 (compression zlib)");
      return true;
    });
  } finally {
    a.close();
    await recv.close();
  }
});

Deno.test("multifd recv: a SYNC packet's next_packet_size is not read (QEMU 7.2's zlib leaves it stale)", async () => {
  const rig = new Rig(1);
  try {
    await rig.send(0, { normal: [[1, 0x11]] });
    await rig.sync(0, 517);
    await rig.recv.syncMain();
    await rig.send(0, { normal: [[2, 0x22]] });
    await rig.flush();
    assert.deepEqual(rig.errors, []);
    assert.deepEqual([first(rig.block.page(1)), first(rig.block.page(2))], [0x11, 0x22]);
  } finally {
    await rig.close();
  }
});
