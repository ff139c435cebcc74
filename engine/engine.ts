/**
 * One engine: the guest plus both migration roles, independent of how it is controlled. main.ts puts it
 * in a process behind QMP; unit tests can drive two of them in one process.
 */
import { DirtyRate } from "./dirtyrate.ts";
import { DirtyLimit } from "./dirtylimit.ts";
import { type MachineFixture, machineFixture } from "../fixtures/machines.ts";
import { Breakpoints } from "./testing/breakpoints.ts";
import { isDefect, KNOWN_DEFECTS } from "./testing/defects.ts";
import { StreamFaults } from "./testing/faults.ts";
import { Machine } from "./guest/machine.ts";
import type { WorkloadSpec } from "./guest/workload.ts";
import { MigrationIncoming } from "./incoming.ts";
import { type Connector, MigrationState } from "./migration.ts";
import { MigrationOptions } from "./options.ts";
import { type ConfigurationInfo, VALIDATED_CAPABILITIES } from "./savevm.ts";
import { parseUuid } from "./uuid.ts";
import { type FileStore, hostFiles } from "./transport/file.ts";
import { nodeTls, type TlsChannels } from "./transport/tls.ts";
import { type FdHost, fdsetFiles, MonitorFds } from "./monitor/fds.ts";
import { libcFds } from "./os/fd_host.ts";
import type { AuthzSimple, QomObject, TlsCreds } from "./crypto/tls_creds.ts";
import type { Link } from "./transport/link.ts";
import { hostNetwork, type Network } from "./transport/socket.ts";
import type { Clock } from "./clock.ts";
import type { VcpuDriver, VcpuOptions } from "./guest/vcpu.ts";
import type { MigrationAddress } from "./transport/uri.ts";
import type { HostMemory, MemoryBackend } from "./hostmem.ts";
import { type CprChannel, type CprFd, encodeCprState } from "./cpr.ts";
import { libcCprChannel } from "./os/cpr_channel.ts";

export interface EngineConfig {
  name: string;
  /** A fixture's name (fixtures/machines.ts), or the fixture itself (a QEMU source's machine). */
  machine: string | MachineFixture;
  workload: WorkloadSpec;
  /** `-incoming`: a URI, "defer", or undefined for a source. */
  incoming?: string;
  /** -S: do not run the guest until `cont`. */
  startPaused: boolean;
  serialPath?: string;
  uuid?: string;
  runMs?: number;
  sleepMs?: number;
  memPrealloc?: boolean;
  /** The vCPU's dirty ring size (KVM's dirty-ring-size), or none: the dirty bitmap. */
  dirtyRingSize?: number;
  /** The main RAM in a memory backend's file (`-machine memory-backend`). */
  memoryBackend?: MemoryBackend;
  /** -machine aux-ram-share=on: every other RAM block a shared memfd (what cpr-transfer needs). */
  auxRamShare?: boolean;
  /**
   * cpr-transfer's target (`-incoming cpr,...`): the RAM descriptors the CPR state passed, by block name;
   * this process maps the source's memory from them and its incoming mode is cpr-transfer.
   */
  cprIncoming?: ReadonlyMap<string, number>;
  /** Known defects to switch on (engine/defects.ts). */
  defects?: string[];
}

export interface EngineHooks {
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  exit(code: number): void;
  /** Ends the process at once, like a crash (the engine process; unit tests leave it out). */
  abort?(msg: string): never;
  /** The simulated world's time, sockets and vCPU (default: the host's clock and sockets, a Worker). */
  clock?: Clock;
  net?: Network;
  files?: FileStore;
  tls?: TlsChannels;
  /** What a descriptor passed to the monitor is (default: this process's own, through libc). */
  fds?: FdHost;
  createVcpu?(opts: VcpuOptions): VcpuDriver;
  /** How a memory backend's file is mapped (default: this host's mmap). */
  hostMemory?: HostMemory;
  /** The cpr channel's host side (default: unix sockets through libc). */
  cprChannel?: CprChannel;
  /** cpr-transfer's target: hangs up the cpr channel (called once the main channel listens). */
  cprHangUp?(): void;
}

export class Engine {
  readonly machine: Machine;
  readonly options = new MigrationOptions();
  readonly migration: MigrationState;
  readonly incoming: MigrationIncoming;
  readonly uuid: Uint8Array | null;
  /** Whether the guest starts once an incoming migration completes (QEMU's autostart). */
  autostart: boolean;
  /** `-incoming defer` was given: migrate-incoming is allowed once. */
  readonly deferredIncoming: boolean;
  /** `-incoming URI` was given: the incoming migration started with the process (QEMU's `once` is spent). */
  readonly incomingAtStart: boolean;
  /** Stream faults armed by x-test-inject-fault. */
  readonly faults = new StreamFaults();
  /** Known defects switched on (engine/defects.ts). */
  readonly defects = new Set<string>();
  readonly breakpoints: Breakpoints;
  readonly net: Network;
  readonly files: FileStore;
  readonly tls: TlsChannels;
  /** Descriptors given with getfd and add-fd. */
  readonly fds: MonitorFds;
  /** Objects made by object-add (TLS credentials, authz), by id. */
  readonly objects = new Map<string, QomObject>();
  /** calc-dirty-rate's measurement. */
  readonly dirtyRate: DirtyRate;
  /** set-vcpu-dirty-limit's throttle. */
  readonly dirtyLimit: DirtyLimit;

  constructor(readonly config: EngineConfig, readonly hooks: EngineHooks) {
    this.uuid = config.uuid ? parseUuid(config.uuid) : null;
    this.net = hooks.net ?? hostNetwork;
    this.fds = new MonitorFds(hooks.fds ?? libcFds);
    this.files = fdsetFiles(hooks.files ?? hostFiles, this.fds);
    this.tls = hooks.tls ?? nodeTls;
    for (const d of config.defects ?? []) {
      if (!isDefect(d)) {
        throw new Error(`unknown defect '${d}' (known: ${Object.keys(KNOWN_DEFECTS).join(", ")})`);
      }
      this.defects.add(d);
    }
    this.autostart = !config.startPaused;
    this.deferredIncoming = config.incoming === "defer";
    this.incomingAtStart = config.incoming !== undefined && !this.deferredIncoming;
    this.machine = new Machine({
      fixture: typeof config.machine === "string" ? machineFixture(config.machine) : config.machine,
      workload: config.workload,
      serialPath: config.serialPath,
      initialState: config.incoming ? "inmigrate" : config.startPaused ? "prelaunch" : "running",
      emit: hooks.emit,
      // A guest that hit an error (the versions program's stale read) has crashed: QEMU's panic event.
      onGuestError: (m) => {
        hooks.log(`guest error: ${m}`);
        hooks.emit("GUEST_PANICKED", { action: "pause", "x-test-message": m });
      },
      memPrealloc: config.memPrealloc,
      dirtyRingSize: config.dirtyRingSize,
      memoryBackend: config.memoryBackend,
      hostMemory: hooks.hostMemory,
      auxRamShare: config.auxRamShare,
      preserved: config.cprIncoming,
      runMs: config.runMs,
      sleepMs: config.sleepMs,
      clock: hooks.clock,
      createVcpu: hooks.createVcpu,
    });
    if (this.machine.running) this.machine.vcpu.cont();
    this.options.dirtyRing = this.machine.dirtyRing !== null;
    this.dirtyRate = new DirtyRate(this.machine);
    this.dirtyLimit = new DirtyLimit(this.machine);
    this.breakpoints = new Breakpoints(hooks.emit);
    const host = {
      breakpoints: this.breakpoints,
      dirtyLimit: this.dirtyLimit,
      machine: this.machine,
      options: this.options,
      emit: hooks.emit,
      log: hooks.log,
    };
    this.migration = new MigrationState({
      ...host,
      config: () => this.outgoingConfig(),
      faults: () => this.faults.outgoing(),
      uuid: () => this.uuid ?? new Uint8Array(16),
    });
    this.incoming = new MigrationIncoming({
      ...host,
      uuid: () => this.uuid ?? new Uint8Array(16),
      defects: this.defects,
      config: () => ({
        machineType: this.machine.fixture.type,
        uuid: this.uuid,
        capabilities: this.validatedCapabilities(),
      }),
      faults: () => this.faults.incoming(),
      autostart: () => this.autostart,
      net: this.net,
      files: this.files,
      fds: this.fds,
      secure: (link) => this.secureIncoming(link),
      exit: hooks.exit,
      abort: hooks.abort,
      cprTransfer: config.cprIncoming !== undefined,
      listening: () => {
        const h = hooks.cprHangUp;
        hooks.cprHangUp = undefined;
        h?.();
      },
    });
  }

  /** What the source announces: the uuid only when validate-uuid is on (configuration/uuid needed). */
  outgoingConfig(): ConfigurationInfo {
    return {
      machineType: this.machine.fixture.type,
      uuid: this.options.cap("validate-uuid") ? this.uuid : null,
      capabilities: this.validatedCapabilities(),
    };
  }

  /** The enabled capabilities source and destination must agree on (configuration/capabilities). */
  validatedCapabilities(): string[] {
    return VALIDATED_CAPABILITIES.filter((c) => this.options.cap(c));
  }

  /**
   * cpr-transfer (qmp_migrate with a cpr channel): every RAM block must have a descriptor to pass; the
   * CPR state goes out first, and the main channel is connected once the target has hung up the cpr
   * channel (it listens then). Throws QEMU's words when a block cannot be passed or the channel fails.
   */
  async startOutgoingCpr(addr: MigrationAddress, cprPath: string): Promise<void> {
    const blocks = [...this.machine.blocks].reverse();
    for (const b of blocks) {
      if (b.fd === null) {
        throw new Error(
          `Memory region ${b.idstr} is not compatible with CPR. share=on is required for memory-backend ` +
            "objects, and aux-ram-share=on is required.",
        );
      }
    }
    // QEMU's list has the last block first (it inserts at the head).
    const fds: CprFd[] = blocks.map((b) => ({ name: b.idstr, id: 0, fd: b.fd! }));
    const { hangup } = await (this.hooks.cprChannel ?? libcCprChannel).send(
      cprPath,
      encodeCprState(fds),
      fds.map((f) => f.fd),
    );
    const main = this.#connector(addr);
    this.migration.start(async () => {
      await hangup;
      return main();
    });
  }

  startOutgoing(addr: MigrationAddress, resume = false): void {
    const connect = this.#connector(addr);
    if (resume) this.migration.resume(connect);
    else this.migration.start(connect);
  }

  #connector(addr: MigrationAddress): Connector {
    let connect: Connector;
    if (addr.transport === "file") {
      connect = async () => {
        const link = await this.files.outgoing(addr.path, addr.offset);
        return {
          link,
          returnPath: false,
          finish: () => link.truncateToEnd(),
          // With mapped-ram, each multifd channel opens the file for itself (file_send_channel_create).
          openChannel: this.options.cap("mapped-ram")
            ? () => this.files.outgoing(addr.path, addr.offset, { direct: this.options.params["direct-io"] })
            : undefined,
        };
      };
    } else if (addr.transport === "fd") {
      // fd: one channel, the socket getfd named (its return path shares it); no further channels.
      const link = this.fds.host.link(addr.fd, `fd:${addr.name}`);
      connect = () => Promise.resolve({ link, returnPath: true });
    } else {
      // With tls-creds every channel (main, multifd, postcopy's) is a TLS session (migration_tls_channel_connect).
      const open = async () => {
        const tls = this.#tlsEnd("client");
        const hostname = this.options.params["tls-hostname"] || (addr.transport === "tcp" ? addr.host : null);
        const link = await this.net.connect(addr);
        return tls ? await this.tls.client(link, { ...tls, hostname }) : link;
      };
      connect = async () => ({ link: await open(), returnPath: true, openChannel: open });
    }
    return connect;
  }

  /**
   * The TLS settings of a new channel, or null without tls-creds (migration_tls_get_creds): the
   * credentials must exist and be for this endpoint; the server's authz comes from tls-authz.
   */
  #tlsEnd(endpoint: "client" | "server"): { creds: TlsCreds; authz: AuthzSimple | null } | null {
    const id = this.options.params["tls-creds"];
    if (!id) return null;
    const creds = this.objects.get(id);
    if (!creds) throw new Error(`No TLS credentials with id '${id}'`);
    if (creds.type === "authz-simple") throw new Error(`Object with id '${id}' is not TLS credentials`);
    if (creds.endpoint !== endpoint) {
      throw new Error(`Expected TLS credentials for a ${endpoint} endpoint`);
    }
    const authzId = this.options.params["tls-authz"];
    const authz = authzId ? this.objects.get(authzId) : undefined;
    if (authzId && authz?.type !== "authz-simple") {
      throw new Error(`No authorization object with id '${authzId}'`);
    }
    return { creds, authz: authz?.type === "authz-simple" ? authz : null };
  }

  /** The destination's side of a new channel: a TLS session when tls-creds is set, else the channel. */
  async secureIncoming(link: Link): Promise<Link> {
    const tls = this.#tlsEnd("server");
    return tls ? await this.tls.server(link, tls) : link;
  }

  async close(): Promise<void> {
    this.breakpoints.close();
    // A COLO side waits for a failover request to finish; shutting down counts as one.
    for (const colo of [this.migration.colo, this.incoming.colo]) {
      try {
        colo?.requestFailover();
      } catch {
        // Already failing over.
      }
    }
    this.migration.shutdown();
    await this.migration.join();
    await this.incoming.close();
    this.dirtyRate.close();
    this.dirtyLimit.close();
    this.machine.close();
  }
}
