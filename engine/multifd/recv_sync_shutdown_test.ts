/**
 * Bug: when the multifd channels were shut down (a COLO takeover, a yank) while the main loader waited in
 * multifd_recv_sync_main, the wait never ended: a channel that stopped on an error during the shutdown
 * was neither an error nor "ended", so the takeover hung with the loader parked there (1 run in 4 of
 * /migration/regressions/colo-cache-outlives-multifd-channels). A shutdown must end a pending sync.
 */
import assert from "node:assert/strict";
import "./methods.ts";
import { multifdMethod } from "./compression.ts";
import { MULTIFD_MAGIC, MULTIFD_VERSION } from "./packet.ts";
import { MultifdRecvState } from "./recv.ts";
import { QEMUFileReader } from "../qemu_file.ts";
import { RamBlock } from "../ram_block.ts";
import { memoryLinkPair } from "../transport/link.ts";

Deno.test("regression: shutting the multifd channels down ends a pending sync at once", async () => {
  const uuid = new Uint8Array(16);
  const recv = new MultifdRecvState({
    channels: 2,
    uuid,
    method: multifdMethod("none"),
    blocks: [new RamBlock({ idstr: "pc.ram", size: 16 * 4096 })],
  }, () => {});
  const peers = [];
  for (let id = 0; id < 2; id++) {
    const [a, b] = memoryLinkPair(1 << 16);
    peers.push(a);
    // Half a packet header: the channel is mid-read when the shutdown comes, so it stops on an error.
    await a.write(new Uint8Array(100));
    recv.addChannel(
      { magic: MULTIFD_MAGIC, version: MULTIFD_VERSION, uuid, id },
      new QEMUFileReader(b),
      b,
      0,
    );
  }
  const sync = recv.syncMain();
  const t0 = performance.now();
  const closing = recv.close();
  await assert.rejects(sync, /shut down while waiting for their SYNC|closed before its SYNC/);
  await closing;
  assert.ok(performance.now() - t0 < 1000, "the sync waited on after the shutdown");
  for (const p of peers) p.close();
});
