/**
 * Bad streams: the source's outgoing main channel is corrupted, truncated or carries a record the
 * destination must refuse. The destination ends `failed` with an error-desc that names the problem and
 * the stream offset; the source reports `failed` (it learns it on the return path or from the closed
 * socket) and its guest keeps running. The guest is live so "keeps running" means something.
 */
import type { Edit, FaultSpec } from "../harness/case.ts";
import type { PrecopyCase } from "../harness/families/precopy/case.ts";

/**
 * Stream offsets for the pc machines: 8-byte header, configuration (22 bytes for "pc-i440fx-migtest"),
 * OPEN_RETURN_PATH and PING commands (14 bytes), the RAM START header (17 bytes), then the MEM_SIZE word
 * at 61 whose last byte holds the flags.
 */
const CONFIG_TYPE_OFFSET = 8;
const MEM_SIZE_FLAGS_OFFSET = 68;
/** After MEM_SIZE the block list: "pc.ram" as a counted string (69-75), then its be64 length (76-83). */
const PC_RAM_LENGTH_OFFSET = 76;

function badStream(
  name: string,
  fault: FaultSpec,
  error: RegExp,
  tier: "smoke" | "full" = "full",
  qemuError?: RegExp,
): PrecopyCase {
  return {
    name: `/migration/bad_stream/${name}`,
    tier,
    flow: "precopy",
    why:
      `a stream with ${fault.kind === "corrupt" ? "a corrupted byte" : `a ${fault.kind} fault`} (${name}) ` +
      "is refused with an error naming what and where; the source fails and keeps its guest",
    transport: "unix",
    live: true,
    defer: true,
    exitOnError: false,
    caps: ["return-path"],
    fault,
    expect: "fail",
    error,
    ...(qemuError ? { qemuError } : {}),
  };
}

/** A return path mangled on the wire (harness/wire_mutate.ts): the source fails saying how, and survives. */
function returnPathGarbage(name: string, edit: Edit, srcError: RegExp): PrecopyCase {
  return {
    name: `/migration/bad_stream/return-path/${name}`,
    tier: "full",
    flow: "precopy",
    why: `garbage on the return path (${name}) fails the migration at once with an error that says what ` +
      "it was, instead of a source waiting for ever; the source keeps its guest",
    transport: "unix",
    live: true,
    defer: true,
    exitOnError: false,
    caps: ["return-path", "switchover-ack"],
    wireEdits: { connection: 0, direction: "back", edits: [edit] },
    expect: "fail",
    // The destination sees the source close the stream mid-way.
    error: /Unexpected end of stream|Connection reset by peer|load of migration failed/,
    srcError,
  };
}

export const BAD_STREAM_CASES: PrecopyCase[] = [
  badStream(
    "magic",
    { kind: "corrupt", offset: 0, xor: 0x20 },
    /Not a migration stream \(magic 0x7145564d.*at stream offset 0/,
    "smoke",
    /Not a migration stream/,
  ),
  badStream("version", { kind: "corrupt", offset: 7, xor: 0x01 }, /SaveVM v2 format is obsolete/),
  badStream(
    "truncated",
    // Anywhere in the first 8 MiB, chosen by the seed.
    { kind: "truncate", offset: (seed) => 64 + (seed % (8 << 20)) },
    // A peer that closes with unread data in its buffer resets the connection instead of ending it.
    /(Unexpected end of stream|Connection reset by peer \(os error 104\)) while reading .* \(at stream offset \d+\)/,
    "smoke",
    // QEMU names the section it was in, or only the load's I/O error when the cut falls between sections.
    /error while loading state section id \d+\(\w+\)|load of migration failed: Input\/output error/,
  ),
  badStream(
    "corrupted/section-type",
    { kind: "corrupt", offset: CONFIG_TYPE_OFFSET, xor: 0xff },
    /Configuration section missing \(found type 248\)/,
    "full",
    /Configuration section missing/,
  ),
  badStream(
    "corrupted/ram-flags",
    { kind: "corrupt", offset: MEM_SIZE_FLAGS_OFFSET, xor: 0x40, at: { point: "mem-size-flags" } },
    /Unknown combination of migration flags: 0x44 \(at stream offset 61\)/,
    "full",
    // 10.0 reads 0x44's XBZRLE bit first and takes the block list for a page record.
    /Unknown combination of migration flags: 0x44|Illegal RAM offset [0-9a-f]+/,
  ),
  // Byte 4 of the be64 length: 0x8000000 announced as 0x9000000 (the total still matches).
  badStream(
    "corrupted/block-length",
    {
      kind: "corrupt",
      offset: PC_RAM_LENGTH_OFFSET + 4,
      xor: 0x01,
      at: { point: "block-length", block: "pc.ram", byte: 4 },
    },
    /Length mismatch: pc.ram: 0x9000000 in != 0x8000000/,
    "full",
    // QEMU's pc.ram is its -m (150 MiB): the same byte gives another length.
    /(Length|Size) mismatch: pc.ram: 0x[0-9a-f]+ (in )?!= 0x[0-9a-f]+/,
  ),
  badStream(
    "unknown_section",
    { kind: "unknown-section" },
    /Unknown savevm section or instance 'x-bogus-device' 0/,
    "full",
    /Unknown savevm section or instance 'x-bogus-device' 0/,
  ),
  badStream(
    "footer",
    // On the wire: the RAM setup's footer names another section id.
    { kind: "bad-footer", at: { point: "ram-setup-footer", byte: 4 }, xor: 0x40 },
    /Mismatched section id in footer for ram - read 0x42 expected 0x2/,
    "full",
    /Mismatched section id in footer for ram - read 0x[0-9a-f]+ expected 0x[0-9a-f]+/,
  ),
  // A device section or subsection from a newer QEMU than the destination's: refused by version, not
  // loaded as if it were the destination's own version.
  // QEMU's words are for the device a model beside QEMU sends first (its serial: the engine-to-qemu pair).
  badStream(
    "device_version",
    { kind: "newer-device-version" },
    /savevm: unsupported version 2 for 'cpu' v1/,
    "full",
    /savevm: unsupported version 4 for 'serial' v3/,
  ),
  badStream(
    "subsection_version",
    { kind: "newer-subsection-version" },
    /serial\/tx: incoming version_id 2 is too new for local version_id 1/,
  ),
  // A device section longer than the destination's description of it (a source whose device grew a field
  // without a new version): check_section_footer meets that field where the footer's marker must be.
  {
    ...badStream(
      "device_extra_field",
      { kind: "device-extra-field" },
      /Missing section footer for cpu \(at stream/,
      "full",
      /Missing section footer for serial/,
    ),
    why: "a device section longer than the destination's description of it is refused at its footer " +
      "('Missing section footer for cpu'), not read on one byte off; the source fails and keeps its guest",
  },
  // An XBZRLE delta that runs past its page (the CVE-2014-0182 class): refused, nothing written past it.
  badStream(
    "xbzrle_overrun",
    { kind: "xbzrle-overrun" },
    /Failed to load XBZRLE page - decode error! \(xbzrle: nzrun of 2 at page offset 4095 runs past the page end/,
    "full",
    /Failed to load XBZRLE page - decode error!/,
  ),
  // On the wire: the first page record's flags turned into another combination (ZERO -> none, PAGE ->
  // ZERO|PAGE), and its address past every block.
  badStream(
    "ram_flags",
    { kind: "bad-ram-flags", at: { point: "ram-first-record", byte: 7 }, xor: 0x02 },
    /Unknown combination of migration flags: 0xa/,
    "full",
    /Unknown combination of migration flags: 0x[0-9a-f]+/,
  ),
  badStream(
    "ram_offset",
    { kind: "ram-offset", at: { point: "ram-first-record", byte: 0 }, xor: 0x01 },
    /Illegal RAM offset 0x8000000 in block pc.ram/,
    "full",
    /Illegal RAM offset [0-9a-f]+/,
  ),
  // On the wire: the first letter of the configuration's machine type in capitals ('Pc-i440fx-…').
  badStream(
    "machine_type",
    { kind: "machine-type", at: { point: "machine-type", byte: 0 }, xor: 0x20 },
    /Machine type received is 'pc-i440fx-migtest-other'/,
    "full",
    /Machine type received is 'Pc-[^']*' and local is 'pc-[^']*'/,
  ),
  // Found by deno task fuzz: the destination's answers mangled on the way back. A guest waiting for its
  // switchover-ack must not wait for ever on garbage: the return path's error fails the migration, as
  // QEMU's return-path thread sets it. The destination then sees the stream end.
  returnPathGarbage(
    "unknown-message",
    // The first answer, RP_SWITCHOVER_ACK (type 7), becomes type 0x47.
    { op: "xor", at: 1, mask: 0x40 },
    /Received invalid message 0x0047 length 0x0000/,
  ),
  returnPathGarbage(
    "long-message",
    // Its length (0) becomes 0x9b00: refused before a body that never comes is waited for.
    { op: "xor", at: 2, mask: 0x9b },
    /Received 'SWITCHOVER_ACK' message \(0x0007\) with incorrect length 39680 expecting 0/,
  ),
  {
    ...badStream("magic/dest-exits", { kind: "corrupt", offset: 0, xor: 0x20 }, /Not a migration stream/),
    exitOnError: true,
    expect: "fail-dest-exits",
    why: "with exit-on-error (the default) a destination that refuses the stream exits with status 1",
  },
];
