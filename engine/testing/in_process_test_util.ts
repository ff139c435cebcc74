/**
 * Engines in the test process: a source and a destination joined by in-memory links, so the migration
 * code runs without sockets or child processes. Both are closed by `await using`.
 */
import { Engine } from "../engine.ts";
import type { WorkloadSpec } from "../guest/workload.ts";
import type { Capability } from "../options.ts";
import { memoryLinkPair } from "../transport/link.ts";

/** Room in each direction of an in-memory link. */
const LINK_CAPACITY = 1 << 20;

export interface InProcessOptions {
  /** Machine fixture; "tiny" keeps a migration within milliseconds. */
  machine?: string;
  workload?: WorkloadSpec;
  /** Capabilities switched on at once, on each engine. */
  capabilities?: Capability[];
}

export interface RecordedEvent {
  event: string;
  data?: Record<string, unknown>;
}

/** One engine with what it emitted and the exit codes it asked for (it never ends the test process). */
export class InProcessEngine {
  readonly events: RecordedEvent[] = [];
  readonly exits: number[] = [];
  readonly engine: Engine;

  /** `incoming`: "defer" for a destination, undefined for a source (whose guest runs at once). */
  constructor(name: string, incoming: string | undefined, opts: InProcessOptions = {}) {
    this.engine = new Engine({
      name,
      machine: opts.machine ?? "tiny",
      workload: opts.workload ?? { kind: "random", seed: 42, hotPages: 64, hotPercent: 70 },
      incoming,
      startPaused: incoming !== undefined,
      runMs: 1,
      sleepMs: 1,
    }, {
      emit: (event, data) => this.events.push({ event, data }),
      log: () => {},
      exit: (code) => this.exits.push(code),
    });
    const caps = opts.capabilities ?? [];
    const refused = this.engine.options.setCapabilities(
      caps.map((capability) => ({ capability, state: true })),
    );
    if (refused) throw new Error(refused);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.engine.close();
  }
}

/** A source and a `-incoming defer` destination built alike; disposing closes the source first. */
export class InProcessPair {
  readonly src: InProcessEngine;
  readonly dst: InProcessEngine;

  constructor(opts: InProcessOptions & { names?: [string, string] } = {}) {
    const [src, dst] = opts.names ?? ["source", "target"];
    this.src = new InProcessEngine(src, undefined, opts);
    this.dst = new InProcessEngine(dst, "defer", opts);
  }

  /**
   * Starts the migration: the main channel and, when the source has multifd, one link per channel.
   * `mainChannelDelayMs` hands the main channel over after the multifd channels (the destination must
   * tell them apart by their magic); `returnPath: false` is a transport without one.
   */
  migrate(opts: { returnPath?: boolean; mainChannelDelayMs?: number } = {}): void {
    const dst = this.dst.engine;
    const [a, b] = memoryLinkPair(LINK_CAPACITY, "main");
    this.src.engine.migration.start(() =>
      Promise.resolve({
        link: a,
        returnPath: opts.returnPath ?? true,
        openChannel: () => {
          const [ca, cb] = memoryLinkPair(LINK_CAPACITY, "multifd");
          dst.incoming.acceptLink(cb);
          return Promise.resolve(ca);
        },
      })
    );
    if (opts.mainChannelDelayMs === undefined) dst.incoming.acceptLink(b);
    else setTimeout(() => dst.incoming.acceptLink(b), opts.mainChannelDelayMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.src.engine.close();
    await this.dst.engine.close();
  }
}
