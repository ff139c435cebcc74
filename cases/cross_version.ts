/**
 * Cross-version migration: one side runs an older release of the model's devices (x-test-release,
 * engine/testing/releases.ts), as upstream's CI migrates between the previous QEMU release and this one.
 * An older source's sections must load here, the fields of later versions keeping the target's own
 * values; a newer source reaches an older destination as long as what it sends is known there, which is
 * what subsections and their needed() are for; what cannot load is refused by name and version.
 */
import type { PrecopyCase } from "../harness/families/precopy/case.ts";

/** A migration the destination must refuse: it stays up, the source fails and keeps its guest. */
function refused(
  c: Pick<PrecopyCase, "name" | "release" | "why"> & { error: RegExp },
): PrecopyCase {
  return {
    ...c,
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    defer: true,
    exitOnError: false,
    caps: ["return-path"],
    expect: "fail",
  };
}

export const CROSS_VERSION_CASES: PrecopyCase[] = [
  {
    name: "/migration/cross-version/older-source",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    release: { src: "serial-v2-timer-v1" },
    why: "an older release's device sections (serial v2, timer v1, no serial/tx) load here: a field added " +
      "in a later version (VMSTATE_*_V) is not read from the older stream and keeps the target's own value",
  },
  {
    name: "/migration/cross-version/older-target/subsection-not-needed",
    tier: "full",
    flow: "precopy",
    transport: "unix",
    live: true,
    // A guest that never writes to the serial: serial/tx's needed() is false.
    workload: { kind: "random", seed: 0, hotPages: 512, hotPercent: 90 },
    release: { dst: "before-serial-tx" },
    why: "a subsection goes only when its needed() says so: a guest that never used the serial sends no " +
      "serial/tx, so a release that does not know serial/tx loads a newer source's stream",
  },
  refused({
    name: "/migration/cross-version/older-target/subsection-needed",
    release: { dst: "before-serial-tx" },
    error: /VM subsection 'serial\/tx' in 'serial' does not exist/,
    why: "a needed subsection an older destination does not know (the a-b guest prints, so serial/tx " +
      "goes) is refused naming it, not skipped; the source fails and keeps its guest",
  }),
  refused({
    name: "/migration/cross-version/too-old-source",
    release: { src: "serial-v1" },
    error: /serial: incoming version_id 1 is too old for local minimum version_id 2/,
    why: "a device section older than the destination's minimum_version_id is refused by version, not " +
      "loaded with the fields it lacks left as they were",
  }),
];
