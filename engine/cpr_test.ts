import assert from "node:assert/strict";
import { decodeCprState, encodeCprState } from "./cpr.ts";
import { hostMemory } from "./hostmem.ts";
import { libcCprChannel, receiveCprState } from "./os/cpr_channel.ts";
import { closeFd, preloadLibc } from "./os/libc.ts";

preloadLibc();

/**
 * What QEMU 10.0.2 sent on its cpr channel (-machine pc,aux-ram-share=on -nodefaults, a memfd backend
 * ram0), with six descriptors: the last block created comes first.
 */
const QEMU_10_0 = Uint8Array.fromHex(
  "5143505200000001" +
    "0100000013" + "2f726f6d406574632f616370692f7273647000" + "00000000" + "20" +
    "0100000016" + "2f726f6d406574632f7461626c652d6c6f6164657200" + "00000000" + "20" +
    "0100000015" + "2f726f6d406574632f616370692f7461626c657300" + "00000000" + "20" +
    "0100000007" + "70632e726f6d00" + "00000000" + "20" +
    "0100000008" + "70632e62696f7300" + "00000000" + "20" +
    "0100000005" + "72616d3000" + "00000000" + "20" +
    "00",
);
const QEMU_NAMES = [
  "/rom@etc/acpi/rsdp",
  "/rom@etc/table-loader",
  "/rom@etc/acpi/tables",
  "pc.rom",
  "pc.bios",
  "ram0",
];

Deno.test("cpr state: QEMU 10.0's bytes decode to its six blocks, and encode back byte for byte", () => {
  assert.equal(QEMU_10_0.length, 151);
  const fds = decodeCprState(QEMU_10_0, [10, 11, 12, 13, 14, 15]);
  assert.deepEqual(fds.map((f) => f.name), QEMU_NAMES);
  assert.deepEqual(fds.map((f) => f.fd), [10, 11, 12, 13, 14, 15]);
  assert.ok(fds.every((f) => f.id === 0));
  assert.deepEqual(encodeCprState(fds), QEMU_10_0);
});

Deno.test("cpr state: a bad magic, version, marker, truncation or descriptor count is named", () => {
  const bad = (patch: (b: Uint8Array) => Uint8Array, fds: number[], re: RegExp) => {
    assert.throws(() => decodeCprState(patch(QEMU_10_0.slice()), fds), re);
  };
  const six = [1, 2, 3, 4, 5, 6];
  bad((b) => (b[0] = 0x51, b[3] = 0, b), six, /Not a migration stream \(bad magic 51435000\)/);
  bad((b) => (b[7] = 2, b), six, /Unsupported migration stream version 2/);
  bad((b) => (b[8] = 7, b), six, /list marker 7 at offset 8/);
  bad((b) => b.subarray(0, 60), six, /truncated/);
  bad((b) => b, [1, 2], /no descriptor came with \/rom@etc\/acpi\/tables/);
  bad((b) => b, [...six, 7], /7 descriptors for 6 entries/);
});

Deno.test("cpr channel: the state and a memfd cross a unix socket; the receiver maps the same memory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/cpr.sock`;
    const ram = hostMemory.map({ type: "memfd", id: "ram0", share: true }, 64 * 1024);
    ram.mem[100] = 42;
    const receiving = receiveCprState(path);
    // The listener is there once the call returned its promise (it binds before it waits).
    const { hangup } = await libcCprChannel.send(
      path,
      encodeCprState([{ name: "ram0", id: 0, fd: ram.fd! }]),
      [
        ram.fd!,
      ],
    );
    const got = await receiving;
    assert.deepEqual(got.fds.map((f) => f.name), ["ram0"]);
    const theirs = hostMemory.adopt(got.fds[0].fd, 64 * 1024);
    assert.equal(theirs.mem[100], 42);
    theirs.mem[200] = 7;
    assert.equal(ram.mem[200], 7);
    let hungUp = false;
    const waiting = hangup.then(() => (hungUp = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(hungUp, false, "the source saw a hang-up before the target gave one");
    got.hangUp();
    await waiting;
    closeFd(got.fds[0].fd);
    closeFd(ram.fd!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
