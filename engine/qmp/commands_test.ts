/**
 * The engine's QMP commands answer bad input the way QEMU does: a precise error, nothing changed.
 */
import assert from "node:assert/strict";
import { qmpError as error, withQmpEngine } from "../testing/qmp_fixture_test_util.ts";
import { engineCommands } from "./commands.ts";

Deno.test("qmp commands: argument and state errors", async (t) => {
  await withQmpEngine(undefined, engineCommands, async (qmp) => {
    await t.step("unknown command", async () => {
      assert.equal(
        await error(qmp, "migrate-frobnicate"),
        "CommandNotFound: The command migrate-frobnicate has not been found",
      );
    });
    await t.step("wrong argument type", async () => {
      assert.match(
        await error(qmp, "migrate", { uri: 5 }),
        /GenericError: Invalid parameter type for 'uri', expected: string/,
      );
    });
    await t.step("uri and channels both or neither", async () => {
      assert.match(await error(qmp, "migrate", {}), /need either 'uri' or 'channels' argument/);
      assert.match(
        await error(qmp, "migrate", { uri: "unix:/x", channels: [] }),
        /'uri' and 'channels' arguments are mutually exclusive/,
      );
    });
    await t.step("bad URIs", async () => {
      assert.match(
        await error(qmp, "migrate", { uri: "rdma:1.2.3.4:5" }),
        /unknown migration protocol: rdma/,
      );
      assert.match(await error(qmp, "migrate", { uri: "tcp:10.0.0.1:4444" }), /only uses loopback/);
      assert.match(
        await error(qmp, "migrate", { uri: "file:/x,offset=0x20M" }),
        /file URI has bad offset 0x20M/,
      );
    });
    await t.step("parameters out of range are refused and change nothing", async () => {
      assert.match(
        await error(qmp, "migrate-set-parameters", { "downtime-limit": 2000001 }),
        /Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 milliseconds/,
      );
      assert.match(
        await error(qmp, "migrate-set-parameters", { "multifd-channels": 0 }),
        /Parameter 'multifd_channels' expects a value between 1 and 255/,
      );
      assert.match(
        await error(qmp, "migrate-set-parameters", { "zero-page-detection": "sometimes" }),
        /Parameter 'zero-page-detection' does not accept value 'sometimes'/,
      );
      const p = await qmp.execute<Record<string, unknown>>("query-migrate-parameters");
      assert.equal(p["downtime-limit"], 300);
      assert.equal(p["multifd-channels"], 2);
    });
    await t.step("TLS parameters: StrOrNull, null resets; objects: duplicate and unknown ids", async () => {
      assert.match(
        await error(qmp, "migrate-set-parameters", { "tls-creds": 5 }),
        /Invalid parameter type for 'tls-creds', expected: StrOrNull/,
      );
      await qmp.execute("migrate-set-parameters", { "tls-creds": "c0", "tls-hostname": "qemu.org" });
      await qmp.execute("migrate-set-parameters", { "tls-creds": null });
      const p = await qmp.execute<Record<string, unknown>>("query-migrate-parameters");
      assert.equal(p["tls-creds"], "");
      assert.equal(p["tls-hostname"], "qemu.org");
      await qmp.execute("object-add", { "qom-type": "authz-simple", id: "z0", identity: "CN=x" });
      assert.match(
        await error(qmp, "object-add", { "qom-type": "authz-simple", id: "z0", identity: "CN=x" }),
        /attempt to add duplicate property 'z0' to object \(type 'container'\)/,
      );
      await qmp.execute("object-del", { id: "z0" });
      assert.match(await error(qmp, "object-del", { id: "z0" }), /object 'z0' not found/);
      assert.match(
        await error(qmp, "object-add", { "qom-type": "tls-creds-x509", id: "c", dir: "/nonexistent" }),
        /Unable to access credentials \/nonexistent\/ca-cert.pem: No such file or directory/,
      );
    });
    await t.step("capabilities: unknown, unmodelled, malformed", async () => {
      assert.match(
        await error(qmp, "migrate-set-capabilities", { capabilities: [{ capability: "warp", state: true }] }),
        /Parameter 'capability' does not accept value 'warp'/,
      );
      assert.match(
        await error(qmp, "migrate-set-capabilities", {
          capabilities: [{ capability: "events", state: true }, {
            capability: "background-snapshot",
            state: true,
          }],
        }),
        /Capability 'background-snapshot' is not supported/,
      );
      const caps = await qmp.execute<{ capability: string; state: boolean }[]>("query-migrate-capabilities");
      assert.equal(caps.find((c) => c.capability === "events")?.state, false, "nothing applied on error");
      assert.match(
        await error(qmp, "migrate-set-capabilities", { capabilities: [{ capability: "events" }] }),
        /expected: MigrationCapabilityStatus/,
      );
    });
    await t.step("wrong state", async () => {
      assert.match(await error(qmp, "migrate-incoming", { uri: "unix:/x" }), /'-incoming' was not specified/);
      assert.match(
        await error(qmp, "migrate-continue", { state: "pre-switchover" }),
        /Migration not in expected state: none/,
      );
      assert.match(await error(qmp, "migrate", { uri: "unix:/x", resume: true }), /Cannot resume/);
      // Cancelling with nothing running is a no-op, as in QEMU.
      await qmp.execute("migrate_cancel");
      assert.deepEqual(await qmp.execute("query-migrate"), {});
    });
  });
});

Deno.test("qmp commands: a destination refuses migrate and a second migrate-incoming", async () => {
  await withQmpEngine("defer", engineCommands, async (qmp) => {
    assert.match(
      await error(qmp, "migrate", { uri: "unix:/x" }),
      /Guest is waiting for an incoming migration/,
    );
    assert.deepEqual(await qmp.execute("query-status"), {
      running: false,
      singlestep: false,
      status: "inmigrate",
    });
    const dir = await Deno.makeTempDir();
    try {
      await qmp.execute("migrate-incoming", { uri: `unix:${dir}/in.sock` });
      assert.match(
        await error(qmp, "migrate-incoming", { uri: `unix:${dir}/in2.sock` }),
        /The incoming migration has already been started/,
      );
      const s = await qmp.execute<Record<string, unknown>>("query-migrate");
      assert.equal(s.status, "setup");
      assert.deepEqual(s["socket-address"], [{ type: "unix", path: `${dir}/in.sock` }]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("qmp commands: pmemsave writes guest-physical memory as QEMU's does", async () => {
  await withQmpEngine(undefined, engineCommands, async (qmp, engine) => {
    const dir = await Deno.makeTempDir();
    try {
      engine.machine.blocks[0].mem.set([1, 2, 3, 4], 0x2000);
      await qmp.execute("pmemsave", { val: 0x2000, size: 8, filename: `${dir}/m` });
      assert.deepEqual(await Deno.readFile(`${dir}/m`), new Uint8Array([1, 2, 3, 4, 0, 0, 0, 0]));
      assert.match(
        await error(qmp, "pmemsave", { val: 1 << 30, size: 8, filename: `${dir}/m` }),
        /Invalid addr/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("qmp commands: only what QEMU has (the x-test- commands are registered separately)", async () => {
  await withQmpEngine(undefined, engineCommands, async (qmp, engine) => {
    const names = engineCommands(engine).map((c) => c.name);
    assert.deepEqual(names.filter((n) => n.startsWith("x-test-")), []);
    assert.ok(names.includes("query-migrate"));
    assert.equal(
      await error(qmp, "x-test-ram-digest"),
      "CommandNotFound: The command x-test-ram-digest has not been found",
    );
  });
});

Deno.test("qmp commands: -incoming URI spent the one migrate-incoming, as QEMU 7.2 and 10.0 answer", async () => {
  // Found by the control-plane probes: the model said "'-incoming' was not specified on the command line".
  const dir = await Deno.makeTempDir();
  try {
    await withQmpEngine(`unix:${dir}/cli.sock`, engineCommands, async (qmp) => {
      assert.match(
        await error(qmp, "migrate-incoming", { uri: `unix:${dir}/again.sock` }),
        /^GenericError: The incoming migration has already been started$/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
