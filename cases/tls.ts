/**
 * TLS cases (upstream tls-tests.c, x509 and PSK): the channels as TLS sessions with one CA's certificates made
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

const noHostname: PrecopyCase = {
  name: "/migration/precopy/tcp/tls/no-hostname",
  tier: "full",
  flow: "precopy",
  transport: "tcp",
  tls: { serverName: "", authz: true },
  srcParams: { "tls-hostname": null },
  expect: "fail-dest-exits",
  srcError: /Cannot get client distinguished name: The requested data were not available\./,
  why: "a server certificate with no name at all, tls-hostname null (JSON null accepted, meaning the " +
    "URI's host): the source finds no distinguished name to check and hangs up; the destination quits",
};

/** Upstream's PSK hooks: keys.psk on both sides, or another key on the destination. */
function psk(path: string, transport: "tcp" | "unix", match: boolean, multifd = false): PrecopyCase {
  return {
    name: path,
    tier: path === "/migration/precopy/tcp/tls/psk/match" ? "smoke" : "full",
    flow: "precopy",
    transport,
    tls: { psk: match ? "match" : "mismatch" },
    ...(multifd ? { defer: true, caps: ["multifd"], srcParams: MULTIFD, dstParams: MULTIFD } : {}),
    ...(match ? { why: "pre-shared keys: every channel a TLS session keyed by keys.psk, no certificates" } : {
      expect: "refused",
      error: /TLS handshake failed: An illegal parameter has been received\./,
      why: "the destination's keys.psk holds another key for the same username: the handshake fails " +
        "on both ends, the source keeps its guest and the destination keeps listening",
    }),
  };
}

const pskCases = [
  psk("/migration/precopy/tcp/tls/psk/match", "tcp", true),
  psk("/migration/precopy/tcp/tls/psk/mismatch", "tcp", false),
  psk("/migration/precopy/unix/tls/psk", "unix", true),
  psk("/migration/multifd/tcp/tls/psk/match", "tcp", true, true),
  psk("/migration/multifd/tcp/tls/psk/mismatch", "tcp", false, true),
];

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
multifd.push({
  ...x509("/migration/multifd/tcp/tls/x509/mismatch-host", "mismatch-host", "tcp", true),
  expect: "refused",
  why: "a server certificate for another address with multifd: the source refuses it and fails; the " +
    "destination, still waiting for its multifd channels, does not quit",
});

const plain: MigrationCase = {
  name: "/migration/precopy/tcp/no-tls",
  tier: "full",
  flow: "precopy",
  transport: "tcp",
  srcParams: { "tls-creds": "" },
  dstParams: { "tls-creds": "" },
  why: "tls-creds cleared on both sides: a plain stream, no TLS on either end",
};

export const TLS_CASES: MigrationCase[] = [...precopy, noHostname, ...unix, ...multifd, ...pskCases, plain];
