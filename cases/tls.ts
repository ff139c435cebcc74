/**
 * TLS cases (upstream tls-tests.c, x509): the channels as TLS sessions with one CA's certificates made
 * for the run; the source checks the server's certificate against the name it connects to, the
 * destination asks for and checks the client's, and with tls-authz its name. Each refusal must leave
 * the source failed with its guest running and the destination as QEMU leaves it: listening on when it
 * refused the client, gone when the source hung up on it.
 */
import type { TlsSpec } from "../harness/case.ts";
import type { MigrationCase } from "../harness/families/mod.ts";
import type { PrecopyCase } from "../harness/families/precopy/case.ts";

/** MULTIFD_TEST_CHANNELS upstream. */
const MULTIFD = { "multifd-channels": 4 };

type X509 = Pick<PrecopyCase, "expect" | "error" | "srcError"> & { tls: TlsSpec; why: string };

/** What upstream's x509 hooks set up, by the path's last component. */
const X509: Record<string, X509> = {
  "default-host": {
    tls: {},
    why: "the server's certificate names 127.0.0.1, the address the source connects to: accepted",
  },
  "override-host": {
    tls: { serverName: "qemu.org", hostname: "qemu.org" },
    why: "tls-hostname replaces the URI's host as the name the server's certificate must carry",
  },
  "mismatch-host": {
    tls: { serverName: "10.0.0.1" },
    expect: "fail-dest-exits",
    srcError: /Certificate does not match the hostname 127\.0\.0\.1/,
    why: "a server certificate for another address: the source refuses it and hangs up; the " +
      "destination, whose stream ends, quits",
  },
  "friendly-client": {
    tls: { authz: true },
    why: "tls-authz lets the client whose certificate names CN=ACME QEMU Client in",
  },
  "hostile-client": {
    tls: { client: "hostile", authz: true },
    expect: "refused",
    error: /TLS x509 authz check for CN=ACME Hostile Client is denied/,
    why: "tls-authz refuses a client certificate with another name, signed by the same CA: the " +
      "destination drops the connection and keeps listening",
  },
  "allow-anon-client": {
    tls: { client: "none", verifyPeer: false },
    why: "without verify-peer the destination accepts a client with no certificate",
  },
  "foreign-ca-client": {
    tls: { client: "foreign" },
    expect: "refused",
    error: /known issuer/,
    why: "beyond upstream: a client certificate with the friendly name but signed by another CA is " +
      "refused by its chain (the name alone proves nothing); the destination keeps listening",
  },
  "reject-anon-client": {
    tls: { client: "none" },
    expect: "refused",
    error: /No certificate was found/,
    why: "with verify-peer a client with no certificate is refused; the destination keeps listening",
  },
};

function x509(path: string, kind: string, transport: "tcp" | "unix", multifd = false): PrecopyCase {
  const x = X509[kind];
  return {
    name: path,
    tier: "full",
    flow: "precopy",
    transport,
    ...(multifd ? { defer: true, caps: ["multifd"], srcParams: MULTIFD, dstParams: MULTIFD } : {}),
    ...x,
  };
}

const precopy = Object.keys(X509).map((k) => x509(`/migration/precopy/tcp/tls/x509/${k}`, k, "tcp"));

const unix: MigrationCase[] = [
  {
    ...x509("/migration/precopy/unix/tls/x509/default-host", "default-host", "unix"),
    expect: "fail-dest-exits",
    srcError: /No hostname for certificate validation/,
    why: "over a unix socket there is no host to check the server's certificate against: the source " +
      "refuses to go on without tls-hostname, and the destination quits",
  },
  x509("/migration/precopy/unix/tls/x509/override-host", "override-host", "unix"),
];

const multifd = ["default-host", "override-host", "allow-anon-client", "reject-anon-client"].map((k) =>
  x509(`/migration/multifd/tcp/tls/x509/${k}`, k, "tcp", true)
);

const plain: MigrationCase = {
  name: "/migration/precopy/tcp/no-tls",
  tier: "full",
  flow: "precopy",
  transport: "tcp",
  srcParams: { "tls-creds": "" },
  dstParams: { "tls-creds": "" },
  why: "tls-creds cleared on both sides: a plain stream, no TLS on either end",
};

export const TLS_CASES: MigrationCase[] = [...precopy, ...unix, ...multifd, plain];
