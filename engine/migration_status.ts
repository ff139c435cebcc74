/** QAPI's MigrationStatus (qapi/migration.json), in its order: what query-migrate reports as `status`. */
export const MIGRATION_STATUSES = [
  "none",
  "setup",
  "cancelling",
  "cancelled",
  "active",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover-setup",
  "postcopy-recover",
  "completed",
  "failed",
  "colo",
  "pre-switchover",
  "device",
  "wait-unplug",
] as const;
export type MigrationStatus = typeof MIGRATION_STATUSES[number];
