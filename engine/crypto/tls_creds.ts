/**
 * TLS credentials and authorisation as QOM objects (crypto/tlscredsx509.c, crypto/tlscredspsk.c,
 * authz/simple.c): `object-add` creates them, the migration parameters tls-creds and tls-authz name them.
 * Files are read when the object is created, as QEMU loads them at `complete`, so a missing file fails
 * object-add with QEMU's message and a migration never reads the disk.
 */
import { X509Certificate } from "node:crypto";
import { type QmpArgSpec, validateArgs } from "../qmp/schema.ts";

export interface TlsCredsX509 {
  type: "tls-creds-x509";
  id: string;
  endpoint: "client" | "server";
  dir: string;
  /** A server asks for and checks the client's certificate; a client checks the server's. */
  verifyPeer: boolean;
  ca: string;
  /** This side's certificate and key: a server's are required, a client's optional (anonymous). */
  cert: string | null;
  key: string | null;
}

export interface AuthzSimple {
  type: "authz-simple";
  id: string;
  /** The distinguished name a client's certificate must have, e.g. "CN=ACME QEMU Client". */
  identity: string;
}

/**
 * Pre-shared keys (crypto/tlscredspsk.c): `dir/keys.psk` holds `username:hexkey` lines. A client uses
 * its username's key (default "qemu"); a server takes any username the file lists.
 */
export interface TlsCredsPsk {
  type: "tls-creds-psk";
  id: string;
  endpoint: "client" | "server";
  dir: string;
  username: string;
  /** The file's keys by username, as hex. */
  keys: Map<string, string>;
}

export type TlsCreds = TlsCredsX509 | TlsCredsPsk;

export type QomObject = TlsCreds | AuthzSimple;

export const QOM_TYPES = ["tls-creds-x509", "tls-creds-psk", "authz-simple"] as const;

/** The username a PSK client uses when none is given, as in QEMU. */
export const PSK_DEFAULT_USERNAME = "qemu";

const X509_ARGS: QmpArgSpec = {
  "qom-type": { type: "str" },
  id: { type: "str" },
  endpoint: { type: { enum: ["client", "server"] }, optional: true },
  dir: { type: "str", optional: true },
  "verify-peer": { type: "bool", optional: true },
  "sanity-check": { type: "bool", optional: true },
  priority: { type: "str", optional: true },
};
const PSK_ARGS: QmpArgSpec = {
  "qom-type": { type: "str" },
  id: { type: "str" },
  endpoint: { type: { enum: ["client", "server"] }, optional: true },
  dir: { type: "str", optional: true },
  username: { type: "str", optional: true },
  priority: { type: "str", optional: true },
};
const AUTHZ_ARGS: QmpArgSpec = {
  "qom-type": { type: "str" },
  id: { type: "str" },
  identity: { type: "str", optional: true },
};

/** The credential file `name` in `dir`, or QEMU's error for it. */
function readCred(dir: string, name: string, required: boolean): string | null {
  const path = `${dir}/${name}`;
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (!required && e instanceof Deno.errors.NotFound) return null;
    const why = e instanceof Deno.errors.NotFound ? "No such file or directory" : (e as Error).message;
    throw new Error(`Unable to access credentials ${path}: ${why}`);
  }
}

/** user_creatable_add_qapi for the object types the model has; throws with QEMU's message. */
export function createObject(args: Record<string, unknown>): QomObject {
  const type = args["qom-type"];
  if (type === "authz-simple") {
    validateArgs(AUTHZ_ARGS, args);
    return { type, id: String(args.id), identity: String(args.identity ?? "") };
  }
  if (type === "tls-creds-psk") return createPsk(args);
  if (type !== "tls-creds-x509") {
    throw new Error(`Parameter 'qom-type' does not accept value '${String(type)}'`);
  }
  validateArgs(X509_ARGS, args);
  const endpoint = (args.endpoint ?? "client") as "client" | "server";
  const dir = String(args.dir ?? "");
  const ca = readCred(dir, "ca-cert.pem", true)!;
  const server = endpoint === "server";
  const cert = readCred(dir, `${endpoint}-cert.pem`, server);
  const key = readCred(dir, `${endpoint}-key.pem`, server);
  const creds: TlsCredsX509 = {
    type,
    id: String(args.id),
    endpoint,
    dir,
    verifyPeer: args["verify-peer"] !== false,
    ca,
    cert,
    key,
  };
  if (args["sanity-check"] === true) sanityCheck(creds);
  return creds;
}

function createPsk(args: Record<string, unknown>): TlsCredsPsk {
  validateArgs(PSK_ARGS, args);
  const endpoint = (args.endpoint ?? "client") as "client" | "server";
  const dir = String(args.dir ?? "");
  const keys = new Map<string, string>();
  for (const line of readCred(dir, "keys.psk", true)!.split("\n")) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const key = line.slice(i + 1).trim();
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(key)) {
      throw new Error(`Malformed key for username '${line.slice(0, i)}' in ${dir}/keys.psk`);
    }
    keys.set(line.slice(0, i), key.toLowerCase());
  }
  const username = String(args.username ?? PSK_DEFAULT_USERNAME);
  if (endpoint === "client" && !keys.has(username)) {
    throw new Error(`Cannot find PSK key for username '${username}' in ${dir}/keys.psk`);
  }
  return { type: "tls-creds-psk", id: String(args.id), endpoint, dir, username, keys };
}

/** qcrypto_tls_creds_x509_sanity_check's core: the certificates parse and ours is signed by the CA. */
function sanityCheck(c: TlsCredsX509): void {
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(c.ca);
  } catch (e) {
    throw new Error(`Unable to import CA certificate list ${c.dir}/ca-cert.pem: ${(e as Error).message}`);
  }
  if (!c.cert) return;
  const path = `${c.dir}/${c.endpoint}-cert.pem`;
  let mine: X509Certificate;
  try {
    mine = new X509Certificate(c.cert);
  } catch (e) {
    throw new Error(`Unable to import certificate ${path}: ${(e as Error).message}`);
  }
  if (!mine.verify(ca.publicKey)) {
    throw new Error(
      `Our own certificate ${path} failed validation against ${c.dir}/ca-cert.pem: The certificate ` +
        "hasn't got a known issuer",
    );
  }
}
