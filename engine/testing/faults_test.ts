import assert from "node:assert/strict";
import { QmpError, validateArgs } from "../qmp/schema.ts";
import { CpuDevice } from "../guest/devices/cpu.ts";
import { SerialDevice } from "../guest/devices/serial.ts";
import { RamBlock, TARGET_PAGE_SIZE } from "../ram_block.ts";
import {
  INJECT_FAULT_ARGS,
  type OutgoingFaultHooks,
  parseStreamFault,
  STREAM_FAULT_KINDS,
  type StreamFault,
  type StreamFaultKind,
  StreamFaults,
} from "./faults.ts";
import { encode } from "./streams_test_util.ts";

/** x-test-inject-fault's checks, in the order the server runs them. */
function parse(args: Record<string, unknown>): StreamFault {
  validateArgs(INJECT_FAULT_ARGS, args);
  return parseStreamFault(args);
}

function rejection(args: Record<string, unknown>): string {
  try {
    parse(args);
  } catch (e) {
    assert.ok(e instanceof QmpError, String(e));
    return e.desc;
  }
  assert.fail(`accepted ${JSON.stringify(args)}`);
}

/** The arguments each kind needs, so every kind can be armed. */
const MINIMAL: Record<StreamFaultKind, Record<string, unknown>> = {
  "corrupt": { offset: 9 },
  "truncate": { offset: 9 },
  "machine-type": {},
  "bad-ram-flags": {},
  "ram-offset": {},
  "unknown-section": {},
  "bad-footer": {},
  "multifd-missing-channel": {},
  "multifd-channel-id": {},
  "multifd-offset": {},
  "multifd-channel-delay": { channel: 1, "delay-ms": 20 },
  "multifd-channel-slow": { channel: 1, "delay-ms": 20 },
  "newer-device-version": {},
  "newer-subsection-version": {},
  "device-extra-field": {},
  "xbzrle-overrun": {},
  "multifd-channel-id-twice": {},
};

const BLOCK = new RamBlock({ idstr: "pc.ram", size: 4 * TARGET_PAGE_SIZE });
const DEVICES = [new CpuDevice(new Int32Array(64), 1), new SerialDevice(() => {})];
const CFG = { machineType: "pc-i440fx-migtest", uuid: null };

/** What every hook of one outgoing migration does, as plain data. */
async function observe(h: OutgoingFaultHooks): Promise<Record<string, unknown>> {
  const packet = (normal: number) => {
    const offsets = [0, TARGET_PAGE_SIZE];
    h.multifdPacket(BLOCK, offsets, normal);
    return offsets;
  };
  return {
    output: h.output(),
    output0: h.output(0),
    configuration: h.configuration(CFG).machineType,
    afterSetup: [...await encode((f) => h.afterSetup(f, [BLOCK]))],
    partFooterId: h.partFooterId(0),
    afterDevices: [...await encode((f) => h.afterDevices(f, DEVICES))],
    multifdChannels: h.multifdChannels(4),
    multifdChannelId: h.multifdChannelId(3),
    // A packet of zero pages only comes first: the fault waits for one with normal pages.
    packets: [packet(0), packet(2), packet(2)],
  };
}

Deno.test("faults: every kind parses with its arguments; defaults filled in", () => {
  for (const kind of STREAM_FAULT_KINDS) assert.equal(parse({ kind, ...MINIMAL[kind] }).kind, kind);
  assert.deepEqual(parse({ kind: "corrupt", offset: 0 }), {
    kind: "corrupt",
    offset: 0,
    xor: 0xff,
    channel: undefined,
  });
  assert.deepEqual(parse({ kind: "truncate", offset: 64, channel: 3 }), {
    kind: "truncate",
    offset: 64,
    channel: 3,
  });
  assert.deepEqual(parse({ kind: "multifd-channel-delay", channel: 0, "delay-ms": 1500 }), {
    kind: "multifd-channel-delay",
    channel: 0,
    delayMs: 1500,
  });
});

Deno.test("faults: an unknown kind or a bad argument is refused with QEMU's wording", () => {
  assert.equal(rejection({ kind: "frob" }), "Parameter 'kind' does not accept value 'frob'");
  assert.equal(rejection({ kind: "truncate" }), "fault 'truncate' needs 'offset'");
  assert.equal(
    rejection({ kind: "multifd-channel-delay", "delay-ms": 5 }),
    "fault 'multifd-channel-delay' needs 'channel' and 'delay-ms'",
  );
  assert.equal(rejection({ kind: "truncate", offset: 1, xor: 2 }), "Parameter 'xor' is unexpected");
  assert.equal(
    rejection({ kind: "corrupt", offset: 1, "delay-ms": 2 }),
    "Parameter 'delay-ms' is unexpected",
  );
  assert.equal(rejection({ kind: "multifd-offset", offset: 1 }), "Parameter 'offset' is unexpected");
  assert.equal(rejection({ kind: "bogus", offset: 1 }), "Parameter 'kind' does not accept value 'bogus'");
  const range = (name: string, min: number, max: number) =>
    `Parameter '${name}' expects a value between ${min} and ${max}`;
  assert.equal(rejection({ kind: "corrupt", offset: -1 }), range("offset", 0, Number.MAX_SAFE_INTEGER));
  // A 64-bit offset arrives as bigint: the writer's offset arithmetic needs a safe integer.
  assert.equal(
    rejection({ kind: "truncate", offset: 1n << 60n }),
    range("offset", 0, Number.MAX_SAFE_INTEGER),
  );
  assert.equal(rejection({ kind: "corrupt", offset: 1, xor: 0 }), range("xor", 1, 255));
  assert.equal(rejection({ kind: "corrupt", offset: 1, xor: 256 }), range("xor", 1, 255));
  assert.equal(rejection({ kind: "corrupt", offset: 1, channel: 255 }), range("channel", 0, 254));
  assert.equal(
    rejection({ kind: "multifd-channel-delay", channel: 0, "delay-ms": 0 }),
    range("delay-ms", 1, 2 ** 31 - 1),
  );
});

Deno.test("faults: nothing armed changes nothing", async () => {
  const faults = new StreamFaults();
  assert.deepEqual(await observe(faults.outgoing()), {
    output: {},
    output0: {},
    configuration: CFG.machineType,
    afterSetup: [],
    partFooterId: 0,
    afterDevices: [],
    multifdChannels: 4,
    multifdChannelId: 3,
    packets: [[0, TARGET_PAGE_SIZE], [0, TARGET_PAGE_SIZE], [0, TARGET_PAGE_SIZE]],
  });
  assert.deepEqual([...faults.incoming().multifdChannelDelays()], []);
});

Deno.test("faults: each kind acts at its own hook and nowhere else", async () => {
  const clean = await observe(new StreamFaults().outgoing());
  const expected: Record<StreamFaultKind, string[]> = {
    "corrupt": ["output"],
    "truncate": ["output"],
    "machine-type": ["configuration"],
    "bad-ram-flags": ["afterSetup"],
    "ram-offset": ["afterSetup"],
    "unknown-section": ["afterDevices"],
    "bad-footer": ["partFooterId"],
    "newer-device-version": ["afterDevices"],
    "xbzrle-overrun": ["afterSetup"],
    "multifd-channel-id-twice": ["multifdChannelId"],
    "newer-subsection-version": ["afterDevices"],
    "device-extra-field": ["afterDevices"],
    "multifd-missing-channel": ["multifdChannels"],
    "multifd-channel-id": ["multifdChannelId"],
    "multifd-offset": ["packets"],
    // Act on the destination only.
    "multifd-channel-delay": [],
    "multifd-channel-slow": [],
  };
  for (const kind of STREAM_FAULT_KINDS) {
    const faults = new StreamFaults();
    faults.inject(parse({ kind, ...MINIMAL[kind] }));
    const seen = await observe(faults.outgoing());
    const changed = Object.keys(clean).filter((k) => JSON.stringify(seen[k]) !== JSON.stringify(clean[k]));
    assert.deepEqual(changed, expected[kind], kind);
  }
});

Deno.test("faults: what each hook does when its fault is armed", async () => {
  const armed = async (fault: StreamFault) => {
    const faults = new StreamFaults();
    faults.inject(fault);
    return await observe(faults.outgoing());
  };
  assert.deepEqual((await armed({ kind: "corrupt", offset: 9, xor: 4 })).output, { corruptAt: 9, xor: 4 });
  const onChannel = await armed({ kind: "truncate", offset: 70, channel: 0 });
  assert.deepEqual([onChannel.output, onChannel.output0], [{}, { truncateAt: 70 }]);
  assert.equal((await armed({ kind: "machine-type" })).configuration, "pc-i440fx-migtest-other");
  assert.equal((await armed({ kind: "bad-footer" })).partFooterId, 0x40);
  assert.equal((await armed({ kind: "multifd-missing-channel" })).multifdChannels, 3);
  assert.equal((await armed({ kind: "multifd-channel-id" })).multifdChannelId, 4);
  // The last of 4 channels (id 3) announces 0.
  assert.equal((await armed({ kind: "multifd-channel-id-twice" })).multifdChannelId, 0);
  // Only the first packet with normal pages, once.
  assert.deepEqual((await armed({ kind: "multifd-offset" })).packets, [
    [0, TARGET_PAGE_SIZE],
    [BLOCK.usedLength, TARGET_PAGE_SIZE],
    [0, TARGET_PAGE_SIZE],
  ]);
  // PART section of RAM (0x02, section id 2), one record, EOS, footer.
  const part = [0x02, 0, 0, 0, 2];
  const footer = [0x7e, 0, 0, 0, 2];
  const be64 = (v: number) => [...new Uint8Array(new BigUint64Array([BigInt(v)]).buffer).reverse()];
  assert.deepEqual((await armed({ kind: "bad-ram-flags" })).afterSetup, [
    ...part,
    ...be64(0x0a),
    ...be64(0x10),
    ...footer,
  ]);
  const ramOffset = (await armed({ kind: "ram-offset" })).afterSetup as number[];
  assert.deepEqual(ramOffset.slice(0, 13), [...part, ...be64(BLOCK.usedLength + 0x08)]);
  assert.deepEqual(ramOffset.slice(13, 20), [6, ...new TextEncoder().encode("pc.ram")]);
  assert.equal(ramOffset.length, 20 + TARGET_PAGE_SIZE + 8 + 5);
  // XBZRLE record (0x40) for page 0 of pc.ram: encoding 1, 5 bytes: zrun 4095, nzrun 2 (0xaa 0xbb).
  const overrun = (await armed({ kind: "xbzrle-overrun" })).afterSetup as number[];
  assert.deepEqual(overrun.slice(0, 13), [...part, ...be64(0x40)]);
  assert.deepEqual(overrun.slice(20, 28), [1, 0, 5, 0xff, 0x1f, 0x02, 0xaa, 0xbb]);
  const bogus = (await armed({ kind: "unknown-section" })).afterDevices as number[];
  assert.deepEqual(bogus.slice(0, 5), [0x04, 0, 0, 0, 0x99]);
  assert.ok(new TextDecoder().decode(new Uint8Array(bogus)).includes("x-bogus-device"));
  assert.deepEqual(bogus.slice(-5), [0x7e, 0, 0, 0, 0x99]);
  // FULL, section 0x98, "cpu" (its idstr), instance 0, version 2 (the cpu's is 1); its footer at the end.
  const newer = (await armed({ kind: "newer-device-version" })).afterDevices as number[];
  assert.deepEqual(newer.slice(0, 13), [0x04, 0, 0, 0, 0x98, 3, 0x63, 0x70, 0x75, 0, 0, 0, 0]);
  assert.deepEqual(newer.slice(13, 17), [0, 0, 0, 2]);
  assert.deepEqual(newer.slice(-5), [0x7e, 0, 0, 0, 0x98]);
  // The serial device at its own version 3, its subsection serial/tx at version 2 (its own is 1), although
  // nothing was transmitted (the subsection would not be needed).
  const sub = (await armed({ kind: "newer-subsection-version" })).afterDevices as number[];
  const subBytes = new Uint8Array(sub);
  const at = sub.findIndex((b, i) => b === 0x05 && subBytes[i + 1] === 9);
  assert.ok(at > 0, "a subsection follows the serial fields");
  assert.equal(new TextDecoder().decode(subBytes.subarray(at + 2, at + 11)), "serial/tx");
  assert.deepEqual(sub.slice(at + 11, at + 15), [0, 0, 0, 2]);
  assert.deepEqual(sub.slice(-5), [0x7e, 0, 0, 0, 0x98]);
  // FULL, section 0x97, "cpu" at its version 1, its 32 bytes of fields, then a be32 0 the cpu does not
  // have, then the footer: a reader of the cpu's fields meets 0x00 where the marker must be.
  const extra = (await armed({ kind: "device-extra-field" })).afterDevices as number[];
  assert.deepEqual(extra.slice(0, 17), [0x04, 0, 0, 0, 0x97, 3, 0x63, 0x70, 0x75, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.equal(extra.length, 17 + 32 + 4 + 5);
  assert.deepEqual(extra.slice(-9), [0, 0, 0, 0, 0x7e, 0, 0, 0, 0x97]);
});

Deno.test("faults: armed faults stay for later migrations; the last structural one wins", async () => {
  const faults = new StreamFaults();
  faults.inject({ kind: "corrupt", offset: 1, xor: 2 });
  faults.inject({ kind: "truncate", offset: 100 });
  faults.inject({ kind: "bad-footer" });
  faults.inject({ kind: "multifd-channel-id" });
  faults.inject({ kind: "machine-type" });
  for (let migration = 0; migration < 2; migration++) {
    const seen = await observe(faults.outgoing());
    assert.deepEqual(seen.output, { corruptAt: 1, xor: 2, truncateAt: 100 });
    assert.equal(seen.partFooterId, 0, "bad-footer was replaced");
    assert.equal(seen.multifdChannelId, 4);
    assert.equal(seen.configuration, "pc-i440fx-migtest-other", "machine-type is not structural");
  }
  // The multifd-offset fault acts once per migration, so again in the next one.
  faults.inject({ kind: "multifd-offset" });
  for (let migration = 0; migration < 2; migration++) {
    assert.equal(((await observe(faults.outgoing())).packets as number[][])[1][0], BLOCK.usedLength);
  }
});

Deno.test("faults: channel delays reach the destination as a copy", () => {
  const faults = new StreamFaults();
  faults.inject({ kind: "multifd-channel-delay", channel: 1, delayMs: 20 });
  faults.inject({ kind: "multifd-channel-delay", channel: 3, delayMs: 5 });
  faults.inject({ kind: "multifd-channel-delay", channel: 1, delayMs: 30 });
  faults.inject({ kind: "multifd-channel-slow", channel: 2, delayMs: 4 });
  const delays = faults.incoming().multifdChannelDelays();
  assert.deepEqual([...delays], [[1, { ms: 30, every: false }], [3, { ms: 5, every: false }], [2, {
    ms: 4,
    every: true,
  }]]);
  delays.clear();
  assert.equal(
    faults.incoming().multifdChannelDelays().size,
    3,
    "the armed delays are not the receiver's to change",
  );
});
