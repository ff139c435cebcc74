/**
 * TLS on a migration channel (migration/tls.c, io/channel-tls.c): the channel as connected or accepted,
 * then a TLS session over it, then the checks QEMU makes of the peer's certificate
 * (engine/crypto/tls_session.ts). The engine runs node:tls over a node Duplex bridged onto the Link, so
 * any Link (unix or TCP) gets TLS; the simulated world models the handshake with the same decisions.
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import * as tls from "node:tls";
import type { AuthzSimple, TlsCreds } from "../crypto/tls_creds.ts";
import { checkClient, checkServer } from "../crypto/tls_session.ts";
import { errorMessage } from "../error.ts";
import { type Link, LinkClosedError } from "./link.ts";
import { pskClient, pskServer } from "./tls_psk.ts";

/** One end's settings: its credentials; the client the name it checks, the server the authz. */
export interface TlsEnd {
  creds: TlsCreds;
  hostname?: string | null;
  authz?: AuthzSimple | null;
}

/** How a world puts TLS on a Link (the engine: node:tls; the simulation: a modelled handshake). */
export interface TlsChannels {
  client(link: Link, end: TlsEnd): Promise<Link>;
  server(link: Link, end: TlsEnd): Promise<Link>;
}

/**
 * A Link as a node Duplex: every chunk written whole (a short write would tear a TLS record). A write the
 * link refuses is also told to `failed`: node's TLS socket does not pass its transport's errors on, so
 * without it the session would take every later write as done (found with QEMU's server, which closes
 * after refusing a TLS 1.3 client's certificate: the model's source "completed" 104 MB into nothing).
 */
function duplexOf(link: Link, failed: (e: Error) => void): Duplex {
  let pumping = false;
  const d: Duplex = new Duplex({
    read() {
      if (pumping) return;
      pumping = true;
      void (async () => {
        const buf = new Uint8Array(65536);
        while (true) {
          let n: number | null;
          try {
            n = await link.read(buf);
          } catch {
            n = null;
          }
          if (n === null) {
            d.push(null);
            return;
          }
          if (!d.push(buf.slice(0, n))) {
            pumping = false;
            return;
          }
        }
      })();
    },
    write(chunk: Uint8Array, _enc, cb) {
      link.write(chunk).then(() => cb(), (e) => {
        failed(e);
        cb(e);
      });
    },
    final(cb) {
      cb();
    },
    destroy(_e, cb) {
      link.close();
      cb(null);
    },
  });
  return d;
}

/** The Duplex a TLS socket runs over, and the session told when its link fails (before or after it exists). */
function transportOf(link: Link): { duplex: Duplex; session(s: TlsLink): TlsLink } {
  let session: TlsLink | null = null;
  let early: Error | null = null;
  const duplex = duplexOf(link, (e) => {
    if (session) session.transportFailed(e);
    else early ??= e;
  });
  return {
    duplex,
    session(s) {
      session = s;
      if (early) s.transportFailed(early);
      return s;
    },
  };
}

/** The TLS session as a Link: reads from what it decrypted, writes through it. */
class TlsLink implements Link {
  readonly #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #closed = false;
  /** Writes handed to the session and not yet through: failed when the session ends under them. */
  readonly #pending = new Set<(e: Error) => void>();

  constructor(private readonly socket: tls.TLSSocket, readonly description: string) {
    socket.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#signal();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#signal();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#failPending();
      this.#signal();
    });
    socket.on("error", (e: Error) => {
      this.#error ??= e;
      this.#failPending();
      this.#signal();
    });
  }

  /** Why a write cannot go: the session's error, or its end (the peer closed it). */
  #writeError(): Error {
    return this.#error ?? new LinkClosedError(this.description);
  }

  /** The transport under the session failed (duplexOf): no write goes through from here on. */
  transportFailed(e: Error): void {
    this.#error ??= e;
    this.#failPending();
    this.#signal();
  }

  #failPending(): void {
    const e = this.#writeError();
    for (const fail of this.#pending) fail(e);
    this.#pending.clear();
  }

  #signal(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed || this.#ended) return null;
      if (this.#error) throw this.#error;
      await new Promise<void>((r) => (this.#wake = r));
    }
    const c = this.#chunks[0];
    const n = Math.min(c.length, p.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    return n;
  }

  write(p: Uint8Array): Promise<void> {
    // A session the peer ended takes no more: found with QEMU's server, which refuses a TLS 1.3 client's
    // certificate after the client's handshake is over and closes; the model's source wrote on into the
    // closed session and completed its migration, where QEMU's own source fails.
    if (this.#closed || this.#error || this.#ended) return Promise.reject(this.#writeError());
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => reject(e);
      this.#pending.add(fail);
      this.socket.write(Buffer.from(p), (e) => {
        this.#pending.delete(fail);
        if (e) reject(e);
        else resolve();
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    this.#signal();
  }
}

/** Waits for the handshake (`event`) or its failure. */
function handshake(socket: tls.TLSSocket, event: "secureConnect" | "secure"): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once(event, () => resolve());
    socket.once("error", (e: Error) => reject(new Error(`TLS handshake failed: ${errorMessage(e)}`)));
    socket.once("close", () => reject(new Error("TLS handshake failed: the peer closed the connection")));
  });
}

function peerDer(socket: tls.TLSSocket): Uint8Array | null {
  const c = socket.getPeerCertificate(true);
  return c && c.raw ? new Uint8Array(c.raw) : null;
}

/** A check's verdict; a certificate it could not even read is a refusal too, never a session left open. */
export function judged(check: () => string | null): string | null {
  try {
    return check();
  } catch (e) {
    return `Verify failed: ${errorMessage(e)}`;
  }
}

/** Resolves once what was written to `socket` went down to its transport, or after `ms`. */
function drained(socket: tls.TLSSocket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    socket.write(new Uint8Array(1).subarray(0, 0), () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A check that failed ends the session and the channel, with its message. */
function refuse(socket: tls.TLSSocket, link: Link, why: string): never {
  socket.destroy();
  link.close();
  throw new Error(why);
}

/**
 * node:tls over the Link for x509, the chain, name and authz checked explicitly once the handshake is
 * done; an openssl child for PSK, which node:tls lacks (tls_psk.ts).
 */
export const nodeTls: TlsChannels = {
  async client(link, end) {
    const c = end.creds;
    if (c.type === "tls-creds-psk") return await pskClient(link, c);
    const transport = transportOf(link);
    const socket = tls.connect({
      socket: transport.duplex,
      ca: c.ca,
      ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    try {
      await handshake(socket, "secureConnect");
    } catch (e) {
      socket.destroy();
      link.close();
      throw e;
    }
    const why = judged(() => checkServer(c, peerDer(socket), end.hostname ?? null));
    if (why) {
      // The handshake's last flight (the client's Finished) goes out first, as a QEMU client's does before
      // it checks: a server still waiting for it would wait on after the close (found with QEMU's server).
      await drained(socket, 1000);
      refuse(socket, link, why);
    }
    return transport.session(new TlsLink(socket, `tls:${link.description}`));
  },
  async server(link, end) {
    const c = end.creds;
    if (c.type === "tls-creds-psk") return await pskServer(link, c);
    const transport = transportOf(link);
    const socket = new tls.TLSSocket(transport.duplex, {
      isServer: true,
      ca: c.ca,
      cert: c.cert ?? undefined,
      key: c.key ?? undefined,
      requestCert: c.verifyPeer,
      rejectUnauthorized: false,
      // TLS 1.3's session tickets, sent after the handshake and never read by a QEMU source, turn its
      // close into a reset that cuts the stream short here (research/tls.md): 1.2 has none.
      maxVersion: "TLSv1.2",
    });
    try {
      await handshake(socket, "secure");
    } catch (e) {
      socket.destroy();
      link.close();
      throw e;
    }
    const why = judged(() => checkClient(c, peerDer(socket), end.authz ?? null));
    if (why) refuse(socket, link, why);
    return transport.session(new TlsLink(socket, `tls:${link.description}`));
  },
};
