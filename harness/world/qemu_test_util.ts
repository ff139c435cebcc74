/**
 * Probes shaped like what QEMU 7.2.22 and 10.0.2 (Debian) answer, for the unit tests of what the QEMU
 * world derives from a probe (qemu_probe_test.ts checks the real binaries answer like this).
 */
import type { QemuProbe } from "./qemu_probe.ts";

const COMMON_CAPS = [
  "xbzrle",
  "auto-converge",
  "events",
  "postcopy-ram",
  "x-colo",
  "return-path",
  "pause-before-switchover",
  "multifd",
  "postcopy-blocktime",
  "postcopy-preempt",
  "validate-uuid",
  "x-ignore-shared",
];
const COMMON_PARAMS = [
  "multifd-channels",
  "multifd-compression",
  "multifd-zlib-level",
  "multifd-zstd-level",
  "max-bandwidth",
  "downtime-limit",
  "xbzrle-cache-size",
];
const i440fx = (versions: string[]) => versions.map((v) => ({ name: `pc-i440fx-${v}` }));

export function fakeProbe72(binary = "/usr/bin/qemu-system-x86_64"): QemuProbe {
  return {
    binary,
    version: { major: 7, minor: 2, micro: 22 },
    package: "Debian 1:7.2+dfsg-7+deb12u18+b3",
    capabilities: [...COMMON_CAPS, "compress", "block"],
    parameters: [...COMMON_PARAMS, "compress-level"],
    commands: ["migrate", "migrate-incoming", "query-migrate"],
    migrateArgs: ["uri", "blk", "inc", "detach", "resume"],
    migrateIncomingArgs: ["uri"],
    transports: [],
    multifdCompressions: ["none", "zlib", "zstd"],
    appliedLevels: [],
    levelReadBack: { "multifd-zlib-level": 1, "multifd-zstd-level": 1 },
    accels: ["tcg", "kvm"],
    machines: [...i440fx(["7.0", "7.1"]), { name: "pc-i440fx-7.2", alias: "pc" }, { name: "none" }],
    statuses: STATUSES_72,
    refusedCapabilitySets: {},
  };
}

/** 7.2's MigrationStatus (10.0 adds postcopy-recover-setup). */
const STATUSES_72 = [
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover",
  "completed",
  "failed",
  "colo",
  "pre-switchover",
  "device",
  "wait-unplug",
];

export function fakeProbe100(binary = "/opt/qemu-10.0/usr/bin/qemu-system-x86_64"): QemuProbe {
  return {
    binary,
    version: { major: 10, minor: 0, micro: 2 },
    package: "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1",
    capabilities: [...COMMON_CAPS, "switchover-ack", "dirty-limit", "mapped-ram"],
    parameters: [...COMMON_PARAMS, "zero-page-detection", "direct-io", "mode"],
    commands: ["migrate", "migrate-incoming", "query-migrate"],
    migrateArgs: ["uri", "channels", "detach", "resume"],
    migrateIncomingArgs: ["uri", "channels", "exit-on-error"],
    transports: ["socket", "exec", "rdma", "file"],
    multifdCompressions: ["none", "zlib", "zstd"],
    appliedLevels: ["multifd-zlib-level", "multifd-zstd-level"],
    levelReadBack: {},
    accels: ["tcg", "kvm"],
    machines: [
      ...i440fx(["7.0", "7.1", "7.2", "8.0", "9.2"]),
      { name: "pc-i440fx-10.0", alias: "pc" },
      { name: "none" },
    ],
    statuses: [...STATUSES_72, "postcopy-recover-setup"],
    refusedCapabilitySets: { "multifd+postcopy-ram": "Postcopy is not yet compatible with multifd" },
  };
}
