/**
 * One real qemu-system-x86_64 as the harness sees it, with the same surface as EngineProcess: spawned
 * inside the case's private directory, its stderr kept, its QMP socket connected, its qtest socket
 * accepted, and always reaped (SIGTERM, then SIGKILL).
 *
 * The command line follows upstream's migration tests (see the research notes, 3.2): the x86 a-b boot
 * sector on an IDE disk, 150 MiB of RAM, the serial port into a file, QMP and qtest on unix sockets.
 *
 * What QEMU 7.2 (Debian 1:7.2+dfsg-7) does with it, checked by hand:
 * - `-qtest unix:PATH` makes QEMU *connect* to PATH at startup (it exits with "Failed to connect" if
 *   nobody listens), so we listen before spawning, like libqtest.
 * - `-qtest` does not force the qtest accelerator when `-accel` is given: with `-accel tcg` the guest runs
 *   under TCG and the qtest socket still serves readb/readq/read/writeq on guest-physical memory.
 * - `-run-with` does not exist yet ("invalid option"; it came with 9.0), so there is no exit-with-parent:
 *   kill() must always run (callers use try/finally).
 * - `-accel kvm -accel tcg` picks KVM whenever /dev/kvm opens. Under nested virtualisation KVM can be far
 *   slower than TCG for this guest (every page touch exits), so callers that need speed pass
 *   `accel: ["tcg"]`.
 */
import { Child, SpawnedProcess } from "./child.ts";
import { QmpClient, type QmpTranscriptEntry } from "../../engine/qmp/client.ts";
import type { MemoryBackend } from "../../engine/hostmem.ts";
import { QtestClient } from "../qtest_client.ts";
import type { SideId } from "../case.ts";

/** The x86 a-b boot sector (build: `deno task bootsect`). */
export const BOOTSECT_IMAGE = new URL("../../fixtures/guest/a-b-bootblock.img", import.meta.url).pathname;
/** The same sector built with SUSPEND_ME: it enters ACPI S3 after its first 'B' (upstream's suspend_me). */
export const SUSPEND_BOOTSECT_IMAGE =
  new URL("../../fixtures/guest/a-b-suspend-bootblock.img", import.meta.url).pathname;

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The QEMU binary for `side`, as upstream picks it: QTEST_QEMU_BINARY_SRC / QTEST_QEMU_BINARY_DST, then
 * QTEST_QEMU_BINARY, then (our addition) `qemu-system-x86_64` on PATH. Undefined when none is found.
 */
export function qemuBinary(side: SideId): string | undefined {
  const specific = Deno.env.get(side === "src" ? "QTEST_QEMU_BINARY_SRC" : "QTEST_QEMU_BINARY_DST");
  if (specific) return specific;
  const generic = Deno.env.get("QTEST_QEMU_BINARY");
  if (generic) return generic;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const candidate = `${dir}/qemu-system-x86_64`;
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The firmware folders (`-L`) a binary needs: MIGTEST_QEMU_DATADIRS (colon-separated) when set; else,
 * for a binary unpacked under a prefix (PREFIX/usr/bin/qemu-system-x86_64, as
 * tools/qemu/install-backports.sh leaves QEMU 10.0), that prefix's usr/share/qemu and usr/share/seabios,
 * because the binary's built-in data folder is the system's (/usr/share/qemu, another version's ROMs).
 * None for a system binary or a build tree (QEMU finds its pc-bios/ beside itself).
 */
export function qemuDataDirs(binary: string): string[] {
  const fromEnv = Deno.env.get("MIGTEST_QEMU_DATADIRS");
  if (fromEnv !== undefined) return fromEnv.split(":").filter(Boolean);
  const prefix = unpackedPrefix(binary);
  if (!prefix) return [];
  return [`${prefix}/usr/share/qemu`, `${prefix}/usr/share/seabios`].filter(isDirectory);
}

/**
 * The environment a binary needs: for one unpacked under a prefix, QEMU_MODULE_DIR at the prefix's
 * modules, so it never loads the system QEMU's modules (built for another version, refused).
 */
export function qemuEnv(binary: string): Record<string, string> {
  const prefix = unpackedPrefix(binary);
  if (!prefix) return {};
  try {
    for (const e of Deno.readDirSync(`${prefix}/usr/lib`)) {
      const dir = `${prefix}/usr/lib/${e.name}/qemu`;
      if (e.isDirectory && isDirectory(dir)) return { QEMU_MODULE_DIR: dir };
    }
  } catch {
    // No usr/lib under the prefix: nothing to point at.
  }
  return {};
}

/** PREFIX when binary is PREFIX/usr/bin/NAME with PREFIX/usr/share/qemu present and PREFIX not "/". */
function unpackedPrefix(binary: string): string | null {
  const m = /^(.+)\/usr\/bin\/[^/]+$/.exec(binary);
  if (!m || !isDirectory(`${m[1]}/usr/share/qemu`)) return null;
  return m[1];
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

export interface QemuSpawnOptions {
  /** "source" or "target" (QEMU's -name; also names the files in `dir`). */
  name: string;
  /** Private run directory (0700): sockets, serial file, log and the copy of the boot sector go here. */
  dir: string;
  /** Default: qemuBinary("dst") for name "target", else qemuBinary("src"). */
  binary?: string;
  /** `-incoming URI` or `-incoming defer`. */
  incoming?: string;
  /** `-S`. */
  startPaused?: boolean;
  uuid?: string;
  transcript: QmpTranscriptEntry[];
  /** Bound for startup (QMP greeting, qtest connection) and default for QMP/qtest requests. */
  timeoutMs: number;
  /** Guest RAM in KiB (default 150 MiB, as upstream for x86); QEMU rounds it up to 8 KiB. */
  memoryKiB?: number;
  /** Guest RAM from this memory-backend-file (`-machine memory-backend=ID`), sized as `-m`. */
  memoryBackend?: MemoryBackend;
  /** -machine aux-ram-share=on (QEMU 10.0 on). */
  auxRamShare?: boolean;
  /** cpr-transfer's target: `-incoming cpr,...` on this unix socket, before the main channel's. */
  cprChannel?: string;
  /** `-machine` value, options included (default "pc", an alias of the newest pc-i440fx type). */
  machine?: string;
  /** `-accel` values in order of preference (default ["kvm", "tcg"], as upstream). */
  accel?: string[];
  /** `-L` folders (default: qemuDataDirs(binary)). */
  dataDirs?: string[];
  /** Appended last. */
  extraArgs?: string[];
  /** Boot the suspending a-b sector (SUSPEND_BOOTSECT_IMAGE). */
  suspendMe?: boolean;
  /**
   * Boot this image instead of an a-b sector: a guest program with its parameters filled in
   * (harness/world/guest_program.ts), whole sectors.
   */
  program?: Uint8Array;
  /** Negotiate QMP's `oob` capability (COLO's yank is exec-oob, as upstream's colo-tests.c). */
  oob?: boolean;
  /**
   * The disk as a private temporary overlay (`snapshot=on`), as upstream's COLO test runs both sides
   * from one image at once: writes go to the overlay, never to the image.
   */
  snapshot?: boolean;
}

export class QemuProcess extends SpawnedProcess {
  readonly qmpPath: string;
  readonly qtestPath: string;
  readonly serialPath: string;
  readonly logPath: string;
  /** A second monitor for descriptors passed with commands (getfd, add-fd), as a management layer has. */
  readonly fdMonitorPath: string;
  readonly imagePath: string;
  readonly binary: string;
  /** The full command line (binary excluded). */
  readonly args: readonly string[];
  protected readonly child: Child;
  qmp!: QmpClient;
  qtest!: QtestClient;

  private constructor(readonly opts: QemuSpawnOptions) {
    super();
    const { dir, name } = opts;
    this.qmpPath = `${dir}/${name}.qmp`;
    this.qtestPath = `${dir}/${name}.qtest`;
    this.serialPath = `${dir}/${name}_serial`;
    this.logPath = `${dir}/${name}.log`;
    this.fdMonitorPath = `${dir}/${name}.fdqmp`;
    this.imagePath = `${dir}/${name}-bootsect.img`;
    const binary = opts.binary ?? qemuBinary(name === "target" ? "dst" : "src");
    if (!binary) {
      throw new Error(
        `${name}: no QEMU binary: set QTEST_QEMU_BINARY (or _SRC/_DST) or put qemu-system-x86_64 on PATH`,
      );
    }
    this.binary = binary;
    const memory = `${opts.memoryKiB ?? 150 * 1024}K`;
    const sectors = opts.program ? opts.program.length / 512 : 1;
    const args = [
      ...(opts.dataDirs ?? qemuDataDirs(binary)).flatMap((d) => ["-L", d]),
      "-machine",
      opts.machine ?? "pc",
      ...(opts.accel ?? ["kvm", "tcg"]).flatMap((a) => ["-accel", a]),
      "-name",
      `${name},debug-threads=on`,
      "-m",
      memory,
      "-serial",
      `file:${this.serialPath}`,
      // A disk of the image's sectors (one for a-b) on one track: the BIOS boots its first sector. Each
      // side gets its own copy so the two QEMUs never contend for the image lock.
      "-drive",
      `if=none,id=d0,file=${this.imagePath},format=raw${opts.snapshot ? ",snapshot=on" : ""}`,
      "-device",
      `ide-hd,drive=d0,secs=${sectors},cyls=1,heads=1`,
      "-chardev",
      `socket,path=${this.qmpPath},server=on,wait=off,id=qmp`,
      "-mon",
      "chardev=qmp,mode=control",
      "-chardev",
      `socket,path=${this.fdMonitorPath},server=on,wait=off,id=fdmon`,
      "-mon",
      "chardev=fdmon,mode=control",
      "-qtest",
      `unix:${this.qtestPath}`,
      "-qtest-log",
      "/dev/null",
      "-display",
      "none",
      "-nodefaults",
    ];
    if (opts.memoryBackend) {
      const b = opts.memoryBackend;
      const size = memory;
      args.push(
        "-object",
        b.type === "memfd"
          ? `memory-backend-memfd,id=${b.id},size=${size}`
          : `memory-backend-file,id=${b.id},size=${size},mem-path=${b.memPath},share=${
            b.share ? "on" : "off"
          }`,
        "-machine",
        `memory-backend=${b.id}`,
      );
    }
    if (opts.auxRamShare) args.push("-machine", "aux-ram-share=on");
    // A guest program reports a panic through the pvpanic port: QEMU emits GUEST_PANICKED and pauses.
    if (opts.program) args.push("-device", "pvpanic", "-action", "panic=pause");
    if (opts.cprChannel) {
      args.push("-incoming", `cpr,addr.transport=socket,addr.type=unix,addr.path=${opts.cprChannel}`);
    }
    if (opts.incoming) args.push("-incoming", opts.incoming);
    if (opts.startPaused) args.push("-S");
    if (opts.uuid) args.push("-uuid", opts.uuid);
    args.push(...(opts.extraArgs ?? []));
    this.args = args;
    this.child = new Child(name, binary, args, qemuEnv(binary));
  }

  static async spawn(opts: QemuSpawnOptions): Promise<QemuProcess> {
    // QEMU connects to the qtest socket while starting up, so it must be listening before the spawn.
    const listener = QtestClient.listen(`${opts.dir}/${opts.name}.qtest`, {
      name: opts.name,
      timeoutMs: opts.timeoutMs,
    });
    let p: QemuProcess;
    try {
      const copy = `${opts.dir}/${opts.name}-bootsect.img`;
      if (opts.program) await Deno.writeFile(copy, opts.program);
      else await Deno.copyFile(opts.suspendMe ? SUSPEND_BOOTSECT_IMAGE : BOOTSECT_IMAGE, copy);
      p = new QemuProcess(opts);
    } catch (e) {
      await listener.close();
      throw e;
    }
    const exited = p.child.status.then((s): never => {
      throw new Error(
        `${opts.name}: ${p.binary} exited with status ${s.code} during startup:\n${p.stderr}`,
      );
    });
    const qtest = listener.accept(opts.timeoutMs, exited);
    const qmp = Promise.race([
      QmpClient.connect(p.qmpPath, {
        name: opts.name,
        timeoutMs: opts.timeoutMs,
        transcript: opts.transcript,
        oob: opts.oob,
      }),
      exited,
    ]);
    const [qt, qm] = await Promise.allSettled([qtest, qmp]);
    if (qt.status === "fulfilled") p.qtest = qt.value;
    if (qm.status === "fulfilled") p.qmp = qm.value;
    if (qt.status === "rejected" || qm.status === "rejected") {
      await p.kill();
      throw qt.status === "rejected" ? qt.reason : (qm as PromiseRejectedResult).reason;
    }
    return p;
  }

  get name(): string {
    return this.opts.name;
  }

  /**
   * Ends the process: SIGTERM (QEMU exits 0 after "terminating on signal 15"), SIGKILL if it lingers.
   * Returns the exit status. Always closes the QMP and qtest clients, drains stderr and writes the log
   * (command line, then stderr), so nothing is left open.
   */
  async kill(graceMs = 3000): Promise<Deno.CommandStatus> {
    const status = await this.child.terminate(graceMs);
    await this.qtest?.close();
    await this.qmp?.close();
    const cmdline = [this.binary, ...this.args].map((a) => /[^\w@%+=:,./-]/.test(a) ? `'${a}'` : a);
    await Deno.writeTextFile(this.logPath, `# ${cmdline.join(" ")}\n${this.stderr}`).catch(() => {});
    return status;
  }
}
