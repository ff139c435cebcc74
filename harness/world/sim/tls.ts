/**
 * TLS in the simulated world: a modelled handshake with the decisions real TLS takes here
 * (engine/crypto/tls_session.ts). Real TLS would do its crypto on the event loop, outside the scheduler;
 * the model exchanges the certificates over the simulated link instead, so a run stays a function of its
 * seed. The client sends its certificate (or none); the server checks it and answers with a verdict and
 * its own certificate; the client checks that; after that the channel carries the stream as it is. A
 * refusal closes the channel, as a failed handshake ends a TCP connection.
 */
import { createHash } from "node:crypto";
import type { TlsCreds, TlsCredsPsk } from "../../../engine/crypto/tls_creds.ts";
import { checkClient, checkServer } from "../../../engine/crypto/tls_session.ts";
import type { Link } from "../../../engine/transport/link.ts";
import { judged, type TlsChannels } from "../../../engine/transport/tls.ts";
import type { Clock } from "../../../engine/clock.ts";

const ACCEPTED = 1;
const REFUSED = 0;
/**
 * Every handshake message has this size: a certificate's length varies with its random key and
 * signature, and bytes on a simulated link are scheduled, so a message whose size followed the key
 * would make the run depend on more than its seed.
 */
const FRAME = 4096;

async function readExactly(link: Link, n: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await link.read(out.subarray(got));
    if (r === null) throw new Error(`TLS handshake failed: the peer closed the connection (${what})`);
    got += r;
  }
  return out;
}

/** A verdict and a certificate (PEM text) or none, length-prefixed, padded to FRAME bytes. */
function frame(status: number, pem: string | null): Uint8Array {
  const body = new TextEncoder().encode(pem ?? "");
  if (5 + body.length > FRAME) throw new Error(`a certificate of ${body.length} bytes does not fit a frame`);
  const out = new Uint8Array(FRAME);
  out[0] = status;
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

async function readFrame(link: Link, what: string): Promise<{ status: number; pem: string | null }> {
  const f = await readExactly(link, FRAME, what);
  const len = new DataView(f.buffer).getUint32(1);
  if (5 + len > FRAME) throw new Error(`TLS handshake failed: a malformed handshake message (${what})`);
  return { status: f[0], pem: len ? new TextDecoder().decode(f.subarray(5, 5 + len)) : null };
}

/**
 * PSK: the client offers its username and a digest of its key (standing in for the binder, which
 * proves the key without sending it); the server looks the username up in its file.
 */
function pskOffer(c: TlsCredsPsk): string {
  return `${c.username}:${createHash("sha256").update(c.keys.get(c.username) ?? "").digest("hex")}`;
}

function pskCheck(c: TlsCredsPsk, offer: string | null): string | null {
  const [user, digest] = (offer ?? "").split(":");
  const key = c.keys.get(user);
  const ok = key !== undefined && createHash("sha256").update(key).digest("hex") === digest;
  return ok ? null : "TLS handshake failed: An illegal parameter has been received.";
}

/** What a client sends first: its certificate (x509) or its PSK offer. */
function hello(c: TlsCreds): string | null {
  return c.type === "tls-creds-psk" ? pskOffer(c) : c.cert;
}

function refuse(link: Link, why: string): never {
  link.close();
  throw new Error(why);
}

/**
 * Virtual milliseconds a handshake takes on the server before it answers: the engine's PSK sessions
 * start an openssl child (tens of milliseconds), its x509 ones run in process. A channel that is still
 * in its handshake when the migration moves on (a preempt channel when postcopy pauses) is a window
 * real runs open under load; modelled, the simulation opens it too.
 */
const HANDSHAKE_MS = { "tls-creds-x509": 2, "tls-creds-psk": 30 } as const;

/** The simulated world's TLS on `clock` (its virtual time). */
export function simTls(clock: Clock): TlsChannels {
  return {
    client: (link, end) => simClient(link, end),
    server: async (link, end) => {
      const l = await simServer(link, end);
      // The client has its answer; the server's side of the session is ready only a while later.
      await clock.sleep(HANDSHAKE_MS[end.creds.type]);
      return l;
    },
  };
}

const { client: simClient, server: simServer }: TlsChannels = {
  async client(link, end) {
    const c = end.creds;
    await link.write(frame(ACCEPTED, hello(c)));
    const reply = await readFrame(link, "the server's certificate");
    if (reply.status !== ACCEPTED) refuse(link, "TLS handshake failed: A TLS fatal alert has been received.");
    const why = c.type === "tls-creds-psk"
      ? null
      : judged(() => checkServer(c, reply.pem, end.hostname ?? null));
    if (why) refuse(link, why);
    return link;
  },
  async server(link, end) {
    const c = end.creds;
    const got = await readFrame(link, "the client's hello");
    // Without verify-peer the server does not ask for a certificate: whatever came is not looked at.
    const why = c.type === "tls-creds-psk"
      ? pskCheck(c, got.pem)
      : judged(() => checkClient(c, c.verifyPeer ? got.pem : null, end.authz ?? null));
    if (why) {
      await link.write(frame(REFUSED, null)).catch(() => {});
      refuse(link, why);
    }
    await link.write(frame(ACCEPTED, c.type === "tls-creds-psk" ? null : c.cert));
    return link;
  },
};
