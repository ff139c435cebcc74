/**
 * Switchable known defects: each mirrors a real bug class of QEMU's migration code. They are off by
 * default; a regression case switches one on to prove the case catches it (and passes with it off).
 */
export const KNOWN_DEFECTS = {
  "multifd-no-recv-sync":
    "multifd receive channels do not wait at the sync barrier after a SYNC packet, so a page's round-N " +
    "copy on a slow channel can land after its round-N+1 copy (what commit 294e5a4034's per-round sync " +
    "and multifd_recv_sync_main prevent)",
} as const;

export type DefectName = keyof typeof KNOWN_DEFECTS;

export function isDefect(name: string): name is DefectName {
  return Object.hasOwn(KNOWN_DEFECTS, name);
}
