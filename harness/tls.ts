/**
 * A case's TLS (SocketCase.tls): the run's credentials in the pair's directory (upstream's layout, made
 * once per pair, gone with the directory), and on each side the objects and parameters upstream's
 * tls-tests.c hooks set: the source a client credential and tls-creds (tls-hostname if asked), the
 * destination a server credential with its verify-peer, tls-creds, and tls-authz when asked.
 */
import type { TlsSpec } from "./case.ts";
import type { SetParameters } from "../engine/options.ts";
import type { Side } from "./world/world.ts";
import { makePskCredentials, makeX509Credentials, PSK_KEYS } from "../engine/testing/tls_certs.ts";

/** The client CN tls-authz lets in (upstream's QCRYPTO_TLS_TEST_CLIENT_NAME). */
export const FRIENDLY_CLIENT = "ACME QEMU Client";
const HOSTILE_CLIENT = "ACME Hostile Client";

/** What of the pair TLS needs (the framework's MigrationPair, which calls this). */
export interface TlsPair {
  /** The pair's directory (removed with the pair: no credential outlives the run). */
  readonly dir: string;
  readonly src: Side;
  setParams(side: Side, params: SetParameters): Promise<void>;
}

const made = new WeakMap<TlsPair, Promise<string>>();

/** The pair's credential directory, made on first use. */
function credentials(p: TlsPair, spec: TlsSpec): Promise<string> {
  let dir = made.get(p);
  if (!dir) {
    const client = spec.client ?? "friendly";
    dir = makeX509Credentials(`${p.dir}/tls`, {
      serverName: spec.serverName ?? "127.0.0.1",
      clientName: client === "none" ? null : client === "hostile" ? HOSTILE_CLIENT : FRIENDLY_CLIENT,
      clientForeignCa: client === "foreign",
    });
    made.set(p, dir);
  }
  return dir;
}

/**
 * PSK as upstream's psk hooks: keys.psk with the key in the pair's directory; in the mismatch case the
 * destination reads another directory whose file holds another key for the same username.
 */
async function setupPsk(p: TlsPair, side: Side, spec: TlsSpec): Promise<void> {
  const src = side === p.src;
  const other = !src && spec.psk === "mismatch";
  const dir = await makePskCredentials(
    `${p.dir}/${other ? "tls-psk-mismatch" : "tls-psk"}`,
    other ? PSK_KEYS.mismatch : PSK_KEYS.match,
  );
  await side.qmp.execute("object-add", {
    "qom-type": "tls-creds-psk",
    id: "tlscredspsk0",
    endpoint: src ? "client" : "server",
    dir,
    ...(src ? { username: "qemu" } : {}),
  });
  await p.setParams(side, { "tls-creds": "tlscredspsk0" });
}

/** object-add and the TLS parameters on `side` (the source or the destination). */
export async function setupTls(p: TlsPair, side: Side, spec: TlsSpec): Promise<void> {
  if (spec.psk) return await setupPsk(p, side, spec);
  const dir = await credentials(p, spec);
  const src = side === p.src;
  const id = src ? "tlscredsx509client0" : "tlscredsx509server0";
  await side.qmp.execute("object-add", {
    "qom-type": "tls-creds-x509",
    id,
    endpoint: src ? "client" : "server",
    dir,
    "verify-peer": src ? true : spec.verifyPeer ?? true,
    // A foreign client's own certificate does not chain to the CA it checks the server with: QEMU's
    // sanity check would refuse it at object-add ("Our own certificate … failed validation").
    "sanity-check": !(src && spec.client === "foreign"),
  });
  const params: SetParameters = { "tls-creds": id };
  if (src && spec.hostname !== undefined) params["tls-hostname"] = spec.hostname;
  if (!src && spec.authz) {
    await side.qmp.execute("object-add", {
      "qom-type": "authz-simple",
      id: "tlsauthz0",
      identity: `CN=${FRIENDLY_CLIENT}`,
    });
    params["tls-authz"] = "tlsauthz0";
  }
  await p.setParams(side, params);
}
