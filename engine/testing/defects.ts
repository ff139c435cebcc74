/**
 * Switchable known defects: each mirrors a real bug class of QEMU's migration code. They are off by
 * default; a regression case switches one on to prove the case catches it (and passes with it off).
 */
export const KNOWN_DEFECTS = {
  "multifd-no-recv-sync":
    "multifd receive channels do not wait at the sync barrier after a SYNC packet, so a page's round-N " +
    "copy on a slow channel can land after its round-N+1 copy (what commit 294e5a4034's per-round sync " +
    "and multifd_recv_sync_main prevent)",
  "multifd-colo-bypass-cache":
    "in COLO state multifd writes received pages straight into the secondary's guest RAM and does not " +
    "record them in the COLO bitmap (QEMU before 'multifd: Add COLO support', dd67c149e2): checkpoints " +
    "are neither atomic nor flushed correctly",
  "colo-zero-not-recorded":
    "in COLO state multifd zero pages are zeroed in the cache but not recorded in the COLO bitmap, so a " +
    "page that turned zero keeps its stale content in guest RAM after the flush (v3 of the series fixed it)",
  "colo-no-device-reset":
    "the secondary loads a checkpoint's device state over its running devices without resetting them " +
    "first ('colo: Fix crash during device vmstate load', the Q35 crash)",
  "colo-cache-early-release":
    "the secondary releases the COLO cache before its multifd receive channels have stopped, so a channel " +
    "still writing a packet uses freed memory ('Call colo_release_ram_cache() after multifd threads " +
    "terminate' in the 2026 series)",
  "incoming-once-not-enforced":
    "migrate-incoming does not refuse a second start: the check of its one start is missing, so a " +
    "destination started with -incoming, or already listening, is told '-incoming' was not specified or " +
    "starts again (the check that set an error without failing the command, fixed in QEMU 5.0)",
  "caps-while-running":
    "migrate-set-capabilities is taken while a migration runs (migration_is_running not checked): a " +
    "capability can change under the migration thread, which read it at the start",
  "continue-any-state":
    "migrate-continue does not check that the migration is in the state it names, and answers as if it " +
    "continued a migration that was never paused",
} as const;

export type DefectName = keyof typeof KNOWN_DEFECTS;

export function isDefect(name: string): name is DefectName {
  return Object.hasOwn(KNOWN_DEFECTS, name);
}

/** Every known defect, on or off: the one typed record the engine's modules are given. */
export type Defects = Readonly<Record<DefectName, boolean>>;

/** All off: what every module assumes unless told otherwise. */
export const NO_DEFECTS: Defects = defectsOf(new Set());

/** The switched-on names (x-test-defect edits the set) as a record; read when a migration starts. */
export function defectsOf(enabled: ReadonlySet<string>): Defects {
  // Spelled out so that adding a defect without a line here does not compile.
  return {
    "multifd-no-recv-sync": enabled.has("multifd-no-recv-sync"),
    "multifd-colo-bypass-cache": enabled.has("multifd-colo-bypass-cache"),
    "colo-zero-not-recorded": enabled.has("colo-zero-not-recorded"),
    "colo-no-device-reset": enabled.has("colo-no-device-reset"),
    "colo-cache-early-release": enabled.has("colo-cache-early-release"),
    "incoming-once-not-enforced": enabled.has("incoming-once-not-enforced"),
    "caps-while-running": enabled.has("caps-while-running"),
    "continue-any-state": enabled.has("continue-any-state"),
  };
}
