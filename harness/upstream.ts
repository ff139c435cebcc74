/**
 * Every path upstream's x86_64 migration qtest suite registers (tests/qtest/migration/*.c, QEMU master with
 * the COLO tests), as data: the list `deno task upstream` holds the case registry against. Read from
 * /work/shared/research/qemu-migration-test.md, sections 2.1–2.7 and 4; at runtime upstream prefixes each
 * with `/x86_64`. Names are upstream's exactly, including its one path without `/migration`.
 */

/** Upstream's S (runs always) or F (only with `--full`; slow and flaky ones say so in `needs`). */
export type UpstreamSet = "smoke" | "full";

export interface UpstreamPath {
  path: string;
  set: UpstreamSet;
  /** What upstream itself requires to register or run the path, beyond an x86_64 Linux host and QEMU. */
  needs?: string;
}

const smoke = (path: string, needs?: string): UpstreamPath => ({
  path,
  set: "smoke",
  ...(needs ? { needs } : {}),
});
const full = (path: string, needs?: string): UpstreamPath => ({
  path,
  set: "full",
  ...(needs ? { needs } : {}),
});

const SLOW = "slow mode (-m slow)";
const FLAKY = "QEMU_TEST_FLAKY_TESTS (shared memory)";
const UFFD = "userfaultfd";
const GNUTLS = "GnuTLS";
const X509 = "GnuTLS + libtasn1";
const TLS_UFFD = "GnuTLS + userfaultfd";
const COLO = "QEMU master (COLO tests), CONFIG_REPLICATION";

/** The count of UPSTREAM_PATHS: 95 names on master (88 registration sites, the cancel loop making 8) + 8 COLO. */
export const UPSTREAM_PATH_COUNT = 103;

export const UPSTREAM_PATHS: readonly UpstreamPath[] = [
  // 2.1 precopy (precopy-tests.c)
  smoke("/migration/precopy/unix/plain"),
  smoke("/migration/precopy/unix/suspend/live"),
  smoke("/migration/precopy/unix/suspend/notlive"),
  smoke("/migration/precopy/tcp/plain"),
  smoke("/migration/precopy/rdma/plain", "CONFIG_RDMA and an RDMA link"),
  smoke("/migration/precopy/rdma/plain/ipv6", "CONFIG_RDMA and an RDMA link (IPv6)"),
  full("/migration/precopy/tcp/plain/switchover-ack"),
  full("/migration/precopy/fd/tcp"),
  full("/migration/dirty_ring", "KVM + dirty ring"),
  full("/migration/auto_converge", SLOW),
  full("/dirty_limit", `KVM + dirty ring, ${SLOW}`),
  full("/migration/vcpu_dirty_limit", `KVM + dirty ring, pc machine, ${SLOW}`),
  // 2.2 multifd and compression (precopy-tests.c, compression-tests.c)
  smoke("/migration/multifd/tcp/uri/plain/none"),
  full("/migration/multifd/tcp/channels/plain/none"),
  full("/migration/multifd/tcp/plain/zero-page/legacy"),
  full("/migration/multifd/tcp/plain/zero-page/none"),
  smoke("/migration/multifd/tcp/plain/zlib"),
  full("/migration/multifd/tcp/plain/zstd", "CONFIG_ZSTD"),
  full("/migration/multifd+postcopy/tcp/plain/zstd", `CONFIG_ZSTD + ${UFFD}`),
  full("/migration/multifd/tcp/plain/qatzip", "CONFIG_QATZIP"),
  full("/migration/multifd/tcp/plain/qpl", "CONFIG_QPL"),
  full("/migration/multifd/tcp/plain/uadk", "CONFIG_UADK"),
  full("/migration/precopy/unix/xbzrle", SLOW),
  smoke("/migration/multifd/tcp/plain/cancel"),
  smoke("/migration/multifd+postcopy/tcp/plain/cancel", UFFD),
  // 2.3 the cancel state machine: one per MigrationStatus it does not skip
  full("/migration/cancel/src/after/none"),
  full("/migration/cancel/src/after/setup"),
  full("/migration/cancel/src/after/cancelling"),
  full("/migration/cancel/src/after/cancelled"),
  full("/migration/cancel/src/after/active"),
  full("/migration/cancel/src/after/completed"),
  full("/migration/cancel/src/after/failed"),
  full("/migration/cancel/src/after/pre-switchover"),
  // 2.4 postcopy (postcopy-tests.c)
  smoke("/migration/postcopy/plain", UFFD),
  smoke("/migration/postcopy/recovery/plain", UFFD),
  smoke("/migration/postcopy/preempt/plain", UFFD),
  full("/migration/postcopy/preempt/recovery/plain", UFFD),
  full("/migration/postcopy/recovery/double-failures/handshake", UFFD),
  full("/migration/postcopy/recovery/double-failures/reconnect", UFFD),
  full("/migration/multifd+postcopy/plain", UFFD),
  full("/migration/multifd+postcopy/preempt/plain", UFFD),
  full("/migration/postcopy/suspend", UFFD),
  // 2.5 file and mapped-ram (file-tests.c)
  smoke("/migration/precopy/file"),
  smoke("/migration/multifd/file/mapped-ram/dio", "O_DIRECT on the test directory"),
  full("/migration/precopy/file/offset"),
  full("/migration/precopy/file/offset/fdset"),
  full("/migration/precopy/file/offset/bad"),
  full("/migration/precopy/file/mapped-ram"),
  full("/migration/precopy/file/mapped-ram/live"),
  full("/migration/multifd/file/mapped-ram"),
  full("/migration/multifd/file/mapped-ram/live"),
  full("/migration/multifd/file/mapped-ram/ignore-shared"),
  full("/migration/multifd/file/mapped-ram/fdset"),
  full("/migration/multifd/file/mapped-ram/fdset/dio", "O_DIRECT on the test directory"),
  // 2.6 TLS (tls-tests.c, built only with GnuTLS; x509 only with libtasn1)
  smoke("/migration/precopy/tcp/tls/psk/match", GNUTLS),
  full("/migration/precopy/tcp/tls/psk/mismatch", GNUTLS),
  full("/migration/precopy/tcp/no-tls", GNUTLS),
  full("/migration/precopy/tcp/tls/no-hostname", X509),
  full("/migration/precopy/unix/tls/psk", GNUTLS),
  full("/migration/precopy/unix/tls/x509/default-host", X509),
  full("/migration/precopy/unix/tls/x509/override-host", X509),
  full("/migration/precopy/tcp/tls/x509/default-host", X509),
  full("/migration/precopy/tcp/tls/x509/override-host", X509),
  full("/migration/precopy/tcp/tls/x509/mismatch-host", X509),
  full("/migration/precopy/tcp/tls/x509/friendly-client", X509),
  full("/migration/precopy/tcp/tls/x509/hostile-client", X509),
  full("/migration/precopy/tcp/tls/x509/allow-anon-client", X509),
  full("/migration/precopy/tcp/tls/x509/reject-anon-client", X509),
  full("/migration/multifd/tcp/tls/psk/match", GNUTLS),
  full("/migration/multifd/tcp/tls/psk/mismatch", GNUTLS),
  full("/migration/multifd+postcopy/tcp/tls/psk/match", TLS_UFFD),
  full("/migration/multifd/tcp/tls/x509/default-host", X509),
  full("/migration/multifd/tcp/tls/x509/override-host", X509),
  full("/migration/multifd/tcp/tls/x509/allow-anon-client", X509),
  full("/migration/multifd/tcp/tls/x509/mismatch-host", X509),
  full("/migration/multifd/tcp/tls/x509/reject-anon-client", X509),
  full("/migration/postcopy/tls/psk", TLS_UFFD),
  full("/migration/postcopy/recovery/tls/psk", TLS_UFFD),
  full("/migration/postcopy/preempt/tls/psk", TLS_UFFD),
  full("/migration/postcopy/preempt/recovery/tls/psk", TLS_UFFD),
  full("/migration/multifd+postcopy/recovery/tls/psk", TLS_UFFD),
  full("/migration/multifd+postcopy/preempt/recovery/tls/psk", TLS_UFFD),
  // 2.7 CPR (cpr-tests.c) and misc (misc-tests.c)
  full("/migration/mode/reboot", FLAKY),
  full("/migration/mode/transfer", "KVM"),
  full("/migration/mode/transfer/defer", "KVM"),
  full("/migration/mode/exec", "KVM"),
  smoke("/migration/analyze-script", "PYTHON set (runs scripts/analyze-migration.py)"),
  full("/migration/bad_dest"),
  full("/migration/ignore-shared", FLAKY),
  full("/migration/validate_uuid"),
  full("/migration/validate_uuid_error"),
  full("/migration/validate_uuid_src_not_set"),
  full("/migration/validate_uuid_dst_not_set"),
  full("/migration/validate_uri/channels/both_set"),
  full("/migration/validate_uri/channels/none_set"),
  // 4. COLO (colo-tests.c, in master since the 2026 series; full only)
  full("/migration/colo/plain/primary_failover", COLO),
  full("/migration/colo/plain/secondary_failover", COLO),
  full("/migration/colo/multifd/primary_failover", COLO),
  full("/migration/colo/multifd/secondary_failover", COLO),
  full("/migration/colo/plain/primary_failover_checkpoint", COLO),
  full("/migration/colo/plain/secondary_failover_checkpoint", COLO),
  full("/migration/colo/multifd/primary_failover_checkpoint", COLO),
  full("/migration/colo/multifd/secondary_failover_checkpoint", COLO),
];
