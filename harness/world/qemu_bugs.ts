/**
 * QEMU bugs this harness observed, as expected failures: a case that hits one on a version in its range
 * reports XFAIL when it fails with the bug's symptom (any other failure stays a failure) and, when the
 * bug did not strike, XPASS — or, for an intermittent bug, a pass with a note (known_bug.ts).
 *
 * Ranges hold the versions the bug was seen on, checked against the probed version of the side that
 * shows it; a version outside them runs the case plainly, so a bug that spreads or returns fails loudly.
 */
import type { MigrationCase } from "../case.ts";
import { compareVersions, describeProbe, parseVersion, type QemuProbe } from "./qemu_probe.ts";
import type { KnownBug } from "./world.ts";

/** Inclusive on both ends, MAJOR.MINOR[.MICRO]; "7.2" through "7.2" is every 7.2.x. */
export interface VersionRange {
  from: string;
  through: string;
}

export interface QemuBug {
  id: string;
  summary: string;
  /** The cases that show it. */
  cases: readonly string[];
  /** Whose binary has the bug: its probed version is checked against `range`. */
  side: "src" | "dst";
  range: VersionRange;
  symptom: RegExp;
  intermittent?: boolean;
  fix?: string;
}

export const QEMU_BUGS: readonly QemuBug[] = [
  {
    id: "qemu-multifd-refused-channels-abort",
    summary: "when the destination refuses the multifd channels (uuid mismatch), the source sometimes " +
      "aborts: qemu_mutex_lock_impl: Assertion `mutex->initialized' failed (status 134); when it does " +
      "not, the case passes",
    cases: ["/migration/multifd/bad/uuid"],
    side: "src",
    range: { from: "7.2", through: "7.2" },
    symptom: /status 134|mutex->initialized/,
    intermittent: true,
  },
  {
    id: "qemu-multifd-compression-flag-silent",
    summary: "the destination reports a multifd compression-flag mismatch nowhere: no stderr, " +
      "query-migrate stays 'active' without error-desc, the source sees a broken pipe",
    cases: ["/migration/multifd/bad/compression-flag"],
    side: "dst",
    range: { from: "7.2", through: "7.2" },
    symptom: /flags received 2 flags expected 4/,
  },
];

/** "7.2" or "7.2–9.2". */
export function rangeText(r: VersionRange): string {
  return r.from === r.through ? r.from : `${r.from}–${r.through}`;
}

/** Whether v lies in r: a bound without MICRO covers every micro release of that MAJOR.MINOR. */
export function inRange(v: QemuProbe["version"], r: VersionRange): boolean {
  const from = parseVersion(r.from);
  const through = parseVersion(r.through);
  const throughAll = /^\d+\.\d+$/.test(r.through) ? { ...through, micro: Number.MAX_SAFE_INTEGER } : through;
  return compareVersions(v, from) >= 0 && compareVersions(v, throughAll) <= 0;
}

/** The known bug the case hits with these binaries, or null. */
export function knownQemuBug(
  c: MigrationCase,
  probes: { src: QemuProbe; dst: QemuProbe },
  table: readonly QemuBug[] = QEMU_BUGS,
): KnownBug | null {
  for (const b of table) {
    const p = probes[b.side];
    if (!b.cases.includes(c.name) || !inRange(p.version, b.range)) continue;
    return {
      id: b.id,
      summary: b.summary,
      versions: `QEMU ${rangeText(b.range)}; the ${b.side === "src" ? "source" : "destination"} is ` +
        `${describeProbe(p).replace(/^QEMU /, "")}`,
      symptom: b.symptom,
      ...(b.intermittent ? { intermittent: true } : {}),
      ...(b.fix ? { fix: b.fix } : {}),
    };
  }
  return null;
}
