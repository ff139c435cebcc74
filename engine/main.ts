/**
 * The engine process, started like a QEMU binary:
 *
 *   deno run --allow-net=127.0.0.1 --allow-read=DIR --allow-write=DIR engine/main.ts \
 *     --name source|target --qmp unix:DIR/qmp.sock [--qtest unix:DIR/qtest.sock] \
 *     [--incoming URI|defer] [-S] [--machine pc] [--workload '{"kind":"a-b"}'] \
 *     [--serial file:DIR/serial] [--uuid UUID]
 *
 * It exits 0 on `quit` or SIGTERM, and 1 after a failed incoming migration with exit-on-error.
 */
import { type MachineFixture, qemuSourceFixture } from "../fixtures/machines.ts";
import { dirtyRingSizeProblem } from "./guest/dirty_ring.ts";
import { cliOrExit, parseNonNegative, UsageError } from "./cli.ts";
import { Engine } from "./engine.ts";
import { errorMessage } from "./error.ts";
import { type MemoryBackend, parseMemoryBackend } from "./hostmem.ts";
import type { CprFd } from "./cpr.ts";
import { receiveCprState } from "./os/cpr_channel.ts";
import type { WorkloadSpec } from "./guest/workload.ts";
import { engineCommands } from "./qmp/commands.ts";
import { QmpServer } from "./qmp/server.ts";
import { FdMonitorListener } from "./os/fd_monitor.ts";
import { testCommands } from "./testing/commands.ts";
import { QtestServer } from "./testing/qtest.ts";
import { parseMigrationUri } from "./transport/uri.ts";

const USAGE = `usage: deno task engine --qmp unix:PATH [options]

The engine process, started like a QEMU binary (the harness starts two of them as a pair).

  --qmp unix:PATH       the QMP socket to listen on (required)
  --qtest unix:PATH     a qtest socket too (guest memory reads and writes)
  --qmp-fd unix:PATH    a second QMP monitor that takes file descriptors (SCM_RIGHTS) for getfd and
                        add-fd, as QEMU's monitors do (needs --allow-ffi)
  --name NAME           the name in its log lines (default engine; the harness says source or target)
  --incoming URI|defer  be a destination: listen on URI, or wait for migrate-incoming
  -S                    do not run the guest until 'cont'
  --machine TYPE        the machine type (default pc)
  --qemu-machine FILE   the machine a QEMU source runs, as read from it (JSON: type, blocks, devices as
                        its vmdesc describes them): QEMU's stream loads as that machine
  --workload JSON       what the guest runs (default {"kind":"a-b"})
  --serial file:PATH    where the guest's serial output goes
  --uuid UUID           the VM's UUID
  --run-ms MS           the vCPU's duty cycle: runs MS milliseconds,
  --sleep-ms MS         then sleeps MS milliseconds
  --mem-prealloc        allocate guest RAM up front
  --dirty-ring-size N   log written pages on a per-vCPU dirty ring of N entries (KVM's dirty-ring-size)
  --incoming cpr,addr.transport=socket,addr.type=unix,addr.path=PATH
                        cpr-transfer's target: load the CPR state there first (the source's RAM
                        descriptors), then start (a second --incoming gives the main channel)
  --aux-ram-share       every RAM block a shared memfd (QEMU's -machine aux-ram-share=on)
  --memory-backend id=ID,mem-path=PATH[,share=on|off] | type=memfd,id=ID
                        the main RAM in a file (QEMU's memory-backend-file as -machine memory-backend);
                        share=on maps it shared, so another process mapping PATH sees the same memory
  --defect NAME         switch a known defect on (repeatable; engine/testing/defects.ts)
  --help                this text

It exits 0 on 'quit' or SIGTERM, and 1 after a failed incoming migration with exit-on-error.
`;

function fail(msg: string): never {
  console.error(`migtest-engine: ${msg}`);
  Deno.exit(2);
}

function unixPath(opt: string, what: string): string {
  if (!opt.startsWith("unix:")) throw new UsageError(`--${what} must be unix:PATH, got '${opt}'`);
  return opt.slice(5);
}

const values = cliOrExit(
  {
    tool: "migtest-engine",
    usage: USAGE,
    options: {
      name: { type: "string", default: "engine" },
      qmp: { type: "string" },
      qtest: { type: "string" },
      "qmp-fd": { type: "string" },
      incoming: { type: "string", multiple: true },
      machine: { type: "string", default: "pc" },
      "qemu-machine": { type: "string" },
      workload: { type: "string", default: '{"kind":"a-b"}' },
      serial: { type: "string" },
      uuid: { type: "string" },
      "run-ms": { type: "string" },
      "sleep-ms": { type: "string" },
      S: { type: "boolean", short: "S", default: false },
      "mem-prealloc": { type: "boolean", default: false },
      "dirty-ring-size": { type: "string" },
      "memory-backend": { type: "string" },
      "aux-ram-share": { type: "boolean", default: false },
      defect: { type: "string", multiple: true },
    },
  },
  Deno.args,
  ({ values: v }) => {
    if (v.qmp === undefined) throw new UsageError("--qmp unix:PATH is required");
    if (v.serial !== undefined && !v.serial.startsWith("file:")) {
      throw new UsageError(
        "--serial must be file:PATH",
      );
    }
    let workload: WorkloadSpec;
    try {
      workload = JSON.parse(v.workload);
    } catch (e) {
      throw new UsageError(`--workload is not JSON: ${errorMessage(e)}`);
    }
    // -incoming may come twice: the main channel (a URI or defer) and cpr-transfer's cpr channel.
    const cprs = (v.incoming ?? []).filter((i) => i.startsWith("cpr,"));
    const mains = (v.incoming ?? []).filter((i) => !i.startsWith("cpr,"));
    if (cprs.length > 1 || mains.length > 1) {
      throw new UsageError("--incoming: one main channel and one cpr channel at most");
    }
    return {
      ...v,
      incoming: mains[0],
      cprPath: cprs.length ? cprChannelPath(cprs[0]) : undefined,
      qmpPath: unixPath(v.qmp, "qmp"),
      qtestPath: v.qtest === undefined ? undefined : unixPath(v.qtest, "qtest"),
      qmpFdPath: v["qmp-fd"] === undefined ? undefined : unixPath(v["qmp-fd"], "qmp-fd"),
      workloadSpec: workload,
      runMs: v["run-ms"] === undefined ? undefined : parseNonNegative(v["run-ms"], "--run-ms"),
      sleepMs: v["sleep-ms"] === undefined ? undefined : parseNonNegative(v["sleep-ms"], "--sleep-ms"),
      dirtyRingSize: v["dirty-ring-size"] === undefined ? undefined : dirtyRingSize(v["dirty-ring-size"]),
      memoryBackend: v["memory-backend"] === undefined ? undefined : memoryBackend(v["memory-backend"]),
      fixture: v["qemu-machine"] === undefined ? undefined : qemuMachine(v["qemu-machine"]),
    };
  },
);

/** `cpr,addr.transport=socket,addr.type=unix,addr.path=PATH` (QEMU's keyval form of the cpr channel). */
function cprChannelPath(text: string): string {
  const props = new Map(
    text.split(",").slice(1).map((kv) => {
      const eq = kv.indexOf("=");
      return [kv.slice(0, eq), kv.slice(eq + 1)] as const;
    }),
  );
  const path = props.get("addr.path");
  if (props.get("addr.transport") !== "socket" || props.get("addr.type") !== "unix" || !path) {
    throw new UsageError(
      `--incoming ${text}: the cpr channel must be addr.transport=socket,addr.type=unix,addr.path=PATH`,
    );
  }
  return path;
}

/** --dirty-ring-size: KVM's bounds, said as QEMU's accelerator property would be refused. */
function dirtyRingSize(text: string): number {
  const n = Number(text);
  const bad = dirtyRingSizeProblem(n);
  if (bad) throw new UsageError(`--${bad}`);
  return n;
}

/** --qemu-machine: the file read and checked now, so a bad one is a usage error. */
function qemuMachine(path: string): MachineFixture {
  try {
    return qemuSourceFixture(JSON.parse(Deno.readTextFileSync(path)));
  } catch (e) {
    throw new UsageError(`--qemu-machine ${path}: ${errorMessage(e)}`);
  }
}

/** --memory-backend: QEMU's words for a bad property. */
function memoryBackend(text: string): MemoryBackend {
  try {
    return parseMemoryBackend(text);
  } catch (e) {
    throw new UsageError(`--memory-backend: ${errorMessage(e)}`);
  }
}

const name = values.name;
const log = (msg: string) => console.error(`${new Date().toISOString()} ${name}: ${msg}`);
let server: QmpServer | null = null;
let qtest: QtestServer | null = null;
let fdMonitor: FdMonitorListener | null = null;
let engine: Engine;
let exiting = false;

async function shutdown(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    log(`exiting with status ${code}`);
    // Close QMP last so a client sees the final events before the socket goes away.
    await Promise.race([engine?.close(), new Promise((r) => setTimeout(r, 2000))]);
    await qtest?.close();
    await fdMonitor?.close();
    await server?.close();
  }
  Deno.exit(code);
}

// cpr-transfer's target loads the CPR state before anything else, as QEMU does before its monitors
// exist: the source's descriptors of guest RAM, mapped instead of fresh memory.
let cpr: { fds: CprFd[]; hangUp(): void } | null = null;
if (values.cprPath) {
  try {
    cpr = await receiveCprState(values.cprPath);
  } catch (e) {
    fail(`cpr channel ${values.cprPath}: ${errorMessage(e)}`);
  }
  log(`cpr state: ${cpr!.fds.map((f) => f.name).join(", ")}`);
}

try {
  engine = new Engine({
    name,
    machine: values.fixture ?? values.machine,
    workload: values.workloadSpec,
    incoming: values.incoming,
    startPaused: values.S,
    serialPath: values.serial?.slice(5),
    uuid: values.uuid,
    runMs: values.runMs,
    sleepMs: values.sleepMs,
    memPrealloc: values["mem-prealloc"],
    dirtyRingSize: values.dirtyRingSize,
    memoryBackend: values.memoryBackend,
    auxRamShare: values["aux-ram-share"],
    cprIncoming: cpr ? new Map(cpr.fds.map((f) => [f.name, f.fd])) : undefined,
    defects: values.defect,
  }, {
    cprHangUp: cpr ? () => cpr!.hangUp() : undefined,
    emit: (event, data) => server?.emit(event, data),
    log,
    exit: (code) => void shutdown(code),
    abort: (msg) => {
      // What QEMU does on a use-after-free at best: die, with a trace of why.
      console.error(`${new Date().toISOString()} ${name}: FATAL: ${msg}; aborting`);
      Deno.exit(134);
    },
  });
} catch (e) {
  fail(errorMessage(e));
}

// The model's commands, then the x-test- ones (disjoint names).
server = QmpServer.listen({
  path: values.qmpPath,
  commands: [...engineCommands(engine), ...testCommands(engine)],
  onClientGone: (id) => engine.fds.clientGone(id),
});
if (values.qmpFdPath) {
  try {
    fdMonitor = new FdMonitorListener(values.qmpFdPath, server);
  } catch (e) {
    fail(`--qmp-fd ${values.qmpFdPath}: ${errorMessage(e)}`);
  }
}
if (values.qtestPath) qtest = new QtestServer(values.qtestPath, engine.machine);

if (values.incoming && values.incoming !== "defer") {
  try {
    engine.incoming.start(parseMigrationUri(values.incoming));
  } catch (e) {
    fail(`-incoming ${values.incoming}: ${errorMessage(e)}`);
  }
}

// Like QEMU's -run-with exit-with-parent=on: a harness that dies (or a test that times out and is
// abandoned) must not leave engines behind.
const parent = Deno.ppid;
const parentWatch = setInterval(() => {
  if (Deno.ppid !== parent) void shutdown(0);
}, 500);
Deno.unrefTimer(parentWatch);

Deno.addSignalListener("SIGTERM", () => void shutdown(0));
Deno.addSignalListener("SIGINT", () => void shutdown(0));
log(
  `ready (machine ${values.fixture?.name ?? values.machine}, workload ${values.workload}${
    values.incoming ? `, incoming ${values.incoming}` : ""
  })`,
);
