/**
 * The page route on its own: for each channel, COLO phase and page kind, where the bytes land, which
 * bits are set (receivedmap, COLO bitmap), and what the routing defects change.
 */
import assert from "node:assert/strict";
import { RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import { defectsOf } from "../testing/defects.ts";
import { ColoCache } from "./cache.ts";
import { type RamChannel, RamRoute } from "./ram_route.ts";

type Phase = "no-colo" | "precopy" | "colo";

interface Seen {
  guest: number;
  cache: number | null;
  received: boolean;
  recorded: number;
}

/**
 * Page 0 holds 0x55 in guest RAM and 0x66 in the cache (and `receivedBefore` says whether it counts as
 * received); then one page arrives: normal (bytes 0x99) or zero.
 */
function route(
  channel: RamChannel,
  phase: Phase,
  kind: "normal" | "zero",
  opts: { defects?: string[]; receivedBefore?: boolean } = {},
): Seen {
  const block = new RamBlock({ idstr: "pc.ram", size: 4 * TARGET_PAGE_SIZE });
  const colo = phase === "no-colo" ? null : new ColoCache([block]);
  block.page(0).fill(0x55);
  colo?.page(block, 0).fill(0x66);
  if (opts.receivedBefore ?? true) block.testAndSetReceived(0);
  if (colo) colo.inColoState = phase === "colo";
  const r = new RamRoute(channel, colo, defectsOf(new Set(opts.defects)));
  if (kind === "normal") {
    r.host(block, 0).fill(0x99);
    r.received(block, 0);
  } else {
    r.zeroPage(block, 0);
  }
  return {
    guest: block.page(0)[0],
    cache: colo ? colo.page(block, 0)[0] : null,
    received: block.testAndSetReceived(0),
    recorded: colo?.pendingPages() ?? 0,
  };
}

// Guards the rule shared by both channels (DESIGN 2.5): without x-colo and before COLO state a page goes
// to guest RAM (mirrored into the cache) and is marked received; in COLO state only the cache changes and
// the page's bit is recorded, for normal and zero pages alike. Each row fails if its branch is changed.
Deno.test("ram route: where normal and zero pages go, on either channel", async (t) => {
  for (const channel of ["main", "multifd"] as const) {
    await t.step(`${channel}: normal pages`, () => {
      assert.deepEqual(route(channel, "no-colo", "normal"), {
        guest: 0x99,
        cache: null,
        received: true,
        recorded: 0,
      });
      assert.deepEqual(route(channel, "precopy", "normal"), {
        guest: 0x99,
        cache: 0x99,
        received: true,
        recorded: 0,
      });
      assert.deepEqual(route(channel, "colo", "normal"), {
        guest: 0x55,
        cache: 0x99,
        received: true,
        recorded: 1,
      });
      // In COLO state the receivedmap is left alone (QEMU updates it only outside COLO state).
      assert.equal(route(channel, "colo", "normal", { receivedBefore: false }).received, false);
    });
    await t.step(`${channel}: zero pages of received pages`, () => {
      assert.deepEqual(route(channel, "no-colo", "zero"), {
        guest: 0,
        cache: null,
        received: true,
        recorded: 0,
      });
      assert.deepEqual(route(channel, "precopy", "zero"), {
        guest: 0,
        cache: 0,
        received: true,
        recorded: 0,
      });
      assert.deepEqual(route(channel, "colo", "zero"), {
        guest: 0x55,
        cache: 0,
        received: true,
        recorded: 1,
      });
    });
  }
});

// Guards the one difference between the channels: a zero page for a page never received. The main
// channel writes zeros (ram_handle_zero); multifd leaves it untouched and only marks it received
// (multifd_recv_zero_page_process), since fresh destination memory is already zero.
Deno.test("ram route: a zero page for a never-received page, main channel vs multifd", () => {
  assert.deepEqual(route("main", "no-colo", "zero", { receivedBefore: false }), {
    guest: 0,
    cache: null,
    received: true,
    recorded: 0,
  });
  assert.deepEqual(route("multifd", "no-colo", "zero", { receivedBefore: false }), {
    guest: 0x55,
    cache: null,
    received: true,
    recorded: 0,
  });
  // Before COLO state the cache mirrors guest RAM even when the page was left alone.
  assert.equal(route("multifd", "precopy", "zero", { receivedBefore: false }).cache, 0x55);
});

// Guards the defect switches themselves: each alters the COLO-state rule exactly as its description in
// engine/testing/defects.ts says, and nothing outside COLO state.
Deno.test("ram route: the routing defects", () => {
  const bypass = ["multifd-colo-bypass-cache"];
  assert.deepEqual(route("multifd", "colo", "normal", { defects: bypass }), {
    guest: 0x99,
    cache: 0x66,
    received: true,
    recorded: 0,
  });
  assert.deepEqual(route("multifd", "colo", "zero", { defects: bypass }), {
    guest: 0,
    cache: 0x66,
    received: true,
    recorded: 0,
  });
  const zeroNotRecorded = ["colo-zero-not-recorded"];
  assert.deepEqual(route("multifd", "colo", "zero", { defects: zeroNotRecorded }), {
    guest: 0x55,
    cache: 0,
    received: true,
    recorded: 0,
  });
  assert.equal(route("multifd", "colo", "normal", { defects: zeroNotRecorded }).recorded, 1);
  for (const defects of [bypass, zeroNotRecorded]) {
    for (const kind of ["normal", "zero"] as const) {
      assert.deepEqual(route("multifd", "precopy", kind, { defects }), route("multifd", "precopy", kind));
    }
  }
});
