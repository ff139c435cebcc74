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
import { parseArgs } from "node:util";
import { Engine } from "./engine.ts";
import type { WorkloadSpec } from "./guest/workload.ts";
import { engineCommands } from "./qmp/commands.ts";
import { QmpServer } from "./qmp/server.ts";
import { testCommands } from "./testing/commands.ts";
import { QtestServer } from "./testing/qtest.ts";
import { parseMigrationUri } from "./transport/uri.ts";

function fail(msg: string): never {
  console.error(`migtest-engine: ${msg}`);
  Deno.exit(2);
}

function unixPath(opt: string | undefined, what: string): string | undefined {
  if (opt === undefined) return undefined;
  if (!opt.startsWith("unix:")) fail(`--${what} must be unix:PATH, got '${opt}'`);
  return opt.slice(5);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string", default: "engine" },
    qmp: { type: "string" },
    qtest: { type: "string" },
    incoming: { type: "string" },
    machine: { type: "string", default: "pc" },
    workload: { type: "string", default: '{"kind":"a-b"}' },
    serial: { type: "string" },
    uuid: { type: "string" },
    "run-ms": { type: "string" },
    "sleep-ms": { type: "string" },
    S: { type: "boolean", short: "S", default: false },
    "mem-prealloc": { type: "boolean", default: false },
    defect: { type: "string", multiple: true },
  },
  strict: true,
});

const qmpPath = unixPath(values.qmp, "qmp") ?? fail("--qmp unix:PATH is required");
let workload: WorkloadSpec;
try {
  workload = JSON.parse(values.workload!);
} catch (e) {
  fail(`--workload is not JSON: ${(e as Error).message}`);
}
if (values.serial && !values.serial.startsWith("file:")) fail("--serial must be file:PATH");

const name = values.name!;
const log = (msg: string) => console.error(`${new Date().toISOString()} ${name}: ${msg}`);
let server: QmpServer | null = null;
let qtest: QtestServer | null = null;
let engine: Engine;
let exiting = false;

async function shutdown(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    log(`exiting with status ${code}`);
    // Close QMP last so a client sees the final events before the socket goes away.
    await Promise.race([engine?.close(), new Promise((r) => setTimeout(r, 2000))]);
    await qtest?.close();
    await server?.close();
  }
  Deno.exit(code);
}

try {
  engine = new Engine({
    name,
    machine: values.machine!,
    workload,
    incoming: values.incoming,
    startPaused: values.S!,
    serialPath: values.serial?.slice(5),
    uuid: values.uuid,
    runMs: values["run-ms"] ? Number(values["run-ms"]) : undefined,
    sleepMs: values["sleep-ms"] ? Number(values["sleep-ms"]) : undefined,
    memPrealloc: values["mem-prealloc"],
    defects: values.defect,
  }, {
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
  fail((e as Error).message);
}

// The model's commands, then the x-test- ones (disjoint names).
server = QmpServer.listen({ path: qmpPath, commands: [...engineCommands(engine), ...testCommands(engine)] });
const qtestPath = unixPath(values.qtest, "qtest");
if (qtestPath) qtest = new QtestServer(qtestPath, engine.machine);

if (values.incoming && values.incoming !== "defer") {
  try {
    engine.incoming.start(parseMigrationUri(values.incoming));
  } catch (e) {
    fail(`-incoming ${values.incoming}: ${(e as Error).message}`);
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
  `ready (machine ${values.machine}, workload ${values.workload}${
    values.incoming ? `, incoming ${values.incoming}` : ""
  })`,
);
