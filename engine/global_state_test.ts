import assert from "node:assert/strict";
import { GlobalStateDevice, incomingRunstate } from "./global_state.ts";
import { encode, withReader } from "./testing/streams_test_util.ts";
import { loadState, saveState } from "./vmstate.ts";

/** The section body and one byte after it (the loader peeks past a body for subsections). */
const body = (g: GlobalStateDevice) =>
  encode((w) => {
    saveState(w, g.vmsd, g.state);
    w.put8(0);
  });

/** The device's section body as the source writes it, loaded by a fresh destination's device. */
async function roundTrip(src: GlobalStateDevice): Promise<GlobalStateDevice> {
  const dst = new GlobalStateDevice();
  await withReader(await body(src), (r) => loadState(r, dst.vmsd, dst.state, 1));
  return dst;
}

Deno.test("globalstate: 104 bytes on the wire, QEMU 9.0's layout (size, 32-byte name, two flags, 66 unused)", async () => {
  const g = new GlobalStateDevice();
  g.store("suspended", false);
  const bytes = await body(g);
  assert.equal(bytes.length, 4 + 100 + 1);
  assert.deepEqual([...bytes.subarray(0, 4)], [0, 0, 0, 10]); // "suspended" and its NUL
  assert.equal(new TextDecoder().decode(bytes.subarray(4, 13)), "suspended");
  assert.deepEqual([bytes[36], bytes[37]], [1, 0]);
  const dst = await roundTrip(g);
  assert.deepEqual(dst.received, { runstate: "suspended", wasSuspended: false });
});

Deno.test("globalstate: the destination's run state follows the source's, autostart only for a live one", async () => {
  const cases: [Parameters<GlobalStateDevice["store"]>, boolean, string][] = [
    [["running", false], true, "start"],
    [["running", false], false, "paused"],
    [["suspended", false], true, "start"],
    [["paused", true], true, "paused"],
    [["paused", false], true, "paused"],
  ];
  for (const [stored, autostart, want] of cases) {
    const g = new GlobalStateDevice();
    g.store(...stored);
    assert.equal(incomingRunstate(await roundTrip(g), autostart), want, `${stored} autostart=${autostart}`);
  }
  // No global state in the stream (an old source): autostart alone decides.
  assert.equal(incomingRunstate(new GlobalStateDevice(), true), "start");
});

Deno.test("globalstate: a name that is no run state fails the load, naming it", async () => {
  const g = new GlobalStateDevice();
  g.store("running", false);
  g.state.runstate.set(new TextEncoder().encode("sleepy\0"));
  g.state.size = 7;
  await assert.rejects(roundTrip(g), /globalstate: unknown runstate 'sleepy'/);
});
