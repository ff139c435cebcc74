import assert from "node:assert/strict";
import { checkGuestsRam } from "./guests_ram.ts";

Deno.test("check_guests_ram: uniform memory and one edge pass", () => {
  assert.equal(checkGuestsRam(new Uint8Array(100).fill(7), 0x100000).bad, 0);
  const m = new Uint8Array(100).fill(8);
  m.fill(7, 40);
  assert.equal(checkGuestsRam(m, 0x100000).bad, 0);
  // Wraparound: previous 0, current 255 is the legal edge.
  const w = new Uint8Array(10).fill(0);
  w.fill(255, 5);
  assert.equal(checkGuestsRam(w, 0x100000).bad, 0);
});

Deno.test("check_guests_ram: a single wrong byte is caught and located", () => {
  const m = new Uint8Array(100).fill(9);
  m[57] = 200;
  const r = checkGuestsRam(m, 0x100000);
  assert.ok(r.bad > 0);
  assert.match(r.lines[0], /at 0x139000 .*current = 200/);
});

Deno.test("check_guests_ram: a second edge is an error", () => {
  const m = new Uint8Array(100).fill(9);
  m.fill(8, 30);
  m.fill(7, 60);
  assert.equal(checkGuestsRam(m, 0).bad, 1);
});
