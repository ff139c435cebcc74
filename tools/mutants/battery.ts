/**
 * The mutation battery: realistic migration bugs, each one exact textual change to one place of the
 * engine (tools/mutants/apply.ts). `why` names the bug class QEMU has had and what the change breaks.
 * A refactor that changes the code a mutant names makes its find text miss, and the battery fails.
 */
import type { Mutant } from "./apply.ts";

const ram: Mutant[] = [
  {
    name: "ram-scan-resume-same-page",
    file: "engine/ram.ts",
    find: "this.#scanPage = page + 1;",
    replace: "this.#scanPage = page;",
    why: "the scan resumes on the page it just sent instead of the next one (last_page off by one)",
    equivalent: "the page's bit was just cleared, so findDirty moves past it: only one extra bit test",
  },
  {
    name: "ram-round-end-not-marked",
    file: "engine/ram.ts",
    find: "        this.#roundEnded = true;\n",
    replace: "",
    why: "the scan wrapping past the last block is not seen as the end of a round, so multifd sends no " +
      "per-round SYNC/MULTIFD_FLUSH (the bug commit 294e5a4034's per-round sync fixed): a page re-sent in " +
      "the next round on another channel can be overtaken by its stale copy",
  },
  {
    name: "ram-no-final-sync",
    file: "engine/ram.ts",
    find: "    this.#lastStage = opts.lastStage ?? true;\n    this.syncBitmap();\n",
    replace: "    this.#lastStage = opts.lastStage ?? true;\n",
    why: "ram_save_complete without its last migration_bitmap_sync: pages the guest dirtied between the " +
      "last iteration's sync and the stop are never sent (and a COLO checkpoint misses the pages dirtied " +
      "since the previous one)",
  },
  {
    name: "ram-sync-overwrites-bitmap",
    file: "engine/ram_block.ts",
    find: "bmap[i] = (bmap[i] | v) >>> 0;",
    replace: "bmap[i] = fresh >>> 0;",
    why: "the dirty-log sync assigns the new bits instead of OR-ing them into the migration bitmap, so " +
      "pages still dirty from the previous pass (not yet re-sent) are dropped",
    ci: true,
  },
  {
    name: "ram-sync-keeps-log",
    file: "engine/ram_block.ts",
    find: "const v = Atomics.exchange(log, i, 0) >>> 0;",
    replace: "const v = Atomics.load(log, i) >>> 0;",
    why: "the sync reads the dirty log without clearing it (KVM_GET_DIRTY_LOG without the clear): every " +
      "page ever dirtied is re-sent at every pass and a live guest may never converge",
  },
  {
    name: "ram-zero-check-half-page",
    file: "engine/ram_block.ts",
    find: "page.length >>> 2);",
    replace: "page.length >>> 3);",
    why: "buffer_is_zero given a length in the wrong unit checks only the first half of the page: a page " +
      "whose data is all in its second half goes as a zero page",
  },
  {
    name: "ram-handle-zero-noop",
    file: "engine/ram_block.ts",
    find: "  if (!isZeroPage(page)) page.fill(0);",
    replace: "  void page;",
    why: "ram_handle_zero skipped (the destination assumes its RAM is still zero): a page that held data " +
      "and then turned zero keeps its old content",
  },
  {
    name: "ram-multifd-zero-ignores-receivedmap",
    file: "engine/colo/ram_route.ts",
    find: 'if (this.channel === "main" || wasReceived) handleZeroPage(block.page(index));',
    replace: 'if (this.channel === "main") handleZeroPage(block.page(index));',
    why: "multifd zero pages never clear the page although it was received before (the receivedmap rule " +
      "of multifd_recv_zero_page_process inverted): a page that turned zero keeps its data",
  },
  {
    name: "ram-continue-wrong-block-dst",
    file: "engine/ram.ts",
    find: "    const block = this.#lastRecvBlock;\n",
    replace: "    const block = this.#lastRecvBlock && this.blocks[0];\n",
    why: "a CONTINUE record resolved against the first block instead of the last one received " +
      "(last_recv_block not per-channel/mis-tracked): pages of other blocks land in pc.ram",
  },
  {
    name: "ram-continue-after-block-switch",
    file: "engine/ram.ts",
    find: "const cont = block === last;",
    replace: "const cont = last !== null;",
    why: "the sender sets RAM_SAVE_FLAG_CONTINUE whenever some block was sent before, also after the scan " +
      "moved to another block (last_sent_block not compared): the page lands in the previous block",
    ci: true,
  },
  {
    name: "ram-block-length-unchecked",
    file: "engine/ram.ts",
    find: "      if (len !== block.usedLength) {\n",
    replace: "      if (len !== block.usedLength && len < 0) {\n",
    why: "the destination accepts a block list whose block length differs from its own (the " +
      "'Length mismatch' check of ram_load_precopy lost): RAM of a different size is loaded silently",
  },
  {
    name: "ram-rate-limit-per-second",
    file: "engine/migration.ts",
    find: 'const limit = options.params["max-bandwidth"] / (1000 / BUFFER_DELAY_MS);',
    replace: 'const limit = options.params["max-bandwidth"];',
    why: "the per-slot rate limit computed from max-bandwidth per second without dividing by the slots " +
      "per second (XFER_LIMIT_RATIO mix-ups): the migration runs ten times faster than allowed",
  },
  {
    name: "ram-rate-limit-ignores-multifd",
    file: "engine/migration.ts",
    find: "const sent = () => f.position + (multifd?.bytes ?? 0) + (mappedRam?.bytes ?? 0);",
    replace: "const sent = () => f.position + (mappedRam?.bytes ?? 0);",
    why: "the rate limit counts only the main channel, not the multifd channels' bytes (QEMU counted " +
      "multifd bytes apart and the limit did not apply to them): max-bandwidth has no effect with multifd",
  },
  {
    name: "ram-stop-window-guest-runs",
    file: "engine/migration.ts",
    find: '    await machine.stop("finish-migrate");\n  }\n',
    replace: '    await machine.stop("finish-migrate");\n    machine.start();\n  }\n',
    why: "the guest resumes during the stop window (a runstate change racing the completion): pages it " +
      "writes after the final sync never reach the destination",
    ci: true,
  },
  {
    name: "vcpu-marks-before-write",
    file: "engine/guest/workload.ts",
    find:
      "    new DataView(mem.buffer, mem.byteOffset).setUint32(page * AB_PAGE + word * 4, nextRandom(cpu) | 1);\n" +
      "    markDirty(this.g, block, page);\n",
    replace: "    markDirty(this.g, block, page);\n" +
      "    new DataView(mem.buffer, mem.byteOffset).setUint32(page * AB_PAGE + word * 4, nextRandom(cpu) | 1);\n",
    why: "the vCPU sets a page's dirty bit before its write lands (a dirty log filled ahead of the store, " +
      "the ordering write-protection or PML gives KVM): a sync that takes the bit and a send between the " +
      "two leave the page's last write unsent",
  },
  {
    name: "ram-sync-read-then-clear",
    file: "engine/ram_block.ts",
    find: "const v = Atomics.exchange(log, i, 0) >>> 0;",
    replace: "Atomics.store(log, i, 0);\n      const v = seen >>> 0;",
    why: "the dirty-log sync reads a word and clears it in two steps (a get then a clear, not one " +
      "exchange): a bit the vCPU sets in between is cleared unread and that page's write is never resent",
  },
];

const multifd: Mutant[] = [
  {
    name: "multifd-zero-offsets-first",
    file: "engine/multifd/send.ts",
    find: "const wireOffsets = [...normal, ...zero];",
    replace: "const wireOffsets = [...zero, ...normal];",
    why: "packet layout: zero-page offsets written before the normal ones, while the destination reads the " +
      "first normal_pages offsets as the data pages' (the layout multifd zero-page detection defines)",
  },
  {
    name: "multifd-zero-count-not-sent",
    file: "engine/multifd/packet.ts",
    find: "  v.setUint32(32, p.zeroPages);\n",
    replace: "  v.setUint32(32, 0);\n",
    why: "packet layout: zero_pages left out of the header, so the destination never learns which pages " +
      "turned zero (the field QEMU 9.0 added for multifd zero-page detection)",
  },
  {
    name: "multifd-packet-num-not-advanced",
    file: "engine/multifd/send.ts",
    find: "        packetNum: this.#packetNum++,\n",
    replace: "        packetNum: this.#packetNum,\n",
    why: "SYNC packets do not take a packet_num of their own",
    equivalent: "the destination only records the highest packet_num (QEMU uses it for tracing only)",
  },
  {
    name: "multifd-recv-compression-flag-unchecked",
    file: "engine/multifd/recv.ts",
    find: "if (p.normalPages + p.zeroPages > 0 && flag !== this.opts.method.flag) {",
    replace: "if (p.normalPages + p.zeroPages > 0 && flag !== this.opts.method.flag && flag === 0) {",
    why: "packet flags: a packet with pages compressed by another method than the destination's is " +
      "decoded with the destination's (only a missing flag refused): garbage pages, or a decoder error " +
      "that names the wrong cause",
  },
  {
    name: "multifd-sync-before-flush",
    file: "engine/multifd/send.ts",
    find: "  async sync(): Promise<void> {\n    await this.flush();\n",
    replace: "  async sync(): Promise<void> {\n",
    why: "multifd_send_sync_main without sending the partly filled batch first: its pages go after the " +
      "SYNC, into the next round, or never (after the last round)",
  },
  {
    name: "multifd-sync-overtakes-packet",
    file: "engine/multifd/send.ts",
    find: "      await c.busy;\n      this.#check();\n      writePacket(c.f, {\n",
    replace: "      this.#check();\n      writePacket(c.f, {\n",
    why: "the SYNC packet is written without waiting for the channel's pending packet (pending_job race in " +
      "multifd_send_sync_main): a compressed packet still being compressed lands after the SYNC",
  },
  {
    name: "multifd-recv-barrier-one-round-late",
    file: "engine/multifd/recv.ts",
    find: "while (this.#generation < ch.syncs && ",
    replace: "while (this.#generation + 1 < ch.syncs && ",
    why: "the receive barrier lets a channel run one round ahead of the main channel " +
      "(multifd_recv_sync_main's sem_sync counted off by one): stale copies can land after fresh ones",
  },
  {
    name: "multifd-recv-flush-not-awaited",
    file: "engine/ram.ts",
    find: "if (this.multifd) await this.multifd.syncMain();",
    replace: "if (this.multifd) void this.multifd.syncMain().catch(() => {});",
    why: "the destination's main channel goes on past MULTIFD_FLUSH without waiting for the channels' " +
      "SYNC (multifd_recv_sync_main not waiting): the device state and the next round race the pages",
  },
  {
    name: "multifd-busy-channel-chosen",
    file: "engine/multifd/send.ts",
    find: "        if (!c.busy) {\n",
    replace: "        if (!c.busy || c.id >= 0) {\n",
    why: "channel choice ignores pending_job: a packet is given to a channel still sending the previous " +
      "one, so two packets share one channel's compression stream at once",
    ci: true,
  },
  {
    name: "multifd-round-robin-skipped",
    file: "engine/multifd/send.ts",
    find: "this.#next = (c.id + 1) % this.#channels.length;",
    replace: "this.#next = c.id;",
    why: "channel choice always starts from the channel used last",
    equivalent: "any idle channel is correct; the round robin only spreads the load",
  },
  {
    name: "multifd-detects-zeros-when-none",
    file: "engine/multifd/send.ts",
    find: "if (this.opts.detectZeroPages && isZeroPage(page)) zero.push(off);",
    replace: "if (isZeroPage(page)) zero.push(off);",
    why: "zero-page-detection=none not honoured by the multifd sender (the mode QEMU 9.0 added): zero " +
      "pages are still sent as offsets and counted as duplicate",
  },
  {
    name: "multifd-legacy-also-detects",
    file: "engine/migration.ts",
    find: 'detectZeroPages: options.params["zero-page-detection"] === "multifd",',
    replace: 'detectZeroPages: options.params["zero-page-detection"] !== "none",',
    why: "legacy mode also detects zero pages in the channels",
    equivalent: "in legacy mode the main channel has already sent every zero page, so a channel never " +
      "sees one that is zero at queue time; one turning zero after that is dirty and re-sent anyway",
  },
  {
    name: "multifd-one-stream-for-all-channels",
    file: "engine/multifd/send.ts",
    find: "    const c = new SendChannel(i, link, opts.method.compressor(opts.level));\n",
    replace: '    const shared = Reflect.get(opts, "x-shared") ?? opts.method.compressor(opts.level);\n' +
      '    Reflect.set(opts, "x-shared", shared);\n    const c = new SendChannel(i, link, shared);\n',
    why: "compression: one deflate/zstd stream shared by every channel instead of one per channel, while " +
      "each destination channel inflates its own stream",
  },
  {
    name: "multifd-zlib-no-sync-flush",
    file: "engine/multifd/zlib.ts",
    find: "zlib.createDeflate({ level }), zlib.constants.Z_SYNC_FLUSH,",
    replace: "zlib.createDeflate({ level }), zlib.constants.Z_NO_FLUSH,",
    why: "compression: the zlib stream is not sync-flushed at the end of each packet, so a packet's " +
      "payload stops short of its last pages (zlib_send_prepare must use Z_SYNC_FLUSH)",
    ci: true,
  },
  {
    name: "multifd-zstd-no-flush",
    file: "engine/multifd/zstd.ts",
    find: 'const c = new StreamCodec(stream, zlib.constants.ZSTD_e_flush, "multifd zstd");',
    replace: 'const c = new StreamCodec(stream, zlib.constants.ZSTD_e_continue, "multifd zstd");',
    why: "compression: the zstd stream is not flushed at the end of each packet (ZSTD_e_continue " +
      "instead of ZSTD_e_flush), so a packet's payload is incomplete",
  },
  {
    name: "multifd-uuid-unchecked",
    file: "engine/multifd/recv.ts",
    find: "if (init.uuid.some((b, i) => b !== this.opts.uuid[i])) {",
    replace: "if (init.uuid.some((b, i) => b !== this.opts.uuid[i]) && init.id < 0) {",
    why: "channel handshake: the destination accepts a multifd channel of another migration (the uuid " +
      "check of multifd_recv_initial_packet lost)",
  },
  {
    name: "multifd-channel-id-bound",
    file: "engine/multifd/recv.ts",
    find: "if (init.id >= this.opts.channels) {",
    replace: "if (init.id > this.opts.channels) {",
    why: "channel handshake: the channel id bound is off by one, so id == multifd-channels is accepted " +
      "and indexes past the channel table",
  },
  {
    name: "multifd-channel-id-twice",
    file: "engine/multifd/recv.ts",
    find: "    if (this.#channels[init.id]) throw fail(`received channel id ${init.id} twice`);\n",
    replace: "",
    why: "channel handshake: a second channel with an id already taken replaces the first one, whose " +
      "packets are then never read",
  },
];

const colo: Mutant[] = [
  {
    name: "colo-no-precopy-mirror",
    file: "engine/colo/ram_route.ts",
    find: "    block.testAndSetReceived(index);\n    this.colo?.mirror(block, index);\n",
    replace: "    block.testAndSetReceived(index);\n",
    why: "pages received before COLO state are not mirrored into the COLO cache " +
      "(colo_incoming_start_dirty_log/ram cache init copying too early): the cache starts stale",
  },
  {
    name: "colo-received-touches-ram",
    file: "engine/colo/ram_route.ts",
    find: "    if (this.colo?.inColoState) return;\n",
    replace: "",
    why: "in COLO state a received page is also mirrored from guest RAM into the cache, overwriting the " +
      "page just received with the secondary's stale copy",
    ci: true,
  },
  {
    name: "colo-page-bit-not-recorded",
    file: "engine/colo/ram_route.ts",
    find: "return this.#toCache ? this.colo!.recordPage(block, index) : block.page(index);",
    replace: "return this.#toCache ? this.colo!.page(block, index) : block.page(index);",
    why: "pages received in COLO state go to the cache without their bit in the COLO bitmap " +
      "(colo_cache_from_block_offset without record_bitmap): the flush never copies them",
  },
  {
    name: "colo-zero-bit-not-recorded",
    file: "engine/colo/ram_route.ts",
    find: "else handleZeroPage(colo.recordPage(block, index));",
    replace: "else handleZeroPage(colo.page(block, index));",
    why: "zero pages in COLO state zeroed in the cache without their bit (v3 of the multifd COLO series): " +
      "a page that turned zero keeps its data in the secondary",
  },
  {
    name: "colo-flush-without-secondary-dirty",
    file: "engine/colo/cache.ts",
    find: "const bits = (c.bmap[w] | Atomics.exchange(log, w, 0)) >>> 0;",
    replace: "const bits = c.bmap[w] >>> 0;",
    why: "the checkpoint flush copies only received pages, not those the secondary itself dirtied since " +
      "the last checkpoint (colo_flush_ram_cache without the SVM's dirty bitmap): its own writes survive",
  },
  {
    name: "colo-no-device-reset",
    file: "engine/colo/secondary.ts",
    find: "      if (h.resetDevices) h.machine.resetDevices();\n",
    replace: "",
    why: "the secondary loads a checkpoint's device state over running devices without a reset first " +
      "('colo: Fix crash during device vmstate load', the Q35 crash)",
  },
  {
    name: "colo-apply-before-device-state",
    file: "engine/colo/secondary.ts",
    find: '    const size = await receiveColoValue(h.r, "vmstate-size");\n',
    replace: '    h.cache.flush();\n    const size = await receiveColoValue(h.r, "vmstate-size");\n',
    why: "order of apply: the cache is flushed into the secondary as soon as the RAM is in, before the " +
      "device state has arrived: a primary lost in between leaves new RAM with old devices",
  },
  {
    name: "colo-cache-released-before-channels",
    file: "engine/colo/secondary.ts",
    find: "    await h.multifd?.close();\n    h.cache.release();\n",
    replace: "    h.cache.release();\n    await h.multifd?.close();\n",
    why: "cache lifetime: colo_release_ram_cache before the multifd receive threads terminate " +
      "('Call colo_release_ram_cache() after multifd threads terminate')",
  },
  {
    name: "colo-failover-during-apply-not-deferred",
    file: "engine/colo/secondary.ts",
    find: 'if (this.failover.transition("none", "relaunch") !== "none") {',
    replace: 'if (this.failover.transition("none", "require") !== "none") {',
    why: "FailoverStatus: a failover asked for during the apply goes NONE→REQUIRE instead of RELAUNCH, so " +
      "the secondary still acknowledges the checkpoint and the relaunch path never runs",
  },
  {
    name: "colo-relaunch-lost",
    file: "engine/colo/secondary.ts",
    find: '          this.failover.transition("relaunch", "none");\n' +
      '          this.failover.transition("none", "require");\n',
    replace: '          this.failover.transition("relaunch", "none");\n',
    why: "relaunch during apply: RELAUNCH goes back to NONE but the failover is not required again, so " +
      "the deferred failover never runs (the secondary waits forever)",
  },
  {
    name: "colo-takeover-flushes-partial",
    file: "engine/colo/secondary.ts",
    find: '    this.failover.transition("require", "active");\n    h.link.close();\n',
    replace:
      '    this.failover.transition("require", "active");\n    h.link.close();\n    h.cache.flush();\n',
    why: "what a takeover keeps: the failover flushes a half-received checkpoint from the cache into the " +
      "secondary (instead of keeping the last complete checkpoint)",
  },
  {
    name: "colo-takeover-not-resumed",
    file: "engine/colo/secondary.ts",
    find: '    if (!h.machine.running) h.machine.start();\n    this.failover.transition("active", ' +
      '"completed");\n    h.setStatus("completed");\n',
    replace: '    this.failover.transition("active", "completed");\n    h.setStatus("completed");\n',
    why: "a secondary that takes over while stopped in a checkpoint is left stopped (failover without " +
      "vm_start)",
  },
  {
    name: "colo-primary-not-resumed-on-failover",
    file: "engine/colo/primary.ts",
    find: "    this.host.multifd?.close();\n    if (!this.host.machine.running) this.host.machine.start();\n",
    replace: "    this.host.multifd?.close();\n",
    why: "a primary that fails over while stopped in a checkpoint is left stopped (primary_vm_do_failover " +
      "without vm_start)",
  },
];

const xbzrle: Mutant[] = [
  {
    name: "xbzrle-zrun-word-past-end",
    file: "engine/xbzrle.ts",
    find: "        while (w < we && ow[w] === nw[w]) w++;\n",
    replace: "        while (w <= we && ow[w] === nw[w]) w++;\n",
    why: "encoder run at the page end: the word loop of a zero run reads one word past the page " +
      "(xbzrle_encode_buffer's long-at-a-time loop bound), making a run longer than the page",
  },
  {
    name: "xbzrle-nzrun-word-test-loose",
    file: "engine/xbzrle.ts",
    find: "if (((x - 0x01010101) & ~x & 0x80808080) !== 0) break;",
    replace: "if (x === 0) break;",
    why: "the nzrun word loop stops only at a fully equal word",
    equivalent: "an nzrun may contain equal bytes (the decoder copies them from the encoding): only the " +
      "compression ratio changes",
  },
  {
    name: "xbzrle-nzrun-copies-old-bytes",
    file: "engine/xbzrle.ts",
    find: "      for (let k = 0; k < nz; k++) out[d + k] = newPage[nStart + k];\n",
    replace: "      for (let k = 0; k < nz; k++) out[d + k] = oldPage[nStart + k];\n",
    why: "encoder: a short nzrun's bytes are taken from the cached page instead of the new one",
  },
  {
    name: "xbzrle-decoder-unbounded-nzrun",
    file: "engine/xbzrle.ts",
    find: "    if (d + count > dlen) {\n",
    replace: "    if (d + count > dlen + XBZRLE_MAX_PAGE_SIZE) {\n",
    why: "decoder bounds: an nzrun past the page end is not refused (xbzrle_decode_buffer's bound check, " +
      "CVE-2014-0182 class): a corrupt delta writes past the page",
  },
  {
    name: "xbzrle-cache-not-updated",
    file: "engine/ram_xbzrle.ts",
    find: "    if (!lastStage) cached.set(this.#current);\n",
    replace: "",
    why: "after a page is sent as a delta the cache keeps the old copy, so the next delta is against a " +
      "page the destination no longer has",
    ci: true,
  },
  {
    name: "xbzrle-cache-updated-at-last-stage",
    file: "engine/ram_xbzrle.ts",
    find: "    if (!lastStage) cached.set(this.#current);\n",
    replace: "    cached.set(this.#current);\n",
    why: "the cache is updated in the last stage too",
    equivalent: "nothing reads the cache after the last stage of a migration",
  },
  {
    name: "xbzrle-miss-sends-live-page",
    file: "engine/ram_xbzrle.ts",
    find: '        return { kind: "raw", data: this.cache.get(addr)! };\n',
    replace: '        return { kind: "raw" };\n',
    why: "the page sent raw after a cache miss is read again from guest memory instead of being the " +
      "cache's copy: a guest write in between makes the destination differ from the cache",
  },
  {
    name: "xbzrle-encodes-live-page",
    file: "engine/ram_xbzrle.ts",
    find: "const len = xbzrleEncode(cached, this.#current, this.#encoded);",
    replace: "const len = xbzrleEncode(cached, page, this.#encoded);",
    why: "the delta is encoded from live guest memory while the cache takes the private copy (the " +
      "'page dirtied while being sent' race of save_xbzrle_page)",
  },
  {
    name: "xbzrle-cache-tag-not-updated",
    file: "engine/page_cache.ts",
    find: "    slot.addr = addr;\n    slot.age = currentAge;\n    return buf;\n",
    replace: "    slot.age = currentAge;\n    return buf;\n",
    why: "cache replacement: a slot reused for another page keeps the old page's address, so the old " +
      "page is later encoded against the new one's data",
  },
  {
    name: "xbzrle-zero-page-not-cached",
    file: "engine/ram_xbzrle.ts",
    find: "    if (this.started) this.cache.insertZero(addr, generation);\n",
    replace: "",
    why: "a page sent as a zero page keeps its old content in the XBZRLE cache (xbzrle_cache_zero_page " +
      "missing): its next delta is against data the destination no longer has",
  },
  {
    name: "xbzrle-aging-ignored",
    file: "engine/page_cache.ts",
    find: "if (buf && slot.addr !== addr && slot.age + CACHED_PAGE_LIFETIME > currentAge) return null;",
    replace:
      "if (buf && slot.addr !== addr && slot.age + CACHED_PAGE_LIFETIME > currentAge + 1e9) return null;",
    why: "cache aging: a hot page's slot is taken by any other page at once",
    equivalent: "replacement policy only: whichever page holds the slot, the cache and the destination " +
      "agree on it",
  },
];

const vmstate: Mutant[] = [
  {
    name: "vmstate-too-new-accepted",
    file: "engine/vmstate.ts",
    find: "  if (versionId > vmsd.versionId) {\n",
    replace: "  if (versionId > vmsd.versionId + 1) {\n",
    why: "version check: a device section one version newer than the destination knows is loaded as if " +
      "it were its own version (vmstate_load_state's version_id > vmsd->version_id check lost)",
  },
  {
    name: "savevm-section-too-new-accepted",
    file: "engine/savevm.ts",
    find: "          if (versionId > entry.versionId) {\n",
    replace: "          if (versionId > entry.versionId + 1) {\n",
    why: "version check in qemu_loadvm_section_start_full: a section newer than the local handler passes " +
      "the section header",
  },
  {
    name: "vmstate-too-old-accepted",
    file: "engine/vmstate.ts",
    find: "  if (versionId < vmsd.minimumVersionId) {\n",
    replace: "  if (versionId < vmsd.minimumVersionId - 1) {\n",
    why: "version check: a section older than minimum_version_id is loaded (fields it lacks keep " +
      "whatever was there)",
  },
  {
    name: "vmstate-field-version-ignored",
    file: "engine/vmstate.ts",
    find: "    if (!fieldExists(field, versionId)) continue;\n    const where",
    replace: "    const where",
    why: "a field added in a later version is read from an older stream (VMSTATE_*_V ignored on load): " +
      "the rest of the section is read shifted",
  },
  {
    name: "vmstate-subsection-never-sent",
    file: "engine/vmstate.ts",
    find: "    if (sub.needed && !sub.needed(state)) continue;\n",
    replace: "    if (sub.needed) continue;\n",
    why: "subsections: a needed subsection is never sent (vmstate_subsection_save's needed() test inverted)",
    ci: true,
  },
  {
    name: "vmstate-subsection-always-sent",
    file: "engine/vmstate.ts",
    find: "    if (sub.needed && !sub.needed(state)) continue;\n",
    replace: "",
    why: "subsections: a subsection is sent even when not needed, which an older destination refuses " +
      "as unknown (the cross-version rule subsections exist for)",
  },
  {
    name: "vmstate-unknown-subsection-skipped",
    file: "engine/vmstate.ts",
    find: "    if (!sub) throw r.error(`VM subsection '${name}' in '${vmsd.name}' does not exist`);\n",
    replace: "    if (!sub) return;\n",
    why: "subsections: an unknown subsection is left in the stream instead of refused with its name",
  },
  {
    name: "savevm-footer-id-unchecked",
    file: "engine/savevm.ts",
    find: "  if (id !== sectionId) {\n",
    replace: "  if (id !== sectionId && id < 0) {\n",
    why: "footers: a section footer with another section's id is accepted (check_section_footer)",
  },
  {
    name: "savevm-footer-marker-unchecked",
    file: "engine/savevm.ts",
    find:
      "  if (marker !== QEMU_VM_SECTION_FOOTER) throw r.error(`Missing section footer for ${idstr}`, at);\n",
    replace: "",
    why: "footers: a section without its footer byte is accepted and the stream is read one byte off",
  },
  {
    name: "savevm-device-section-ids-repeat",
    file: "engine/savevm.ts",
    find: "    const id = firstSectionId + i;\n",
    replace: "    const id = firstSectionId;\n",
    why: "section ids: every device's FULL section carries the same section id",
    equivalent: "FULL sections are matched by idstr and instance; the id only has to match its own footer",
  },
  {
    name: "savevm-machine-type-unchecked",
    file: "engine/savevm.ts",
    find: "  if (machineType !== local.machineType) {\n",
    replace: "  if (machineType !== local.machineType && len > 255) {\n",
    why: "configuration section: a stream from another machine type is loaded",
  },
  {
    name: "savevm-no-vmdesc",
    file: "engine/migration.ts",
    find: "      else saveEofAndVmdesc(f, cfgDesc, devices);\n",
    replace: "      else f.put8(QEMU_VM_EOF);\n",
    why: "vmdesc: the JSON description after EOF is not written, which analyze-migration.py needs",
  },
];

const failure: Mutant[] = [
  {
    name: "fail-source-guest-not-given-back",
    file: "engine/migration.ts",
    find: "      if (this.#vmWasRunning && !machine.live) machine.start();\n",
    replace: "",
    why: "a failed or cancelled migration leaves the source guest stopped (migration_iteration_finish " +
      "not restarting the VM)",
  },
  {
    name: "fail-return-path-shut-ignored",
    file: "engine/migration.ts",
    find: "    if (flag !== 0) throw siblingError(flag);\n",
    replace: "",
    why: "return path: SHUT 1 (the destination failed to load) is ignored and the source reports completed",
    equivalent: "the return-path reader already records SHUT 1 as the migration's error (as QEMU's rp " +
      "thread marks the source bad), and the completion path checks it right after: this check is the " +
      "second of two",
  },
  {
    name: "fail-no-wait-for-shut",
    file: "engine/migration.ts",
    find: "      if (rp) await this.#awaitShut(rp);\n",
    replace: "",
    why: "return path: the source completes without waiting for the destination's SHUT, so it says " +
      "completed before the destination has loaded (or failed)",
  },
  {
    name: "fail-dest-no-exit-on-error",
    file: "engine/incoming.ts",
    find: "    if (this.exitOnError) this.host.exit(1);\n",
    replace: "",
    why: "exit-on-error: a failed incoming migration does not exit the destination (QEMU exits with 1 " +
      "unless exit-on-error is false)",
  },
  {
    name: "fail-dest-always-exits",
    file: "engine/incoming.ts",
    find: "    if (this.exitOnError) this.host.exit(1);\n",
    replace: "    this.host.exit(1);\n",
    why: "exit-on-error=false not honoured: the destination exits although management asked to keep it",
  },
  {
    name: "fail-dest-reports-consequence",
    file: "engine/incoming.ts",
    find: "      this.#fail(this.#channelError ?? e);\n",
    replace: "      this.#fail(e);\n",
    why: "errors reported: when a multifd channel broke, the destination reports the main channel's " +
      "consequent error instead of the channel's own",
  },
  {
    name: "fail-cancel-reported-as-failed",
    file: "engine/migration.ts",
    find:
      'if (this.status === "cancelling" || e instanceof MigrationCancelled || e instanceof PostcopyAbort) {',
    replace: "if (e instanceof MigrationCancelled || e instanceof PostcopyAbort) {",
    why: "a cancel that interrupts a blocked write ends in 'failed' instead of 'cancelled' (the status " +
      "seen by migrate_cancel's caller)",
  },
];

const postcopy: Mutant[] = [
  {
    name: "postcopy-discard-keeps-page",
    file: "engine/postcopy_ram.ts",
    find: "        block.clearReceived(p);\n",
    replace: "",
    why: "a discard that leaves the page mapped (ram_discard_range failing silently): the destination's " +
      "guest reads the stale copy without faulting, and the page's resend meets EEXIST",
  },
  {
    name: "postcopy-discard-run-short",
    file: "engine/ram.ts",
    find: "ranges.push([p * TARGET_PAGE_SIZE, (end - p) * TARGET_PAGE_SIZE]);",
    replace: "ranges.push([p * TARGET_PAGE_SIZE, (end - p - 1) * TARGET_PAGE_SIZE]);",
    why: "each run of dirty pages discarded one page short (the host-page chunking bugs of " +
      "postcopy_chunk_hostpages): the run's last page keeps its stale copy on the destination",
  },
  {
    name: "postcopy-request-resends-clean-page",
    file: "engine/ram.ts",
    find: "      if (r.block.testAndClearDirty(page)) {",
    replace: "      if (r.block.testAndClearDirty(page) || true) {",
    why: "get_queued_page sending a requested page that was sent already (its dirty bit clear): the " +
      "destination places it twice (UFFDIO_COPY's EEXIST fails the migration)",
  },
  {
    name: "postcopy-recv-bitmap-bit-order",
    file: "engine/ram.ts",
    find: "if ((bitmap[p >>> 3] >> (p & 7)) & 1) block.testAndClearDirty(p);",
    replace: "if ((bitmap[p >>> 3] >> (7 - (p & 7))) & 1) block.testAndClearDirty(p);",
    why: "the received bitmap read in the wrong bit order on resume (the bitmap_to_le/from_le class): " +
      "received pages sent again and pages never received left clean",
  },
  {
    name: "postcopy-request-lost",
    file: "engine/postcopy_ram.ts",
    find: "    if (!rp) return;\n    const named",
    replace: "    if (!rp || block === this.#lastReqBlock) return;\n    const named",
    why: "a page request in the block of the previous one never sent (the REQ_PAGES / REQ_PAGES_ID " +
      "distinction mishandled): the faulting guest waits until the background stream brings the page",
  },
  {
    name: "postcopy-multifd-not-flushed",
    file: "engine/migration_postcopy.ts",
    find: "      await ram.flushMultifd(f);\n",
    replace: "",
    why: "postcopy starts without flushing multifd (the multifd+postcopy switch): a page still queued on " +
      "a multifd channel lands after the discard or after the destination placed a newer copy",
  },
];

const mappedRam: Mutant[] = [
  {
    name: "mapped-ram-page-wrong-offset",
    file: "engine/ram_mapped.ts",
    find: "await this.link.pwrite(buf, run.mb.pageOffset(run.first));",
    replace: "await this.link.pwrite(buf, run.mb.pageOffset(run.first + 1));",
    ci: true,
    why: "the main thread writes a run of pages one page past its offset (file_write_ramblock_iov's " +
      "offset arithmetic): the load reads each page from where its neighbour was written",
  },
  {
    name: "mapped-ram-multifd-page-wrong-offset",
    file: "engine/multifd/send.ts",
    find: "await link.pwrite(run.data, mb.pageOffset(run.first));",
    replace: "await link.pwrite(run.data, mb.pageOffset(run.first) + 512);",
    why: "a multifd channel writes its pages at a misaligned offset (the block's pages_offset mixed up): " +
      "the pages the load reads are torn across two",
  },
  {
    name: "mapped-ram-zero-bit-kept",
    file: "engine/ram_mapped.ts",
    find: "    this.of(block).clear(page);\n",
    replace: "",
    why: "a page that turned zero keeps its bit (save_zero_page's clear_bit lost): the load reads the " +
      "older, non-zero copy still in the file",
  },
  {
    name: "mapped-ram-bitmap-before-channels",
    file: "engine/ram.ts",
    find: "    if (this.multifd) await this.#multifdFlushAndSync(f);\n" +
      "    // After the channels are done: their pages' bits are set (ram_save_file_bmap).\n" +
      "    await this.mappedRam?.writeBitmaps();\n",
    replace:
      "    await this.mappedRam?.writeBitmaps();\n    if (this.multifd) await this.#multifdFlushAndSync(f);\n",
    why: "the bitmap written before the multifd channels finished (ram_save_file_bmap ahead of the sync): " +
      "the last batches' bits are missing and the load leaves those pages zero",
  },
  {
    name: "mapped-ram-direct-io-main-channel",
    file: "engine/incoming.ts",
    find: "{ direct: i > 0 && direct }",
    replace: "{ direct }",
    why: "direct-io applied to the main channel's handle too (one descriptor for everything, which QEMU " +
      "avoids with a second one): the stream's small unaligned reads fail with EINVAL",
  },
  {
    name: "mapped-ram-capabilities-not-validated",
    file: "engine/savevm.ts",
    find: "  if (mismatches.length) throw r.error(",
    replace: "  if (mismatches.length && false) throw r.error(",
    why: "configuration_validate_capabilities skipped: a destination without mapped-ram reads the page " +
      "offsets' header as RAM records instead of refusing the file",
  },
];

const tls: Mutant[] = [
  {
    name: "tls-verify-peer-ignored-without-cert",
    file: "engine/crypto/tls_session.ts",
    find:
      '  if (!creds.verifyPeer) return null;\n  if (!peer) return "Verify failed: No certificate was found.";\n  const cert = parse(peer);\n  if (!signedByCa(creds, cert)) return "Verify failed: The certificate hasn\'t got a known issuer.";\n  if (distinguishedName(peer) === "") return NO_DN;\n  if (authz)',
    replace:
      '  if (!creds.verifyPeer || !peer) return null;\n  const cert = parse(peer);\n  if (!signedByCa(creds, cert)) return "Verify failed: The certificate hasn\'t got a known issuer.";\n  if (distinguishedName(peer) === "") return NO_DN;\n  if (authz)',
    why: "verify-peer honoured only when the client sends a certificate (the anonymous session let " +
      "through): a client with no certificate migrates into a destination that demands one",
  },
  {
    name: "tls-client-chain-not-checked",
    file: "engine/crypto/tls_session.ts",
    find:
      '  const cert = parse(peer);\n  if (!signedByCa(creds, cert)) return "Verify failed: The certificate hasn\'t got a known issuer.";\n  if (distinguishedName(peer) === "") return NO_DN;\n  if (authz)',
    replace: '  const cert = parse(peer);\n  if (distinguishedName(peer) === "") return NO_DN;\n  if (authz)',
    why: "the server takes a client certificate without checking who signed it (what Deno's TLS server " +
      "does by itself): a certificate with the right name from any CA gets in",
  },
  {
    name: "tls-authz-skipped",
    file: "engine/crypto/tls_session.ts",
    find: "  if (authz) {",
    replace: "  if (authz && false) {",
    why: "the authz check after the handshake skipped (qcrypto_tls_session_check_credentials without " +
      "its authz step): any client the CA signed gets in",
  },
  {
    name: "tls-hostname-not-checked",
    file: "engine/crypto/tls_session.ts",
    find: "  return matches ? null : `Certificate does not match the hostname ${hostname}`;",
    replace: "  return null;",
    why: "the server's certificate checked against the CA but not against the name the source " +
      "connected to: any certificate from the CA passes as the destination",
  },
  {
    name: "tls-main-channel-only",
    file: "engine/engine.ts",
    find: "connect = async () => ({ link: await open(), returnPath: true, openChannel: open });",
    replace: "connect = async () => ({\n        link: await open(),\n        returnPath: true,\n" +
      "        openChannel: () => this.net.connect(addr),\n      });",
    why: "TLS on the main channel only (multifd_tls_channel_connect not called): the multifd channels " +
      "carry the guest's pages in the clear, and a destination that expects TLS cannot read them",
  },
  {
    name: "tls-psk-key-misread",
    file: "engine/crypto/tls_creds.ts",
    find: "    keys.set(line.slice(0, i), key.toLowerCase());",
    replace: '    keys.set(line.slice(0, i), "00");',
    why: "keys.psk parsed wrong (each username gets the same key, not its own): a source holding " +
      "another key completes its handshake and migrates into the destination",
  },
  {
    name: "tls-empty-dn-accepted",
    file: "engine/crypto/tls_session.ts",
    find: '  if (distinguishedName(peer) === "") return NO_DN;\n  if (hostname === null',
    replace: "  if (hostname === null",
    why: "the peer's distinguished name not required: a server certificate that names nobody is " +
      "checked against the host alone (QEMU refuses it before the name check)",
  },
  {
    name: "tls-multifd-channel-peeked",
    file: "engine/incoming.ts",
    find: '      const peek = !this.host.options.params["tls-creds"];',
    replace: "      const peek = true;",
    why: "the destination peeks at a TLS channel's first bytes as if it were plain: a main channel the " +
      "source hung up on after its certificate check ends the destination, which must keep waiting",
  },
];

const fds: Mutant[] = [
  {
    name: "fd-name-kept-after-migrate",
    file: "engine/monitor/fds.ts",
    find: "    m!.delete(name);\n    return fd;",
    replace: "    return fd;",
    why: "migrate fd:NAME uses the descriptor but leaves the name (monitor_get_fd not removing it): a " +
      "later closefd closes the channel under the migration, a later getfd reuses a live name",
  },
  {
    name: "fdset-direct-ignored",
    file: "engine/monitor/fds.ts",
    find: " && this.host.isDirect(x.fd) === direct",
    replace: "",
    why: "an fdset open that ignores O_DIRECT takes the set's first descriptor for every channel: the " +
      "main channel's unaligned stream goes through an O_DIRECT descriptor and fails with EINVAL",
  },
  {
    name: "fdset-access-mode-ignored",
    file: "engine/monitor/fds.ts",
    find: "this.host.accessMode(x.fd) === (flags & O_ACCMODE) && ",
    replace: "",
    why: "an fdset open that ignores the access mode hands a writer a read-only descriptor (or a reader " +
      "a write-only one): the failure comes later, at the first write, instead of at migrate",
  },
];

const switchover: Mutant[] = [
  {
    name: "auto-converge-never-throttles",
    file: "engine/cpu_throttle.ts",
    find: "    if (dirtiedBytes <= threshold) return null;",
    replace: "    if (dirtiedBytes <= threshold || true) return null;",
    why: "auto-converge that never finds the dirty rate too high (migration_trigger_throttle not " +
      "comparing against what was sent): the vCPU is never slowed and the guest never converges by it",
  },
  {
    name: "switchover-before-ack",
    file: "engine/migration.ts",
    find:
      '    return !this.host.options.cap("switchover-ack") || !this.#vmWasRunning || this.#switchoverAcked;',
    replace: "    return true;",
    why: "the source switches over once converged without waiting for the destination's " +
      "RP_SWITCHOVER_ACK: a device that needed more time (VFIO's) is stopped before it is ready",
  },
  {
    name: "return-path-garbage-not-fatal",
    file: "engine/return_path.ts",
    find: "      if (!this.lostChannel) onShutError(new Error(`return path: ${err.message}`));\n",
    replace: "",
    why: "garbage on the return path ends its reader but not the migration (QEMU 10.0 records the error " +
      "and iterates on): a live guest waits for ever for the switchover-ack the garbage replaced",
  },
  {
    name: "return-path-length-unchecked",
    file: "engine/return_path.ts",
    find: "      if ((spec.len !== -1 && len !== spec.len) || len > RP_MAX_LEN) {",
    replace: "      if (len > 0xffff) {",
    why: "a return-path message's length is not checked against its type before its body is read: a " +
      "length made long by garbage leaves the source waiting for bytes that never come",
  },
];

/** The dirty limit: a quota that must slow the vCPU. */
const dirtyLimit: Mutant[] = [
  {
    name: "dirty-limit-never-throttles",
    file: "engine/dirtylimit.ts",
    find: "    this.machine.vcpu.setThrottle(this.#pct);\n  }",
    replace: "  }",
    why: "set-vcpu-dirty-limit records the quota and measures the rate but never throttles the vCPU: " +
      "query-vcpu-dirty-limit says limited while the guest dirties as fast as ever",
  },
  {
    name: "dirty-limit-migration-ignored",
    file: "engine/migration.ts",
    find:
      '          if (trigger.period(dirtied, sent(), options.params["throttle-trigger-threshold"]) === null) return;\n',
    replace: "          return;\n",
    why: "a migration with the dirty-limit capability never limits the vCPU when it does not converge " +
      "(migration_dirty_limit_guest never called): the capability is accepted and does nothing",
  },
];

/** Guest suspend: the run state a migration must carry. */
const suspend: Mutant[] = [
  {
    name: "suspended-state-not-carried",
    file: "engine/incoming.ts",
    find: '      this.#setStatus("completed");\n      machine.resumeIncoming(this.host.autostart());',
    replace: '      this.#setStatus("completed");\n      if (this.host.autostart()) machine.start();\n' +
      '      else machine.setRunstate("paused");',
    why: "the destination ignores the global state and starts the guest as autostart says (QEMU before " +
      "9.0): a guest migrated while suspended wakes up running on the destination",
  },
  {
    name: "stop-forgets-suspended",
    file: "engine/guest/machine.ts",
    find: '      this.wasSuspended = true;\n      this.opts.emit("STOP");',
    replace: '      this.opts.emit("STOP");',
    why: "stop on a suspended guest forgets that it slept (vm_was_suspended): the next start or the " +
      "destination after a stopped migration runs a guest that should be asleep",
  },
];

/** x-ignore-shared: shared memory is mapped by the destination, everything else is migrated. */
const ignoreShared: Mutant[] = [
  {
    name: "ignore-shared-block-sent",
    file: "engine/ram.ts",
    find:
      "    this.blocks = listed.filter((b) => !ramblockIsIgnored(b, this.#ignoreShared, this.#cprTransfer));",
    replace: "    this.blocks = listed.filter((b) => !ramblockIsIgnored(b, false, this.#cprTransfer));",
    why: "the source tracks and sends a block x-ignore-shared leaves out: the shared RAM crosses the " +
      "wire (upstream's check: under 4 MiB sent) and the destination overwrites memory it maps",
    ci: true,
  },
  {
    name: "ignore-shared-private-block-left-out",
    file: "engine/ram.ts",
    find: "  return cprTransfer || (ignoreShared && block.share);",
    replace: "  return cprTransfer || ignoreShared;",
    why: "x-ignore-shared leaves out every block, shared or not (ramblock_is_ignored without " +
      "qemu_ram_is_shared): private RAM such as vga.vram never reaches the destination",
  },
  {
    name: "cpr-reboot-saves-running-guest",
    file: "engine/migration.ts",
    find: '      const cpr = options.params.mode !== "normal";',
    replace: "      const cpr = false;",
    why: "mode cpr-reboot migrates like a normal live migration (migrate_fd_connect not stopping the VM " +
      "for cpr): RAM saved from a running guest, while the restarted QEMU resumes from the image",
  },
  {
    name: "cpr-transfer-target-fresh-memory",
    file: "engine/guest/machine.ts",
    find: "        return new RamBlock(spec, undefined, { ram: host.adopt(fd, b.size), share: true });\n",
    replace:
      '        return new RamBlock(spec, undefined, { ram: host.map({ type: "memfd", id: spec.idstr, share: true }, b.size), share: true });\n',
    why: "cpr-transfer's target takes the CPR state but maps fresh memory instead of the descriptors it " +
      "was passed: with no page sent, the guest resumes on empty RAM",
  },
  {
    name: "cpr-transfer-sends-ram",
    file: "engine/migration.ts",
    find: '          cprTransfer: options.params.mode === "cpr-transfer",\n',
    replace: "",
    why: "cpr-transfer's source migrates RAM as in normal mode (migrate_ram_is_ignored without the mode): " +
      "pages cross into memory the target already maps",
  },
  {
    name: "cpr-transfer-no-hangup-wait",
    file: "engine/engine.ts",
    find: "      await hangup;\n",
    replace: "",
    why: "the source connects the main channel without waiting for the target to hang up the cpr channel: " +
      "a target that listens only after migrate-incoming is not there yet",
  },
];

export const BATTERY: readonly Mutant[] = [
  ...ram,
  ...multifd,
  ...colo,
  ...xbzrle,
  ...vmstate,
  ...failure,
  ...postcopy,
  ...mappedRam,
  ...tls,
  ...fds,
  ...switchover,
  ...suspend,
  ...dirtyLimit,
  ...ignoreShared,
];

/** The fixed fast subset CI runs (`--subset ci`): mutants the full tier catches in its first cases. */
export const SUBSETS: Record<string, (m: Mutant) => boolean> = {
  ci: (m) => m.ci === true,
};
