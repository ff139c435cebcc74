/**
 * The simulated world's network: unix paths and TCP ports of one pair, in memory. A side's engine gets
 * a view that remembers which connections it made or accepted, so killing the side resets them (the
 * peer sees its socket go, as it would when a process dies).
 */
import type { Link } from "../../../engine/transport/link.ts";
import type { MigrationListener, Network } from "../../../engine/transport/socket.ts";
import type { MigrationAddress, SocketAddress } from "../../../engine/transport/uri.ts";
import { SimConnection, type SimEnd } from "./link.ts";
import type { Simulation } from "./scheduler.ts";
import type { StreamMutator } from "../../wire_mutate.ts";

/** A migration connection reset at an exact byte (the swarm's fault). */
export interface SimLinkFault {
  connection: number;
  afterBytes: number;
}

interface Listening {
  owner: string;
  queue: Link[];
  waiter: ((l: Link | null) => void) | null;
  closed: boolean;
}

/** First port handed out for `tcp:...:0` (then counting up, so every run picks the same ports). */
const FIRST_PORT = 40000;

export class SimNetwork {
  readonly #listening = new Map<string, Listening>();
  readonly #conns: { conn: SimConnection; sides: Set<string> }[] = [];
  #nextPort = FIRST_PORT;
  #count = 0;

  /**
   * `dir`: the pair's (randomly named) directory, named alike in the trace. `fault`: the migration
   * connection with that index (in the order they are made: main channel first) resets once that many
   * bytes have arrived on it.
   */
  constructor(
    private readonly sim: Simulation,
    private readonly dir = "",
    private readonly fault?: SimLinkFault,
    /** The fuzzer's edits on one migration connection (by the same index as `fault`). */
    private readonly mutator?: StreamMutator,
  ) {}

  /** The network as the engine named `side` sees it. */
  forSide(side: string): Network {
    return {
      listen: (addr) => this.#listen(side, addr),
      connect: (addr) => this.#connect(side, addr),
    };
  }

  /** Resets every connection `side` is an end of, and closes its listeners (the side died). */
  resetSide(side: string): void {
    for (const c of this.#conns) if (c.sides.has(side)) c.conn.reset();
    for (const [key, l] of this.#listening) {
      if (l.owner === side) this.#closeListener(key, l);
    }
  }

  resetAll(): void {
    for (const c of this.#conns) c.conn.reset();
  }

  /** Every connection's state, for a failure report. */
  describe(): string[] {
    return this.#conns.flatMap((c) => c.conn.describe());
  }

  dispose(): void {
    for (const c of this.#conns) c.conn.dispose();
    this.#conns.length = 0;
  }

  #key(addr: MigrationAddress): string {
    if (addr.transport === "unix") return `unix:${addr.path}`;
    if (addr.transport === "tcp") return `tcp:${addr.host}:${addr.port}`;
    throw new Error(`the simulated network has no ${addr.transport} transport`);
  }

  #listen(owner: string, addr: MigrationAddress): MigrationListener {
    let address: SocketAddress;
    let key: string;
    if (addr.transport === "tcp") {
      const port = addr.port === 0 ? this.#nextPort++ : addr.port;
      key = `tcp:${addr.host}:${port}`;
      address = { type: "inet", host: addr.host, port: String(port) };
    } else if (addr.transport === "unix") {
      key = this.#key(addr);
      address = { type: "unix", path: addr.path };
    } else {
      throw new Error(`cannot listen on a ${addr.transport} address`);
    }
    if (this.#listening.get(key)?.closed === false) {
      throw new Deno.errors.AddrInUse(`Address already in use (os error 98): ${key}`);
    }
    const l: Listening = { owner, queue: [], waiter: null, closed: false };
    this.#listening.set(key, l);
    return {
      addresses: [address],
      accept: () => {
        if (l.closed) return Promise.resolve(null);
        const next = l.queue.shift();
        if (next) return Promise.resolve(next);
        return new Promise((r) => (l.waiter = r));
      },
      close: () => this.#closeListener(key, l),
    };
  }

  #closeListener(key: string, l: Listening): void {
    if (l.closed) return;
    l.closed = true;
    for (const link of l.queue) link.close();
    l.queue.length = 0;
    l.waiter?.(null);
    l.waiter = null;
    if (this.#listening.get(key) === l) this.#listening.delete(key);
  }

  #connect(side: string, addr: MigrationAddress): Promise<Link> {
    const key = this.#key(addr);
    const l = this.#listening.get(key);
    if (!l || l.closed) {
      const e = addr.transport === "unix"
        ? new Deno.errors.NotFound(`No such file or directory (os error 2): ${addr.path}`)
        : new Deno.errors.ConnectionRefused("Connection refused (os error 111)");
      return Promise.reject(e);
    }
    const label = this.dir ? key.replaceAll(this.dir, "$DIR") : key;
    const index = this.#count++;
    const conn = new SimConnection(this.sim, `${label}#${index}`, {
      capacity: this.sim.knobs.linkCapacity,
      weight: this.sim.linkWeight(),
      timed: true,
      resetAfter: this.fault?.connection === index ? this.fault.afterBytes : undefined,
      mutate: this.mutator?.mutation.connection === index
        ? { direction: this.mutator.mutation.direction, mutator: this.mutator }
        : undefined,
      names: [side, l.owner],
    });
    this.#conns.push({ conn, sides: new Set([side, l.owner]) });
    const theirs = withDescription(conn.b, key);
    if (l.waiter) {
      const w = l.waiter;
      l.waiter = null;
      w(theirs);
    } else l.queue.push(theirs);
    return Promise.resolve(withDescription(conn.a, key));
  }

  /** socketpair(2): a connection no listener made, torn down with the pair's others. */
  socketPair(label: string): [Link, Link] {
    const conn = new SimConnection(this.sim, `${label}#${this.#count++}`, {
      capacity: this.sim.knobs.linkCapacity,
      weight: this.sim.linkWeight(),
      names: ["a", "b"],
    });
    this.#conns.push({ conn, sides: new Set(["source", "target"]) });
    return [withDescription(conn.a, label), withDescription(conn.b, label)];
  }
}

function withDescription(end: SimEnd, description: string): Link {
  return {
    description,
    read: (p) => end.read(p),
    write: (p) => end.write(p).then(() => {}),
    close: () => end.close(),
  };
}
