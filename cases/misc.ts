/** Misc cases (upstream misc-tests.c): bad destination and uuid validation. */
import type { MigrationCase } from "../harness/families/mod.ts";

const UUID_A = "11111111-1111-1111-1111-111111111111";
const UUID_B = "22222222-2222-2222-2222-222222222222";

export const MISC_CASES: MigrationCase[] = [
  {
    name: "/migration/validate_uri/channels/both_set",
    tier: "full",
    flow: "precopy",
    transport: "tcp",
    migrateAddress: "both",
    expect: "qmp-error",
    // QEMU 10.0 says the same for both and neither; 9.x named the two arguments mutually exclusive.
    error: /'uri' and 'channels' arguments are mutually exclusive|need either 'uri' or 'channels' argument/,
    why: "migrate with both uri and channels must be refused before anything starts (one address only)",
  },
  {
    name: "/migration/validate_uri/channels/none_set",
    tier: "full",
    flow: "precopy",
    transport: "tcp",
    migrateAddress: "none",
    expect: "qmp-error",
    error: /need either 'uri' or 'channels' argument/,
    why: "migrate with neither uri nor channels must be refused, naming what is missing",
  },
  {
    name: "/migration/bad_dest",
    tier: "full",
    flow: "bad-dest",
    why: "nothing listens on tcp:127.0.0.1:0: the source fails and keeps running",
  },
  {
    name: "/migration/ignore-shared",
    tier: "full",
    flow: "precopy",
    // Live, as upstream: the source's guest keeps writing the shared memory the destination maps.
    live: true,
    memType: "shmem",
    caps: ["x-ignore-shared"],
    maxRamSentMiB: 4,
    why: "with x-ignore-shared the guest's RAM in shared memory must not go on the wire (under 4 MiB " +
      "sent) and the destination, mapping that memory, must run on from it: a shared block sent, or one " +
      "the destination clears or loads over, fails",
  },
  {
    name: "/migration/ignore-shared/random",
    tier: "full",
    flow: "precopy",
    live: true,
    memType: "shmem",
    caps: ["x-ignore-shared"],
    workload: { kind: "random", seed: 0 },
    maxRamSentMiB: 4,
    why: "a guest writing every block: only the shared one is left out, the others (vga.vram) are " +
      "migrated page for page; a model that leaves out a private block, or sends the shared one, fails",
  },
  {
    name: "/migration/validate_uuid",
    tier: "full",
    flow: "precopy",
    why: "with validate-uuid and equal uuids the migration completes",
    uuid: { src: UUID_A, dst: UUID_A },
    srcCaps: ["validate-uuid"],
    srcParams: { "downtime-limit": 1000000 },
  },
  {
    name: "/migration/validate_uuid_error",
    tier: "full",
    flow: "precopy",
    why: "a destination whose uuid differs must refuse the stream, name both uuids and exit",
    uuid: { src: UUID_A, dst: UUID_B },
    srcCaps: ["validate-uuid"],
    expect: "fail-dest-exits",
    error:
      /UUID received is 11111111-1111-1111-1111-111111111111 and local is 22222222-2222-2222-2222-222222222222/,
  },
  {
    name: "/migration/validate_uuid_src_not_set",
    tier: "full",
    flow: "precopy",
    why: "validate-uuid with no source uuid sends none: the destination must accept the stream",
    uuid: { dst: UUID_B },
    srcCaps: ["validate-uuid"],
  },
  {
    name: "/migration/validate_uuid_dst_not_set",
    tier: "full",
    flow: "precopy",
    why: "validate-uuid with no destination uuid: the destination must accept the source's uuid",
    uuid: { src: UUID_A },
    srcCaps: ["validate-uuid"],
  },
];

MISC_CASES.push({
  name: "/migration/analyze-script",
  tier: "smoke",
  flow: "analyze-script",
  uuid: { src: UUID_A },
  srcCaps: ["validate-uuid", "x-ignore-shared"],
  why: "the stream analyzer parses what the engine saves: configuration with its uuid and capabilities " +
    "subsections, RAM with x-ignore-shared's block addresses, and every device through the vmdesc",
});
