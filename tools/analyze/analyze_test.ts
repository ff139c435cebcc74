import assert from "node:assert/strict";
import type { CliIo } from "../../engine/cli.ts";
import { main } from "./analyze.ts";
import { analyzeStream } from "./stream.ts";
import { engineStream, FIXTURE, withTempDir } from "./analyze_test_util.ts";
import type { AnalysisResult } from "./types.ts";
import { findVmdesc } from "./vmdesc.ts";

const ANALYZE = new URL("./analyze.ts", import.meta.url).pathname;

/** Runs the CLI in this process and collects what it prints. */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const code = await main(args, io);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** Runs the CLI as its own process, as the analyze-script flow does. */
function run(...args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", ANALYZE, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("analyze CLI: the default is the summary, --dump state the devices, --dump desc the vmdesc", async () => {
  const summary = await cli(FIXTURE);
  assert.equal(summary.code, 0, summary.err);
  assert.deepEqual(JSON.parse(summary.out), JSON.parse(JSON.stringify(await analyzeStream(FIXTURE))));

  const state = await cli(FIXTURE, "--dump", "state");
  assert.equal(state.code, 0, state.err);
  const devices = JSON.parse(state.out);
  assert.deepEqual(devices, JSON.parse(summary.out).devices);
  assert.equal(Object.keys(devices).length, 30);
  assert.deepEqual(devices["timer (0)"], {
    cpu_ticks_offset: 0,
    unused: "0000000000000000",
    cpu_clock_offset: 0,
  });
  assert.ok(!("header" in devices) && !("sections" in devices));

  const desc = await cli(FIXTURE, "--dump", "desc");
  assert.equal(desc.code, 0, desc.err);
  assert.deepEqual(JSON.parse(desc.out), (await findVmdesc(FIXTURE))?.json);
});

Deno.test("analyze CLI: --offset and --ram reach the parser; usage errors exit 2", async () => {
  await withTempDir(async (dir) => {
    const { bytes } = await engineStream(`${dir}/e.mig`);
    const shifted = new Uint8Array(100 + bytes.length);
    shifted.set(bytes, 100);
    await Deno.writeFile(`${dir}/shifted.mig`, shifted);
    const res = await cli(`${dir}/shifted.mig`, "--offset", "100", "--ram");
    assert.equal(res.code, 0, res.err);
    const out: AnalysisResult = JSON.parse(res.out);
    assert.equal(out.header.offset, 100);
    assert.ok(out.ram?.blocks.every((b) => typeof b.sha256 === "string"));
    // Without the offset the file does not start with a stream: one line naming the offset, exit 1.
    const bad = await cli(`${dir}/shifted.mig`);
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /^analyze: .*: Not a migration stream \(magic 0x00000000, .*\(at stream offset 0\)$/,
    );
    // No vmdesc for --dump desc.
    await Deno.writeFile(`${dir}/none.mig`, bytes.subarray(0, 100));
    assert.equal((await cli(`${dir}/none.mig`, "--dump", "desc")).code, 1);
  });
  for (
    const args of [[FIXTURE, "--dump", "bogus"], [], [FIXTURE, FIXTURE], [FIXTURE, "--offset", "-1"], [
      "--nope",
    ]]
  ) {
    assert.equal((await cli(...args)).code, 2, args.join(" "));
  }
  assert.equal((await cli("--help")).code, 0);
});

Deno.test("analyze CLI as a process: JSON on stdout and exit 0; a malformed stream is one line and exit 1", async () => {
  const state = await run(FIXTURE);
  assert.equal(state.code, 0, new TextDecoder().decode(state.stderr));
  const res = JSON.parse(new TextDecoder().decode(state.stdout)) as AnalysisResult;
  assert.equal(res.configuration?.machine_type, "pc-i440fx-7.2");
  assert.equal(Object.keys(res.devices).length, 30);
  const desc = await run(FIXTURE, "--dump", "desc");
  assert.equal(desc.code, 0);
  const json = JSON.parse(new TextDecoder().decode(desc.stdout));
  assert.equal(json.page_size, 4096);
  assert.equal(json.devices.length, 30);
  const usage = await run(FIXTURE, "--dump", "bogus");
  assert.equal(usage.code, 2);

  await withTempDir(async (dir) => {
    const path = `${dir}/good.mig`;
    const { bytes } = await engineStream(path);
    const cpu = (await analyzeStream(bytes)).sections.find((s) => s.idstr === "cpu")!;
    const p = `${dir}/cli.mig`;
    const b = bytes.slice();
    b[cpu.offset] = 0x09;
    await Deno.writeFile(p, b);
    const out = await run(p);
    assert.equal(out.code, 1);
    assert.equal(new TextDecoder().decode(out.stdout), "");
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(err.trimEnd().split("\n").length, 1, err);
    assert.match(err, new RegExp(`Unknown savevm section type 9 \\(at stream offset ${cpu.offset}\\)\\n$`));
  });
});
