/**
 * TLS in the simulated world: a modelled handshake with the decisions real TLS takes here
 * (engine/crypto/tls_session.ts). Real TLS would do its crypto on the event loop, outside the scheduler;
 * the model exchanges the certificates over the simulated link instead, so a run stays a function of its
 * seed. The client sends its certificate (or none); the server checks it and answers with a verdict and
 * its own certificate; the client checks that; after that the channel carries the stream as it is. A
 * refusal closes the channel, as a failed handshake ends a TCP connection.
 */
import { checkClient, checkServer } from "../../../engine/crypto/tls_session.ts";
import type { Link } from "../../../engine/transport/link.ts";
import type { TlsChannels } from "../../../engine/transport/tls.ts";

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

function refuse(link: Link, why: string): never {
  link.close();
  throw new Error(why);
}

export const simTls: TlsChannels = {
  async client(link, end) {
    await link.write(frame(ACCEPTED, end.creds.cert));
    const reply = await readFrame(link, "the server's certificate");
    if (reply.status !== ACCEPTED) refuse(link, "TLS handshake failed: the server refused the client");
    const why = checkServer(end.creds, reply.pem, end.hostname ?? null);
    if (why) refuse(link, why);
    return link;
  },
  async server(link, end) {
    const hello = await readFrame(link, "the client's certificate");
    // Without verify-peer the server does not ask for a certificate: whatever came is not looked at.
    const why = checkClient(end.creds, end.creds.verifyPeer ? hello.pem : null, end.authz ?? null);
    if (why) {
      await link.write(frame(REFUSED, null)).catch(() => {});
      refuse(link, why);
    }
    await link.write(frame(ACCEPTED, end.creds.cert));
    return link;
  },
};
