/**
 * Test peers on a side's network (the host's sockets, or the simulated world's): a listener that accepts
 * connections and never answers, and a connection that sends a few bytes and then stays silent. Upstream's
 * postcopy double-failure tests make the same peers from socketpairs: a source that resumes towards a
 * peer that never answers stays in its handshake; a destination sent one byte enters its recovery.
 */
import type { Link } from "../engine/transport/link.ts";
import type { Network } from "../engine/transport/socket.ts";
import { parseMigrationUri } from "../engine/transport/uri.ts";

export interface SilentPeer {
  /** Closes the peer and every connection it holds; resolves once its loops have ended. */
  close(): Promise<void>;
}

/** Reads and drops everything until the link ends. */
async function drain(link: Link): Promise<void> {
  const buf = new Uint8Array(64 << 10);
  try {
    while ((await link.read(buf)) !== null);
  } catch {
    // The peer went: nothing more to read.
  }
}

/** Listens at `uri`; every connection is held open, read and never answered. */
export function silentListener(net: Network, uri: string): SilentPeer {
  const listener = net.listen(parseMigrationUri(uri));
  const links: Link[] = [];
  const readers: Promise<void>[] = [];
  const accepting = (async () => {
    while (true) {
      let link: Link | null;
      try {
        link = await listener.accept();
      } catch {
        return;
      }
      if (!link) return;
      links.push(link);
      readers.push(drain(link));
    }
  })();
  return {
    async close() {
      listener.close();
      for (const l of links) l.close();
      await accepting;
      await Promise.all(readers);
    },
  };
}

/** Connects to `uri`, sends `bytes`, then holds the connection open without a word more. */
export async function silentConnection(net: Network, uri: string, bytes: Uint8Array): Promise<SilentPeer> {
  const link = await net.connect(parseMigrationUri(uri));
  await link.write(bytes);
  const reader = drain(link);
  return {
    async close() {
      link.close();
      await reader;
    },
  };
}
