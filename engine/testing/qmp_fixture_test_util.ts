/**
 * Test helpers for the engine's QMP command tables: an engine behind a real QMP server and client, and
 * the error a command must answer with.
 */
import assert from "node:assert/strict";
import { QmpClient, QmpCommandError } from "../qmp/client.ts";
import { Engine } from "../engine.ts";
import { type QmpCommand, QmpServer } from "../qmp/server.ts";

/** Runs `fn` against a paused "tiny" engine serving the commands `table` builds for it. */
export async function withQmpEngine(
  incoming: string | undefined,
  table: (e: Engine) => QmpCommand[],
  fn: (qmp: QmpClient, engine: Engine) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migtest-qmp-" });
  let server: QmpServer | null = null;
  const engine = new Engine({
    name: "t",
    machine: "tiny",
    workload: { kind: "idle" },
    incoming,
    startPaused: true,
  }, { emit: (e, d) => server?.emit(e, d), log: () => {}, exit: () => {} });
  server = QmpServer.listen({ path: `${dir}/qmp.sock`, commands: table(engine) });
  const qmp = await QmpClient.connect(`${dir}/qmp.sock`, { name: "t", timeoutMs: 5000 });
  try {
    await fn(qmp, engine);
  } finally {
    await qmp.close();
    await server.close();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The error `cmd` answers with, as "Class: desc"; fails when it succeeds. */
export async function qmpError(qmp: QmpClient, cmd: string, args?: Record<string, unknown>): Promise<string> {
  try {
    await qmp.execute(cmd, args);
  } catch (e) {
    assert.ok(e instanceof QmpCommandError, String(e));
    return `${e.klass}: ${e.desc}`;
  }
  assert.fail(`${cmd} succeeded`);
}
