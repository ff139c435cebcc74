/** QEMU's RunState names the model has (qapi/run-state.json), apart so that both the machine and the
 * global state, which carries one across a migration, can name them. */
export const RUNSTATES = [
  "prelaunch",
  "running",
  "paused",
  "inmigrate",
  "postmigrate",
  "finish-migrate",
  "colo",
  /** The guest put itself to sleep (ACPI S3): its vCPU parked until system_wakeup. */
  "suspended",
] as const;

export type RunState = typeof RUNSTATES[number];
