/**
 * TLS with pre-shared keys on a migration channel (io/channel-tls.c with tls-creds-psk). Deno's TLS has
 * no PSK suites, so an `openssl s_client`/`s_server` child is the record layer: its ciphertext side is a
 * loopback TCP connection the engine relays to and from the Link, its plaintext side is its stdin and
 * stdout, which become the channel the migration code reads and writes. The handshake is done when the
 * child reports the negotiated cipher suite; it failed when the child exits first.
 */
import type { TlsCredsPsk } from "../crypto/tls_creds.ts";
import { errorMessage } from "../error.ts";
import { type Link, LinkClosedError } from "./link.ts";

/** How long the child may take to finish its session after the channel is closed, before it is killed. */
const CLOSE_GRACE_MS = 2000;
/** How long a handshake may take (a loopback handshake takes milliseconds). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** openssl's reasons in the words QEMU's GnuTLS gives for the same failures (research/tls.md). */
function gnutlsWords(stderr: string): string {
  if (/binder does not verify|psk identity not found|bad psk/i.test(stderr)) {
    return "An illegal parameter has been received.";
  }
  if (/alert/i.test(stderr)) return "A TLS fatal alert has been received.";
  const reasons = [...stderr.matchAll(/:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):/g)].map((m) => m[1]);
  return reasons.at(-1) ?? (stderr.trim().split("\n").at(-1) || "the peer closed the connection");
}

/** Copies `from` into `to` until `from` ends; errors end the copy (the session's close reports them). */
async function relay(
  from: { read(p: Uint8Array): Promise<number | null> },
  to: (p: Uint8Array) => Promise<unknown>,
): Promise<void> {
  const buf = new Uint8Array(65536);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) return;
      await to(buf.slice(0, n));
    }
  } catch {
    // The other side is gone; close() tears down the rest.
  }
}

async function writeAll(conn: Deno.Conn, p: Uint8Array): Promise<void> {
  for (let off = 0; off < p.length;) off += await conn.write(p.subarray(off));
}

/** One openssl child's session as a Link (plaintext in and out). */
export class PskSession implements Link {
  readonly description: string;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stdout: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array | null = null;
  #conn: Deno.Conn | null = null;
  #stderr = "";
  #closed = false;
  readonly #exited: Promise<Deno.CommandStatus>;
  /** Resolves once the child has gone and the ciphertext relay and the Link are closed. */
  readonly finished: Promise<void>;
  #finish!: () => void;

  constructor(args: string[], private readonly link: Link) {
    this.description = `tls-psk:${link.description}`;
    this.#child = new Deno.Command("openssl", { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdout = this.#child.stdout.getReader();
    this.#exited = this.#child.status;
    this.finished = new Promise((r) => (this.#finish = r));
    void this.#readStderr();
  }

  async #readStderr(): Promise<void> {
    const dec = new TextDecoder();
    for await (const c of this.#child.stderr) this.#stderr += dec.decode(c, { stream: true });
  }

  /**
   * The ciphertext side, relayed both ways. The peer's end of stream reaches openssl as ours (it then
   * ends its session and its stdout, which the migration code drains); openssl's end of the connection
   * (its session is over) closes the Link once everything it sent has been written there.
   */
  attach(conn: Deno.Conn): void {
    this.#conn = conn;
    const out = relay(conn, (p) => this.link.write(p)).then(() => this.link.close());
    const into = relay(this.link, (p) => writeAll(conn, p)).then(() => conn.closeWrite().catch(() => {}));
    void Promise.all([out, into, this.#exited]).then(() => {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
      this.#finish();
    });
  }

  /** Waits until openssl reports the session (`marker` on its stderr) or fails. */
  async handshake(marker: string): Promise<void> {
    const deadline = Date.now() + HANDSHAKE_TIMEOUT_MS;
    let done = false;
    void this.#exited.then(() => (done = true));
    while (!this.#stderr.includes(marker)) {
      if (done) {
        await new Promise((r) => setTimeout(r, 0));
        if (this.#stderr.includes(marker)) break;
        this.close();
        throw new Error(`TLS handshake failed: ${gnutlsWords(this.#stderr)}`);
      }
      if (Date.now() > deadline) {
        this.close();
        throw new Error(`TLS handshake failed: no session within ${HANDSHAKE_TIMEOUT_MS} ms`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Whether the child has exited, waiting at most `ms`. */
  exitedWithin(ms: number): Promise<boolean> {
    let t: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      this.#exited.then(() => true),
      new Promise<boolean>((r) => (t = setTimeout(() => r(false), ms))),
    ]).finally(() => clearTimeout(t));
  }

  /** Resolves (to null) when the child exits. */
  get gone(): Promise<null> {
    return this.#exited.then(() => null);
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (!this.#pending) {
      if (this.#closed) return null;
      const r = await this.#stdout.read().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) return null;
      this.#pending = r.value;
    }
    const c = this.#pending;
    const n = Math.min(c.length, p.length);
    p.set(c.subarray(0, n));
    this.#pending = n === c.length ? null : c.subarray(n);
    return n;
  }

  async write(p: Uint8Array): Promise<void> {
    if (this.#closed) throw new LinkClosedError(this.description);
    try {
      await this.#stdin.write(p.slice());
    } catch (e) {
      throw new LinkClosedError(`${this.description}: ${errorMessage(e)}`);
    }
  }

  /** Ends the session as QEMU does on close: what was written goes out, then close_notify, then EOF. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stdin.close().catch(() => {});
    this.#stdout.cancel().catch(() => {});
    const kill = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, CLOSE_GRACE_MS);
    void this.#exited.then(() => {
      clearTimeout(kill);
      // With a connection, its relay forwards openssl's last records and then closes the Link.
      if (this.#conn) return;
      this.link.close();
      this.#finish();
    });
  }

  /** Drops a child that never got its connection (its port was taken), leaving the Link to another. */
  abandon(): void {
    this.#closed = true;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Exited already (the usual case: it could not listen).
    }
    this.#stdin.close().catch(() => {});
    this.#stdout.cancel().catch(() => {});
  }
}

/** The source's end: s_client connects to a loopback listener the engine accepts exactly once. */
export async function pskClient(link: Link, creds: TlsCredsPsk): Promise<PskSession> {
  const key = creds.keys.get(creds.username)!;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const session = new PskSession([
    "s_client",
    "-connect",
    `127.0.0.1:${listener.addr.port}`,
    "-psk_identity",
    creds.username,
    "-psk",
    key,
    "-brief",
    "-nocommands",
    "-no_ign_eof",
  ], link);
  const accepting = listener.accept();
  // If the child exits without connecting, the accept fails when the listener closes: nobody waits for it.
  accepting.catch(() => {});
  try {
    const conn = await Promise.race([accepting, session.gone]);
    if (conn) session.attach(conn);
  } finally {
    listener.close();
  }
  await session.handshake("Ciphersuite:");
  return session;
}

/** The destination's end: s_server on a loopback port, for one connection, the engine relays into it. */
export async function pskServer(link: Link, creds: TlsCredsPsk): Promise<PskSession> {
  // s_server does not say which port it took; a port just freed is taken instead (retried if lost).
  for (let attempt = 0;; attempt++) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const [identity, key] = [...creds.keys][0] ?? ["", ""];
    const session = new PskSession([
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-naccept",
      "1",
      "-nocert",
      "-psk_identity",
      identity,
      "-psk",
      key,
      "-num_tickets",
      "0",
      "-brief",
    ], link);
    const conn = await connectWhileAlive(port, session);
    if (!conn) {
      session.abandon();
      if (attempt < 3) continue;
      throw new Error("TLS handshake failed: openssl s_server did not listen");
    }
    session.attach(conn);
    await session.handshake("Ciphersuite:");
    return session;
  }
}

/** Connects to the child's port once it listens; null if it exits first (its port was taken). */
async function connectWhileAlive(port: number, session: PskSession): Promise<Deno.Conn | null> {
  const deadline = Date.now() + HANDSHAKE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      return await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      if (await session.exitedWithin(5)) return null;
    }
  }
  return null;
}
