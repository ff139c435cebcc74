/**
 * What each end of a TLS session decides about its peer's certificate (crypto/tlssession.c's
 * qcrypto_tls_session_check_certificate and the authz check after it), apart from the record layer: the
 * engine's node:tls channels and the simulated world's modelled handshake take the same decisions here.
 * Deno's TLS server does not verify a client's chain itself, so every check is explicit.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { AuthzSimple, TlsCredsX509 } from "./tls_creds.ts";

/** A certificate as DER bytes (what a TLS stack hands over), or PEM text (what the credential files hold). */
export type CertData = Uint8Array | string;

function parse(c: CertData): X509Certificate {
  return new X509Certificate(typeof c === "string" ? c : new Uint8Array(c));
}

/** The peer is signed by our CA: gnutls's "known issuer". */
function signedByCa(creds: TlsCredsX509, peer: X509Certificate): boolean {
  try {
    return peer.verify(parse(creds.ca).publicKey);
  } catch {
    return false;
  }
}

/** The certificate's distinguished name as QEMU's authz compares it ("CN=ACME QEMU Client"). */
export function distinguishedName(c: CertData): string {
  // An empty subject comes back undefined.
  return (parse(c).subject ?? "").split("\n").reverse().join(",");
}

/**
 * The peer's distinguished name, which QEMU reads from every peer certificate after its chain (and
 * words as the client's whichever end reads it): a certificate with an empty subject has none.
 */
const NO_DN = "Cannot get client distinguished name: The requested data were not available.";

/**
 * The client's check of the server (the migration source's): the chain, then the name the source
 * connected to (tls-hostname, else the URI's host; none over a unix socket). An error message, or null.
 */
export function checkServer(
  creds: TlsCredsX509,
  peer: CertData | null,
  hostname: string | null,
): string | null {
  if (!creds.verifyPeer) return null;
  if (!peer) return "Verify failed: No certificate was found.";
  const cert = parse(peer);
  if (!signedByCa(creds, cert)) return "Verify failed: The certificate hasn't got a known issuer.";
  if (distinguishedName(peer) === "") return NO_DN;
  if (hostname === null || hostname === "") return "No hostname for certificate validation";
  const matches = isIP(hostname) ? cert.checkIP(hostname) : cert.checkHost(hostname, { subject: "default" });
  return matches ? null : `Certificate does not match the hostname ${hostname}`;
}

/**
 * The server's check of the client (the destination's): with verify-peer a certificate signed by the CA
 * must come, and with tls-authz its distinguished name must be the one allowed. An error, or null.
 */
export function checkClient(
  creds: TlsCredsX509,
  peer: CertData | null,
  authz: AuthzSimple | null,
): string | null {
  if (!creds.verifyPeer) return null;
  if (!peer) return "Verify failed: No certificate was found.";
  const cert = parse(peer);
  if (!signedByCa(creds, cert)) return "Verify failed: The certificate hasn't got a known issuer.";
  if (distinguishedName(peer) === "") return NO_DN;
  if (authz) {
    const dn = distinguishedName(peer);
    if (dn !== authz.identity) return `TLS x509 authz check for ${dn} is denied`;
  }
  return null;
}
