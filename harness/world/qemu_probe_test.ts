/**
 * The probe against the real binaries: the installed QEMU (QTEST_QEMU_BINARY or PATH), and QEMU 10.0
 * when tools/qemu/install-backports.sh unpacked it. What a probe reports must agree with QEMU's history
 * (file: and channels from 8.2, exit-on-error from 9.1), so a walk of the schema that goes wrong fails
 * here. Plus the cache, a binary that fails or hangs, and the -L folders of an unpacked prefix.
 */
import assert from "node:assert/strict";
import { compareVersions, parseVersion, probeQemu, type QemuProbe, runProbe } from "./qemu_probe.ts";
import { qemuBinary, qemuDataDirs, qemuEnv } from "./qemu_process.ts";

const INSTALLED = qemuBinary("src");
const BACKPORTS = new URL("../../.cache/qemu-10.0/usr/bin/qemu-system-x86_64", import.meta.url).pathname;
const HAS_BACKPORTS = (() => {
  try {
    return Deno.statSync(BACKPORTS).isFile;
  } catch {
    return false;
  }
})();

function assertAgreesWithHistory(p: QemuProbe): void {
  const atLeast = (v: string) => compareVersions(p.version, parseVersion(v)) >= 0;
  for (const cap of ["events", "multifd", "xbzrle", "validate-uuid"]) {
    assert.ok(p.capabilities.includes(cap), cap);
  }
  for (const param of ["multifd-channels", "multifd-compression", "max-bandwidth"]) {
    assert.ok(p.parameters.includes(param), param);
  }
  assert.ok(p.commands.includes("migrate") && p.commands.includes("query-migrate"));
  assert.ok(p.migrateArgs.includes("uri") && p.migrateIncomingArgs.includes("uri"));
  assert.ok(p.multifdCompressions.includes("none") && p.multifdCompressions.includes("zlib"));
  assert.ok(p.accels.includes("tcg"), `TCG starts: ${p.accels}`);
  assert.ok(p.machines.some((m) => m.alias === "pc" && /^pc-i440fx-\d+\.\d+$/.test(m.name)), "pc alias");
  assert.equal(
    p.transports.includes("file"),
    atLeast("8.2"),
    `file: transport on ${p.version.major}.${p.version.minor}`,
  );
  assert.equal(p.migrateArgs.includes("channels"), atLeast("8.2"), "migrate channels");
  assert.equal(p.migrateIncomingArgs.includes("exit-on-error"), atLeast("9.1"), "exit-on-error");
  assert.equal(p.parameters.includes("zero-page-detection"), atLeast("9.0"), "zero-page-detection");
  assert.ok(p.statuses.includes("postcopy-recover") && p.statuses.includes("completed"), "statuses");
  assert.equal(p.statuses.includes("postcopy-recover-setup"), atLeast("9.1"), "postcopy-recover-setup");
}

Deno.test({
  name: "qemu probe: the installed QEMU answers version, capabilities, schema, accels and machines",
  ignore: INSTALLED === undefined,
  async fn() {
    const p = await probeQemu(INSTALLED!);
    assertAgreesWithHistory(p);
    if (p.version.major === 7 && p.version.minor === 2) {
      // What this harness found on 7.2: the levels are accepted and read back as 1.
      assert.deepEqual(p.appliedLevels, []);
      assert.deepEqual(p.levelReadBack, { "multifd-zlib-level": 1, "multifd-zstd-level": 1 });
      assert.deepEqual(p.refusedCapabilitySets, {});
    }
    // Cached per path and mtime: the same answer without a second QEMU.
    const t0 = performance.now();
    assert.equal(await probeQemu(INSTALLED!), p);
    assert.ok(performance.now() - t0 < 50);
  },
});

Deno.test({
  name: "qemu probe: QEMU 10.0 from bookworm-backports (tools/qemu/install-backports.sh)",
  ignore: !HAS_BACKPORTS,
  async fn() {
    const p = await probeQemu(BACKPORTS);
    assert.equal(p.version.major, 10);
    assertAgreesWithHistory(p);
    assert.deepEqual(p.appliedLevels, ["multifd-zlib-level", "multifd-zstd-level"]);
    assert.ok(p.capabilities.includes("mapped-ram"));
    assert.ok(p.machines.some((m) => m.name === "pc-i440fx-7.2"), "10.0 still knows 7.2's machine type");
    // Found by this harness: 10.0 refuses multifd with postcopy-ram (7.2 takes them and then aborts).
    assert.deepEqual(p.refusedCapabilitySets, {
      "multifd+postcopy-ram": "Postcopy is not yet compatible with multifd",
    });
  },
});

Deno.test("qemu probe: a binary that exits or hangs fails with what it waited for", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest-probe-" });
  try {
    const exits = `${dir}/exits`;
    await Deno.writeTextFile(exits, "#!/bin/sh\necho 'no such machine' >&2\nexit 1\n", { mode: 0o755 });
    await assert.rejects(
      () => runProbe(exits, 5000),
      /probe of .*exits \(-accel kvm -accel tcg\): no answer to version, .* before it exited; its stderr: no such machine/,
    );
    const hangs = `${dir}/hangs`;
    await Deno.writeTextFile(hangs, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    await assert.rejects(
      () => runProbe(hangs, 300),
      /probe of .*hangs .*: no answer to version, .* within 300 ms/,
    );
    await assert.rejects(() => probeQemu(`${dir}/missing`), /QEMU binary .*missing: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu data dirs: an unpacked prefix gets its own firmware and modules; MIGTEST_QEMU_DATADIRS wins", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migtest-prefix-" });
  const saved = Deno.env.get("MIGTEST_QEMU_DATADIRS");
  try {
    Deno.env.delete("MIGTEST_QEMU_DATADIRS");
    for (const d of ["usr/bin", "usr/share/qemu", "usr/share/seabios", "usr/lib/x86_64-linux-gnu/qemu"]) {
      await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    }
    const bin = `${dir}/usr/bin/qemu-system-x86_64`;
    assert.deepEqual(qemuDataDirs(bin), [`${dir}/usr/share/qemu`, `${dir}/usr/share/seabios`]);
    assert.deepEqual(qemuEnv(bin), { QEMU_MODULE_DIR: `${dir}/usr/lib/x86_64-linux-gnu/qemu` });
    assert.deepEqual(qemuDataDirs("/usr/bin/qemu-system-x86_64"), []);
    assert.deepEqual(qemuEnv("/usr/bin/qemu-system-x86_64"), {});
    assert.deepEqual(
      qemuDataDirs(`${dir}/build/qemu-system-x86_64`),
      [],
      "a build tree finds pc-bios/ itself",
    );
    Deno.env.set("MIGTEST_QEMU_DATADIRS", "/x:/y");
    assert.deepEqual(qemuDataDirs(bin), ["/x", "/y"]);
  } finally {
    if (saved === undefined) Deno.env.delete("MIGTEST_QEMU_DATADIRS");
    else Deno.env.set("MIGTEST_QEMU_DATADIRS", saved);
    await Deno.remove(dir, { recursive: true });
  }
});
