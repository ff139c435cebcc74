/**
 * Real QEMU under the harness: the a-b boot sector under TCG, guest memory through the qtest socket, a
 * stop that really stops, and a tcp migration between two qemu-system-x86_64 processes, as upstream's
 * non-live precopy flow does it. Plus the qtest client against our engine's qtest server.
 *
 * The QEMU tests are ignored when no binary is found (QTEST_QEMU_BINARY[_SRC|_DST], or
 * qemu-system-x86_64 on PATH). They force `-accel tcg`: KVM may be present but, nested, far slower.
 */
import assert from "node:assert/strict";
import { checkGuestsRam } from "../../engine/guest/guests_ram.ts";
import { AB_END, AB_START } from "../../engine/guest/workload.ts";
import { BOOTSECT_IMAGE, qemuBinary, QemuProcess, type QemuSpawnOptions } from "./qemu_process.ts";
import type { QmpTranscriptEntry } from "../../engine/qmp/client.ts";
import { QtestClient, QtestCommandError } from "../qtest_client.ts";
import { setTimeout as sleep } from "node:timers/promises";
import { waitFor } from "../../engine/wait.ts";
import { createObject } from "../../engine/crypto/tls_creds.ts";
import { makePskCredentials, makeX509Credentials, PSK_KEYS } from "../../engine/testing/tls_certs.ts";
import { ConnLink, type Link } from "../../engine/transport/link.ts";
import { nodeTls } from "../../engine/transport/tls.ts";
import { pskClient, pskServer } from "../../engine/transport/tls_psk.ts";

const PAGE = 4096;
const WAIT_MS = 20_000;
const MAGIC = 0xFEED12345678CAFEn;
/** Upstream's dirty marker: 3 MiB + 1 KiB into the range, not a page start, so the guest never touches it. */
const MARKER_ADDRESS = AB_START + (3 << 20) + 1024;

const SRC_BINARY = qemuBinary("src");
const DST_BINARY = qemuBinary("dst");
const NO_QEMU = SRC_BINARY === undefined || DST_BINARY === undefined;
const SKIP_NOTE = NO_QEMU
  ? " (ignored: no QEMU binary; set QTEST_QEMU_BINARY or put qemu-system-x86_64 on PATH)"
  : "";

function pageAddresses(): number[] {
  const addrs: number[] = [];
  for (let a = AB_START; a < AB_END; a += PAGE) addrs.push(a);
  return addrs;
}

/**
 * Upstream's wait_for_serial with a deadline: 'A' is skipped, the first 'B' succeeds, any other byte
 * fails. A process that dies meanwhile fails the wait at once, with its stderr.
 */
async function waitForSerialB(p: QemuProcess, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let seen = new Uint8Array();
  while (true) {
    if (p.exitStatus) throw new Error(`${p.name} exited (${p.exitStatus.code}) before 'B':\n${p.stderr}`);
    seen = await Deno.readFile(p.serialPath).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return new Uint8Array();
      throw e;
    });
    for (const b of seen) {
      if (b === 0x42) return;
      if (b !== 0x41) throw new Error(`${p.name}: unexpected byte 0x${b.toString(16)} on the serial port`);
    }
    if (performance.now() >= deadline) {
      const text = new TextDecoder().decode(seen);
      throw new Error(
        `${p.name}: no 'B' on ${p.serialPath} within ${timeoutMs} ms (got ${JSON.stringify(text)})`,
      );
    }
    await sleep(10);
  }
}

/** Polls the first byte of the range until it differs from its first reading: the guest runs. */
async function waitForByteChange(p: QemuProcess): Promise<void> {
  const first = await p.qtest.readb(AB_START);
  await waitFor(
    `${p.name}: byte at 0x${AB_START.toString(16)} to change from ${first}`,
    async () => (await p.qtest.readb(AB_START)) !== first,
    { timeoutMs: WAIT_MS, intervalMs: 10 },
  );
}

/** `stop`, then upstream's check that the guest really stopped: the byte is equal across 200 ms. */
async function stopAndAssertStopped(p: QemuProcess): Promise<void> {
  const since = p.qmp.events.length;
  await p.qmp.execute("stop");
  await p.qmp.waitEvent("STOP", undefined, { since });
  const before = await p.qtest.readb(AB_START);
  await sleep(200);
  const after = await p.qtest.readb(AB_START);
  assert.equal(after, before, `${p.name}: the guest still writes after stop`);
}

/** check_guests_ram on the first byte of every page, read in one pipelined batch. */
async function assertGuestsRam(p: QemuProcess): Promise<void> {
  const firstBytes = await p.qtest.readbMany(pageAddresses());
  assert.equal(firstBytes.length, (AB_END - AB_START) / PAGE);
  const report = checkGuestsRam(firstBytes, AB_START, PAGE);
  assert.equal(report.bad, 0, `${p.name}: a-b invariant broken:\n${report.lines.join("\n")}`);
}

interface MigrationInfo {
  status?: string;
  "error-desc"?: string;
  "socket-address"?: { type: string; host?: string; port?: string }[];
}

/** Polls query-migrate until `goal`; `failed` (or completed when not the goal) is an error. */
async function waitForMigrationStatus(p: QemuProcess, goal: string): Promise<void> {
  let last = "";
  await waitFor(`${p.name}: migration status ${goal}`, async () => {
    const info = await p.qmp.execute<MigrationInfo>("query-migrate");
    last = info.status ?? "(none)";
    if (last === goal) return true;
    if (last === "failed") {
      throw new Error(`${p.name}: migration failed: ${info["error-desc"] ?? "(no error-desc)"}`);
    }
    return false;
  }, { timeoutMs: WAIT_MS, intervalMs: 10, diagnose: () => `last status: ${last}` });
}

/** A private run directory and everything that must be torn down with it. */
class Run {
  readonly transcript: QmpTranscriptEntry[] = [];
  readonly procs: QemuProcess[] = [];
  readonly spawning: Promise<QemuProcess>[] = [];
  readonly exits = new Map<QemuProcess, Deno.CommandStatus>();
  private constructor(readonly dir: string) {}

  static async create(): Promise<Run> {
    const dir = await Deno.makeTempDir({ prefix: "migtest-qemu-" });
    await Deno.chmod(dir, 0o700);
    return new Run(dir);
  }

  async spawn(name: string, extra?: Partial<QemuSpawnOptions>): Promise<QemuProcess> {
    const spawning = QemuProcess.spawn({
      name,
      dir: this.dir,
      binary: name === "target" ? DST_BINARY : SRC_BINARY,
      accel: ["tcg"],
      transcript: this.transcript,
      timeoutMs: 10_000,
      ...extra,
    }).then((p) => {
      this.procs.push(p);
      return p;
    });
    // close() waits for spawns still in flight (e.g. the other half of a failed Promise.all).
    this.spawning.push(spawning);
    return await spawning;
  }

  /** Kills every process (closing its clients) and removes the directory, on every path. */
  async close(): Promise<void> {
    await Promise.allSettled(this.spawning);
    const statuses = await Promise.all(this.procs.map((p) => p.kill()));
    statuses.forEach((s, i) => this.exits.set(this.procs[i], s));
    await Deno.remove(this.dir, { recursive: true });
  }

  /** QEMU exits 0 on SIGTERM; anything else (a signal death) is a failure, as in upstream's qtest_quit. */
  assertCleanExits(): void {
    for (const [p, s] of this.exits) assert.equal(s.code, 0, `${p.name} exited with ${s.code}:\n${p.stderr}`);
  }
}

Deno.test({
  name: `qemu: a-b boot sector under TCG prints A then B, stops, and keeps the a-b invariant${SKIP_NOTE}`,
  ignore: NO_QEMU,
  async fn() {
    assert.equal((await Deno.stat(BOOTSECT_IMAGE)).size, 512, "build it with: deno task bootsect");
    const run = await Run.create();
    try {
      const src = await run.spawn("source");
      await waitForSerialB(src);
      await waitForByteChange(src);
      // Reading 25,344 pages takes longer than a guest pass, so the invariant only holds once stopped
      // (upstream checks it after `stop` too).
      await stopAndAssertStopped(src);
      await assertGuestsRam(src);
      // A `read` over a page boundary agrees with `readb`, and `writeq` lands where `readq` finds it.
      assert.deepEqual(
        await src.qtest.read(AB_START + PAGE - 1, 2),
        await src.qtest.readbMany([AB_START + PAGE - 1, AB_START + PAGE]),
      );
      await src.qtest.writeq(MARKER_ADDRESS, MAGIC);
      assert.equal(await src.qtest.readq(MARKER_ADDRESS), MAGIC);
      await src.qtest.write(MARKER_ADDRESS + 8, new Uint8Array([1, 2, 3]));
      assert.deepEqual(await src.qtest.read(MARKER_ADDRESS + 7, 5), new Uint8Array([0xfe, 1, 2, 3, 0]));
    } finally {
      await run.close();
    }
    run.assertCleanExits();
  },
});

Deno.test({
  name: `qemu: tcp migration between two QEMUs (defer, port from query-migrate) keeps the guest${SKIP_NOTE}`,
  ignore: NO_QEMU,
  async fn() {
    const run = await Run.create();
    try {
      const [src, dst] = await Promise.all([
        run.spawn("source"),
        run.spawn("target", { incoming: "defer" }),
      ]);
      for (const p of [src, dst]) {
        await p.qmp.execute("migrate-set-capabilities", {
          capabilities: [{ capability: "events", state: true }],
        });
      }
      await dst.qmp.execute("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
      const listening = await dst.qmp.execute<MigrationInfo>("query-migrate");
      const addr = listening["socket-address"]?.find((a) => a.type === "inet");
      assert.ok(addr?.port, `target: no inet socket-address in query-migrate: ${JSON.stringify(listening)}`);

      await waitForSerialB(src);
      await src.qtest.writeq(MARKER_ADDRESS, MAGIC);
      // Non-live flow: stop the source, converge settings, migrate, both sides complete, then cont.
      await stopAndAssertStopped(src);
      await src.qmp.execute("migrate-set-parameters", {
        "max-bandwidth": 1_000_000_000,
        "downtime-limit": 30_000,
      });
      await src.qmp.execute("migrate", { uri: `tcp:127.0.0.1:${addr.port}` });
      await Promise.all([waitForMigrationStatus(src, "completed"), waitForMigrationStatus(dst, "completed")]);
      assert.equal(await dst.qtest.readq(MARKER_ADDRESS), MAGIC, "target: the marker did not arrive");

      const since = dst.qmp.events.length;
      await dst.qmp.execute("cont");
      await dst.qmp.waitEvent("RESUME", undefined, { since });
      await waitForSerialB(dst);
      // migrate_end with test_dest: the target runs, stops for real, and its RAM keeps the invariant.
      await waitForByteChange(dst);
      await stopAndAssertStopped(dst);
      await assertGuestsRam(dst);
    } finally {
      await run.close();
    }
    run.assertCleanExits();
  },
});

Deno.test("qtest client against the engine: writeq/readq round trip, read, readbMany, FAIL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest-qtest-" });
  const qmpPath = `${dir}/engine.qmp`;
  const qtestPath = `${dir}/engine.qtest`;
  const engineMain = new URL("../../engine/main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      `--allow-net=unix:${qmpPath},unix:${qtestPath}`,
      `--allow-read=${dir},${new URL("../../engine/", import.meta.url).pathname},${
        new URL("../../fixtures/", import.meta.url).pathname
      }`,
      `--allow-write=${dir}`,
      engineMain,
      "--name",
      "engine",
      "--qmp",
      `unix:${qmpPath}`,
      "--qtest",
      `unix:${qtestPath}`,
      "-S",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let client: QtestClient | undefined;
  try {
    client = await QtestClient.connect(qtestPath, { name: "engine", timeoutMs: 10_000 });
    await client.writeq(MARKER_ADDRESS, MAGIC);
    assert.equal(await client.readq(MARKER_ADDRESS), MAGIC);
    assert.equal(await client.readb(MARKER_ADDRESS), 0xfe);
    assert.deepEqual(
      await client.read(MARKER_ADDRESS, 8),
      new Uint8Array([0xfe, 0xca, 0x78, 0x56, 0x34, 0x12, 0xed, 0xfe]),
    );
    // Concurrent requests are pipelined and answered in order.
    const [q, b, many] = await Promise.all([
      client.readq(MARKER_ADDRESS),
      client.readb(MARKER_ADDRESS + 7),
      client.readbMany([MARKER_ADDRESS, MARKER_ADDRESS + 1, MARKER_ADDRESS + 7]),
    ]);
    assert.equal(q, MAGIC);
    assert.equal(b, 0xfe);
    assert.deepEqual(many, new Uint8Array([0xfe, 0xca, 0xfe]));
    await client.write(MARKER_ADDRESS + 8, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await client.read(MARKER_ADDRESS + 7, 5), new Uint8Array([0xfe, 1, 2, 3, 0]));
    // Outside pc.ram: FAIL, named after the command; the connection stays usable.
    await assert.rejects(client.readq(1n << 40n), (e: unknown) => {
      assert.ok(e instanceof QtestCommandError);
      assert.match(e.message, /engine: qtest 'readq 0x10000000000' failed: FAIL /);
      return true;
    });
    assert.equal(await client.readq(MARKER_ADDRESS), MAGIC);
  } finally {
    await client?.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const status = await child.status;
    const log = await stderr;
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0, `engine exited with ${status.code}:\n${log}`);
  }
});

/** The engine's TLS ends under test against QEMU's: x509 through node:tls, PSK through openssl. */
const TLS_KINDS = ["x509", "psk"] as const;

async function tlsObjects(dir: string, kind: typeof TLS_KINDS[number], endpoint: "client" | "server") {
  const id = `tls-${kind}-${endpoint}`;
  const qom = kind === "x509"
    ? { "qom-type": "tls-creds-x509", id, endpoint, dir: `${dir}/x509`, "verify-peer": true }
    : {
      "qom-type": "tls-creds-psk",
      id,
      endpoint,
      dir: `${dir}/psk`,
      ...(endpoint === "client" ? { username: "qemu" } : {}),
    };
  if (kind === "x509") {
    await makeX509Credentials(`${dir}/x509`, { serverName: "127.0.0.1", clientName: "ACME QEMU Client" });
  } else await makePskCredentials(`${dir}/psk`, PSK_KEYS.match);
  return { id, qom };
}

/** Opens the engine's end of a TLS session; a PSK session's child is waited for by `finished`. */
async function engineTls(
  link: ConnLink,
  qom: Record<string, unknown>,
): Promise<{ tls: Link; finished: Promise<void> }> {
  const creds = createObject({
    ...qom,
    id: "engine",
    endpoint: qom.endpoint === "client" ? "server" : "client",
  });
  if (creds.type === "authz-simple") throw new Error("not credentials");
  if (creds.type === "tls-creds-psk") {
    const s = creds.endpoint === "server" ? await pskServer(link, creds) : await pskClient(link, creds);
    return { tls: s, finished: s.finished };
  }
  const tls = creds.endpoint === "server"
    ? await nodeTls.server(link, { creds })
    : await nodeTls.client(link, { creds, hostname: "127.0.0.1" });
  return { tls, finished: Promise.resolve() };
}

for (const kind of TLS_KINDS) {
  Deno.test({
    name:
      `qemu ↔ engine TLS (${kind}): a QEMU source's stream decrypted by the engine's TLS server${SKIP_NOTE}`,
    ignore: NO_QEMU,
    async fn() {
      const run = await Run.create();
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      try {
        const src = await run.spawn("source", { startPaused: true });
        const { id, qom } = await tlsObjects(run.dir, kind, "client");
        await src.qmp.execute("object-add", qom);
        await src.qmp.execute("migrate-set-parameters", { "tls-creds": id });
        // The engine's server reads the same credential files QEMU's client was given.
        const serverQom = kind === "x509" ? { ...qom, dir: `${run.dir}/x509` } : qom;
        await src.qmp.execute("migrate", { uri: `tcp:127.0.0.1:${listener.addr.port}` });
        const conn = await listener.accept();
        const { tls, finished } = await engineTls(new ConnLink(conn, "qemu-source"), {
          ...serverQom,
          endpoint: "client",
        });
        const head = new Uint8Array(8);
        for (let n = 0; n < 8;) {
          n += (await tls.read(head.subarray(n))) ?? assert.fail("stream ended in its header");
        }
        const v = new DataView(head.buffer);
        assert.equal(v.getUint32(0), 0x5145564d, "QEMU_VM_FILE_MAGIC, decrypted");
        assert.equal(v.getUint32(4), 3, "QEMU_VM_FILE_VERSION");
        tls.close();
        await finished;
        // A paused guest's stream is small: it may all have been taken into the session's buffers
        // before the hang-up, and the source then completes rather than fails. Either way it ends.
        await waitFor("source: the migration to end after the engine hung up", async () => {
          const info = await src.qmp.execute<MigrationInfo>("query-migrate");
          return info.status === "failed" || info.status === "completed";
        }, { timeoutMs: WAIT_MS, intervalMs: 10 });
      } finally {
        listener.close();
        await run.close();
      }
    },
  });

  Deno.test({
    name:
      `qemu ↔ engine TLS (${kind}): the engine's TLS client reaches a QEMU destination's loader${SKIP_NOTE}`,
    ignore: NO_QEMU,
    async fn() {
      const run = await Run.create();
      try {
        const dst = await run.spawn("target", { incoming: "defer" });
        const { id, qom } = await tlsObjects(run.dir, kind, "server");
        await dst.qmp.execute("object-add", qom);
        await dst.qmp.execute("migrate-set-parameters", { "tls-creds": id });
        await dst.qmp.execute("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
        const listening = await dst.qmp.execute<MigrationInfo>("query-migrate");
        const port = Number(listening["socket-address"]?.find((a) => a.type === "inet")?.port);
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const { tls, finished } = await engineTls(new ConnLink(conn, "qemu-target"), qom);
        // A valid header, then a byte that is not the configuration section QEMU requires first: its
        // loader must say so, which it can only do having read the header through the session.
        await tls.write(new Uint8Array([0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3, 0xee]));
        await waitFor(
          "target: its loader to miss the configuration section",
          () => /Configuration section missing/.test(dst.stderr),
          {
            timeoutMs: WAIT_MS,
            intervalMs: 10,
            diagnose: () => dst.stderr,
          },
        );
        assert.doesNotMatch(dst.stderr, /TLS/);
        tls.close();
        await finished;
      } finally {
        await run.close();
      }
    },
  });
}
