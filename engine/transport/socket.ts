/** Socket transports (migration/socket.c): listen and connect over unix sockets and loopback TCP. */
import { ConnLink, type Link } from "./link.ts";
import type { MigrationAddress, SocketAddress } from "./uri.ts";

export interface MigrationListener {
  /** The addresses actually listened on (with the real port when port 0 was asked). */
  readonly addresses: SocketAddress[];
  /** Next incoming connection, or null once closed. */
  accept(): Promise<Link | null>;
  close(): void;
}

/** Where sockets come from: the host's (below), or the simulated world's in-memory network. */
export interface Network {
  listen(addr: MigrationAddress): MigrationListener;
  connect(addr: MigrationAddress): Promise<Link>;
}

export const hostNetwork: Network = {
  listen: (addr) => socketListen(addr),
  connect: (addr) => socketConnect(addr),
};

export function socketListen(addr: MigrationAddress): MigrationListener {
  let listener: Deno.Listener;
  let addresses: SocketAddress[];
  if (addr.transport === "unix") {
    listener = Deno.listen({ transport: "unix", path: addr.path });
    addresses = [{ type: "unix", path: addr.path }];
  } else if (addr.transport === "tcp") {
    const l = Deno.listen({ transport: "tcp", hostname: addr.host, port: addr.port });
    listener = l;
    addresses = [{ type: "inet", host: addr.host, port: String(l.addr.port) }];
  } else {
    throw new Error(`cannot listen on a ${addr.transport} address`);
  }
  let closed = false;
  return {
    addresses,
    async accept() {
      if (closed) return null;
      try {
        const conn = await listener.accept();
        // Small messages go both ways (return path, COLO): Nagle plus delayed ACKs would add ~40 ms each.
        if (addr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
        return new ConnLink(conn, describe(addr, conn));
      } catch (e) {
        if (closed) return null;
        throw e;
      }
    },
    close() {
      if (closed) return;
      closed = true;
      listener.close();
    },
  };
}

export async function socketConnect(addr: MigrationAddress): Promise<Link> {
  if (addr.transport === "unix") {
    const conn = await Deno.connect({ transport: "unix", path: addr.path });
    return new ConnLink(conn, `unix:${addr.path}`);
  }
  if (addr.transport === "tcp") {
    const conn = await Deno.connect({ transport: "tcp", hostname: addr.host, port: addr.port });
    conn.setNoDelay(true);
    return new ConnLink(conn, `tcp:${addr.host}:${addr.port}`);
  }
  throw new Error(`cannot connect to a ${addr.transport} address`);
}

function describe(addr: MigrationAddress, conn: Deno.Conn): string {
  if (addr.transport === "tcp" && conn.remoteAddr.transport === "tcp") {
    return `tcp:${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
  }
  return addr.transport === "unix" ? `unix:${addr.path}` : addr.transport;
}
