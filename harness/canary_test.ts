/**
 * The canary: a single byte of guest RAM corrupted in flight must fail the memory check, and the report
 * must name the block, the page, the offset and the bytes. Without this, a check that could never fail
 * would look like a passing suite.
 */
import assert from "node:assert/strict";
import type { PrecopyCase } from "./families/precopy/case.ts";
import { runCase } from "./runner.ts";

/**
 * With zero-page detection off every page is a full record: the first page's data starts at byte 120
 * (header 8, configuration 22, RAM START 17, block list 40, EOS 8, footer 5, PART header 5, page header
 * 8 + idstr 7) and each further page adds 8 + 4096 bytes (CONTINUE header and data).
 */
// Within the first 64 pages: ram_save_iterate only checks its 50 ms budget every 64 pages, so no new
// PART section can start before it and shift the offsets.
const PAGE = 40;
const BYTE = 0x64;
const OFFSET = 120 + PAGE * (8 + 4096) + BYTE;

const canary: PrecopyCase = {
  name: "/migration/canary/one-byte-corrupted",
  tier: "smoke",
  flow: "precopy",
  why: "a check that could never fail would look like a passing suite",
  transport: "unix",
  srcParams: { "zero-page-detection": "none" },
  fault: { kind: "corrupt", offset: OFFSET, xor: 0x5a },
};

Deno.test("canary: one corrupted byte of page data fails the RAM check and is located exactly", async () => {
  const r = await runCase(canary, { seed: 1, artifactsDir: null });
  assert.ok(!r.ok, "the migration with a corrupted page byte passed the checks");
  const msg = r.error!.message;
  assert.match(msg, /guest RAM differs in 1 page\(s\) between source and target/);
  assert.match(
    msg,
    new RegExp(
      `block pc\\.ram page ${PAGE} \\(block offset 0x${
        (PAGE * 4096).toString(16)
      }\\): 1 byte\\(s\\) differ, first at page offset 0x${BYTE.toString(16)}`,
    ),
  );
  assert.match(
    msg,
    /replay: deno task matrix --filter '\/migration\/canary\/one-byte-corrupted' --seed 1\n/,
  );
});

Deno.test("canary: the same case without the fault passes", async () => {
  const r = await runCase({ ...canary, fault: undefined }, { seed: 1, artifactsDir: null });
  assert.ok(r.ok, r.error?.message);
});
