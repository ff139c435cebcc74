/**
 * hw_compat_X_Y: what a versioned machine type keeps of its release's behaviour. Migration reads one of
 * them: multifd-flush-after-each-section (hw_compat_8_0), on for every type up to 8.0.
 */

/** `pc-i440fx-7.2`, `pc-q35-8.0`, ...: the release a versioned type stands for, else null. */
function machineRelease(machineType: string): [number, number] | null {
  const m = /^pc-(?:i440fx|q35)-(\d+)\.(\d+)$/.exec(machineType);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/**
 * Whether the multifd channels sync at every RAM section's end (SYNC before each EOS, no
 * MULTIFD_FLUSH) rather than once per dirty-bitmap round: QEMU 8.0's way, kept for its machine types
 * and older so that a pre-8.0 peer (which knows no MULTIFD_FLUSH) understands the stream. The
 * unversioned and the model's own types are the newest.
 */
export function multifdFlushAfterEachSection(machineType: string): boolean {
  const r = machineRelease(machineType);
  return r !== null && (r[0] < 8 || (r[0] === 8 && r[1] === 0));
}
