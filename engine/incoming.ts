/**
 * The incoming migration (MigrationIncomingState in migration/migration.c): listen, accept the main
 * channel, load the stream off the control loop, then start the guest or stay paused (-S).
 */
import type { Machine } from "./guest/machine.ts";
import type { MigrationStatus } from "./migration.ts";
import type { MigrationOptions } from "./options.ts";
import { QEMUFileReader, StreamError } from "./qemu_file.ts";
import { RamLoadState } from "./ram.ts";
import { ReturnPathSender } from "./return_path.ts";
import { type ConfigurationInfo, loadVmState } from "./savevm.ts";
import { fileIncoming } from "./transport/file.ts";
import type { Link } from "./transport/link.ts";
import { type MigrationListener, socketListen } from "./transport/socket.ts";
import type { MigrationAddress, SocketAddress } from "./transport/uri.ts";

/** The destination yields to its control loop at least this often while loading. */
const LOAD_SLICE_MS = 5;

export interface IncomingHost {
  machine: Machine;
  options: MigrationOptions;
  config(): ConfigurationInfo;
  emit(event: string, data?: Record<string, unknown>): void;
  log(msg: string): void;
  /** Whether the guest starts when the load completes (false with -S until `cont`). */
  autostart(): boolean;
  /** exit-on-error: the process ends with EXIT_FAILURE after a failed load. */
  exit(code: number): void;
}

export class MigrationIncoming {
  status: MigrationStatus = "none";
  errorDesc: string | null = null;
  exitOnError = true;
  #listener: MigrationListener | null = null;
  #link: Link | null = null;
  #socketAddress: SocketAddress[] = [];
  #startTime = 0;
  #endTime = 0;
  #task: Promise<void> | null = null;
  #ram: RamLoadState | null = null;
  #bytes = 0;

  constructor(private readonly host: IncomingHost) {}

  get started(): boolean {
    return this.status !== "none";
  }

  isActive(): boolean {
    return this.status === "setup" || this.status === "active";
  }

  #setStatus(s: MigrationStatus): void {
    if (this.status === s) return;
    this.status = s;
    if (this.host.options.cap("events")) this.host.emit("MIGRATION", { status: s });
  }

  /** qemu_start_incoming_migration: listens (or opens the file) and returns; loading runs after. */
  start(addr: MigrationAddress): void {
    if (addr.transport === "file") {
      this.#setStatus("setup");
      this.#task = fileIncoming(addr.path, addr.offset).then(
        (link) => this.#process(link),
        (e) => this.#fail(new Error(`Failed to open ${addr.path}: ${errorText(e)}`)),
      );
      return;
    }
    this.#listener = socketListen(addr);
    this.#socketAddress = this.#listener.addresses;
    this.#setStatus("setup");
    this.#task = this.#acceptMain();
  }

  /** Loads from an already-connected link: in-process tests, and what QEMU's fd: transport does. */
  startOnLink(link: Link): void {
    this.#setStatus("setup");
    this.#task = this.#process(link);
  }

  /** Resolves once the current incoming migration finished (completed or failed). */
  async join(): Promise<void> {
    await this.#task;
  }

  async #acceptMain(): Promise<void> {
    const listener = this.#listener!;
    let link: Link | null;
    try {
      link = await listener.accept();
    } catch (e) {
      return this.#fail(new Error(`accept failed: ${errorText(e)}`));
    } finally {
      // Without multifd only the main channel connects; stop listening like QEMU does.
      listener.close();
    }
    if (link) await this.#process(link);
  }

  async #process(link: Link): Promise<void> {
    this.#link = link;
    this.#startTime = performance.now();
    this.#setStatus("active");
    const machine = this.host.machine;
    const r = new QEMUFileReader(link);
    const ram = new RamLoadState(machine.blocks);
    this.#ram = ram;
    let rp: ReturnPathSender | null = null;
    let slice = performance.now();
    try {
      await loadVmState(r, {
        local: this.host.config(),
        ram,
        devices: machine.devices,
        openReturnPath: () => (rp = new ReturnPathSender(link)),
        ping: (v) => {
          rp?.pong(v).catch(() => {});
        },
        progress: async () => {
          this.#bytes = r.position;
          // Keep QMP answering during a load: yield to the event loop every few milliseconds.
          if (performance.now() - slice > LOAD_SLICE_MS) {
            await new Promise((res) => setTimeout(res, 0));
            slice = performance.now();
          }
        },
      });
      this.#bytes = r.position;
      if (rp) await (rp as ReturnPathSender).shut(false).catch(() => {});
      this.#endTime = performance.now();
      link.close();
      this.#link = null;
      if (this.host.autostart()) {
        this.#setStatus("completed");
        machine.start();
      } else {
        machine.setRunstate("paused");
        this.#setStatus("completed");
      }
    } catch (e) {
      if (rp) await (rp as ReturnPathSender).shut(true).catch(() => {});
      this.#fail(e);
    }
  }

  #fail(e: unknown): void {
    this.#endTime = performance.now();
    this.errorDesc = e instanceof StreamError ? `load of migration failed: ${e.message}` : errorText(e);
    this.host.log(this.errorDesc);
    this.#link?.close();
    this.#link = null;
    this.#listener?.close();
    this.#setStatus("failed");
    if (this.exitOnError) this.host.exit(1);
  }

  /** Stops listening and drops the channel (engine shutdown). */
  async close(): Promise<void> {
    this.#listener?.close();
    this.#link?.close();
    await this.#task;
  }

  query(): Record<string, unknown> {
    if (this.status === "none") return {};
    const out: Record<string, unknown> = { status: this.status };
    if (this.#socketAddress.length && this.status !== "completed") {
      out["socket-address"] = this.#socketAddress;
    }
    if (this.#startTime) {
      out["total-time"] = Math.round((this.#endTime || performance.now()) - this.#startTime);
    }
    if (this.#ram) {
      out["ram"] = {
        transferred: this.#bytes,
        normal: this.#ram.counters.normal,
        duplicate: this.#ram.counters.zero,
      };
    }
    if (this.status === "failed" && this.errorDesc) out["error-desc"] = this.errorDesc;
    return out;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
