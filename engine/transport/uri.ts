/**
 * Migration URIs (migration/migration.c migrate_uri_parse): `unix:PATH`, `tcp:HOST:PORT`,
 * `file:PATH[,offset=N]` (PATH may be `/dev/fdset/N`), `fd:NAME`. Everything stays on this machine: TCP hosts must be loopback.
 */
export type MigrationAddress =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; host: string; port: number }
  | { transport: "file"; path: string; offset: number }
  /** fd:NAME, a socket the monitor was given by `getfd`; `fd` is set once the command took it. */
  | { transport: "fd"; name: string; fd: number };

/** A `socket-address` entry as query-migrate reports it. */
export type SocketAddress = { type: "unix"; path: string } | { type: "inet"; host: string; port: string };

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

export class UriError extends Error {}

export function parseMigrationUri(uri: string): MigrationAddress {
  if (uri.startsWith("unix:")) {
    const path = uri.slice(5);
    if (!path) throw new UriError(`Invalid migration URI '${uri}': empty socket path`);
    return { transport: "unix", path };
  }
  if (uri.startsWith("tcp:")) {
    const rest = uri.slice(4);
    const colon = rest.lastIndexOf(":");
    if (colon < 0) throw new UriError(`address resolution failed for '${rest}': port is missing`);
    const host = rest.slice(0, colon);
    const portStr = rest.slice(colon + 1).split(",")[0];
    if (!/^\d+$/.test(portStr) || Number(portStr) > 65535) {
      throw new UriError(`address resolution failed for '${rest}': invalid port '${portStr}'`);
    }
    if (!LOOPBACK.has(host)) {
      throw new UriError(`migtest only uses loopback addresses; '${host}' is not allowed`);
    }
    return { transport: "tcp", host: host === "localhost" ? "127.0.0.1" : host, port: Number(portStr) };
  }
  if (uri.startsWith("file:")) {
    const [path, ...opts] = uri.slice(5).split(",");
    if (!path) throw new UriError(`Invalid migration URI '${uri}': empty file name`);
    let offset = 0;
    for (const o of opts) {
      const m = /^offset=(.*)$/.exec(o);
      if (!m) throw new UriError(`file URI has an unknown option '${o}'`);
      // Plain integers only, as qemu_strtou64 parses it: a size suffix such as 0x20M is refused.
      if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(m[1])) throw new UriError(`file URI has bad offset ${m[1]}`);
      offset = Number(m[1]);
      if (!Number.isSafeInteger(offset)) throw new UriError(`file URI has bad offset ${m[1]}`);
    }
    return { transport: "file", path, offset };
  }
  if (uri.startsWith("fd:")) {
    const name = uri.slice(3);
    if (!name) throw new UriError(`Invalid migration URI '${uri}': empty file descriptor name`);
    return { transport: "fd", name, fd: -1 };
  }
  const scheme = uri.includes(":") ? uri.slice(0, uri.indexOf(":")) : uri;
  throw new UriError(`unknown migration protocol: ${scheme}`);
}
