import assert from "node:assert/strict";
import type { CliIo } from "../../engine/cli.ts";
import type { UpstreamPath } from "../../harness/upstream.ts";
import { fakeProbe100, fakeProbe72 } from "../../harness/world/qemu_test_util.ts";
import type { QemuProbe } from "../../harness/world/qemu_probe.ts";
import {
  BEGIN,
  checkMarked,
  END,
  lineDiff,
  main,
  markdownTable,
  renderTable,
  replaceMarked,
  type Row,
  summaryLine,
  wrap,
} from "./table.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

const up = (path: string, set: "smoke" | "full" = "full", needs?: string): UpstreamPath => ({
  path,
  set,
  ...(needs ? { needs } : {}),
});

/** Three rows: one every world runs, one with a reason and a known bug, one without a case. */
const ROWS: Row[] = [
  { upstream: up("/migration/a", "smoke"), tier: "smoke", cells: [{ kind: "runs" }, { kind: "runs" }] },
  {
    upstream: up("/migration/b"),
    tier: "full",
    cells: [{ kind: "cannot", note: "needs a | b" }, { kind: "xfail", note: "known bug x" }],
  },
  { upstream: up("/migration/c", "full", "KVM"), tier: null, cells: [] },
  {
    upstream: up("/migration/d"),
    tier: "slow",
    cells: [{ kind: "cannot", note: "needs a | b" }, { kind: "runs", intermittentBug: "flaky-exit" }],
  },
];

Deno.test("upstream table: rows, notes numbered once, no case left blank, a summary", () => {
  const text = renderTable(["engine", "QEMU 10.0"], ROWS);
  const lines = text.split("\n");
  assert.equal(lines[0], "| upstream path  | set   | upstream needs | here    | engine | QEMU 10.0 |");
  assert.equal(lines[2], "| `/migration/a` | smoke |                | smoke   | ✓      | ✓         |");
  assert.equal(lines[3], "| `/migration/b` | full  |                | full    | —¹     | xfail²    |");
  assert.equal(lines[4], "| `/migration/c` | full  | KVM            | no case |        |           |");
  assert.equal(lines[5], "| `/migration/d` | full  |                | slow    | —¹     | ✓         |");
  assert.match(text, /^3 of 4 upstream paths mirrored .*: engine 1, QEMU 10\.0 2 \(\+1 xfail\)\.$/m);
  assert.match(text, /flaky-exit \(QEMU 10\.0, 1 row\)/);
  // The note's pipe is escaped, so it stays in its cell.
  assert.ok(lines.includes("| 1    | needs a \\| b |"), text);
  assert.ok(lines.includes("| 2    | known bug x  |"), text);
  assert.ok(text.includes("<details>") && text.endsWith("</details>"));
});

Deno.test("upstream table: the summary counts mirrored rows only", () => {
  assert.equal(
    summaryLine(["engine", "QEMU 10.0"], ROWS),
    "3 of 4 upstream paths mirrored (a case of the same name here); runnable (✓): engine 1, " +
      "QEMU 10.0 2 (+1 xfail).",
  );
});

Deno.test("upstream table: tables are padded and prose wrapped at the formatter's width", () => {
  assert.deepEqual(markdownTable(["a", "bb"], [["✓", "—¹²"]]), ["| a | bb  |", "| - | --- |", "| ✓ | —¹² |"]);
  const lines = wrap("word ".repeat(60));
  assert.ok(lines.every((l) => l.length <= 110), lines.join("\n"));
  assert.equal(lines.join(" "), "word ".repeat(60).trim());
});

Deno.test("upstream table: the text between the markers is replaced, and only that", () => {
  const readme = `# Title\n\nintro\n\n${BEGIN}\nold table\n${END}\n\nafter\n`;
  const written = replaceMarked(readme, "new table");
  assert.equal(written, `# Title\n\nintro\n\n${BEGIN}\n\nnew table\n\n${END}\n\nafter\n`);
  assert.equal(replaceMarked(written, "new table"), written);
  assert.equal(checkMarked(written, "new table", "README.md"), null);
  assert.throws(() => replaceMarked("no markers", "t"), /no <!-- upstream-table:begin --> marker/);
  assert.throws(() => replaceMarked(`${BEGIN}\n${END}\n${BEGIN}`, "t"), /appears twice/);
  assert.throws(() => replaceMarked(`${END}\n${BEGIN}`, "t"), /comes before/);
});

Deno.test("upstream table: --check's message on a drifted README shows what differs and where", () => {
  const generated = "| a | b |\n| - | - |\n| x | ✓ |\n| y | ✓ |";
  const current = replaceMarked(`# T\n\n${BEGIN}\n${END}\n`, generated);
  const drifted = current.replace("| y | ✓ |", "| y | — |");
  const message = checkMarked(drifted, generated, "README.md");
  assert.ok(message !== null);
  // The README's line 8 is the changed row (BEGIN is on line 3, a blank line, then the table).
  assert.match(message, /^@@ line 8 @@\n-\| y \| — \|\n\+\| y \| ✓ \|$/m);
  assert.match(message, /deno task upstream --write README\.md$/);
});

Deno.test("upstream table: the line diff keeps common lines and orders - before +", () => {
  assert.deepEqual(lineDiff(["a", "b", "c"], ["a", "b", "c"]), []);
  assert.deepEqual(lineDiff(["a", "b", "c"], ["a", "x", "c", "d"], 10), [
    "@@ line 11 @@",
    "-b",
    "+x",
    "@@ line 13 @@",
    "+d",
  ]);
});

/** Probes as QEMU 7.2 and 10.0 answer, by path, so the tool runs its whole way without QEMU. */
const fakeProbe = (binary: string): Promise<QemuProbe> =>
  Promise.resolve(binary.includes("10.0") ? fakeProbe100(binary) : fakeProbe72(binary));

function capture(): CliIo & { outs: string[]; errs: string[] } {
  const outs: string[] = [];
  const errs: string[] = [];
  return { outs, errs, out: (t) => outs.push(t), err: (t) => errs.push(t) };
}

const FAKE_DEPS = {
  probe: fakeProbe,
  defaultBinary: (label: string) => `/fake/qemu-${label}/qemu-system-x86_64`,
};

Deno.test("upstream table: --write then --check pass; a drifted README fails --check with a diff", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/README.md`;
    await Deno.writeTextFile(file, `# R\n\n${BEGIN}\n${END}\n\nend\n`);
    let io = capture();
    assert.equal(await main(["--write", file], io, FAKE_DEPS), 0, io.errs.join("\n"));
    assert.match(io.outs.join("\n"), /written/);
    const written = await Deno.readTextFile(file);
    assert.match(written, /\| `\/migration\/precopy\/unix\/plain` +\| smoke \|/);
    assert.match(written, /\| QEMU 7\.2 \| QEMU 10\.0 \|/);
    // Reasons name the binary by its column, not by its path or micro release.
    assert.ok(!written.includes("/fake/"), "a binary's path is in the table");
    io = capture();
    assert.equal(await main(["--check", file], io, FAKE_DEPS), 0, io.errs.join("\n"));
    const row = /^\| `\/migration\/precopy\/tcp\/plain` .*$/m.exec(written)?.[0] ?? "";
    assert.ok(row.includes("✓"), row);
    await Deno.writeTextFile(file, written.replace(row, row.replace("✓", "—")));
    io = capture();
    assert.equal(await main(["--check", file], io, FAKE_DEPS), 1);
    const message = io.errs.join("\n");
    assert.match(message, /is not current/);
    assert.ok(message.includes(`\n-${row.replace("✓", "—")}\n+${row}\n`), message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("upstream table: the generated text is as deno fmt leaves it (so --check survives deno fmt)", async () => {
  const io = capture();
  assert.equal(await main([], io, FAKE_DEPS), 0, io.errs.join("\n"));
  const text = io.outs.join("\n") + "\n";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.equal(new TextDecoder().decode(stdout), text);
});

Deno.test("upstream table: --help, bad options and a missing binary", async () => {
  let io = capture();
  assert.equal(await main(["--help"], io, FAKE_DEPS), 0);
  assert.match(io.outs.join(""), /^usage: deno task upstream/);
  for (const args of [["--qemu", "ten=/x"], ["--write", "a", "--check", "b"], ["--bogus"], ["extra"]]) {
    io = capture();
    assert.equal(await main(args, io, FAKE_DEPS), 2, args.join(" "));
    assert.match(io.errs.join(""), /^upstream: .*\n\nusage:/);
  }
  io = capture();
  assert.equal(await main([], io, { ...FAKE_DEPS, defaultBinary: () => undefined }), 1);
  assert.match(io.errs.join(""), /no QEMU 7\.2 binary: .*--qemu 7\.2=PATH/);
  io = capture();
  // A column named for another version than its binary's is refused, not mislabelled.
  assert.equal(await main(["--qemu", "7.2=/fake/qemu-10.0/x"], io, FAKE_DEPS), 1);
  assert.match(io.errs.join(""), /the column QEMU 7\.2 is QEMU 10\.0\.2 .*--qemu 10\.0=/);
});

Deno.test("upstream table: the same on a host without KVM as on the reference host (found: a fresh machine without /dev/kvm)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tables: string[] = [];
    for (const accels of [["tcg", "kvm"], ["tcg"]]) {
      const file = `${dir}/README-${accels.length}.md`;
      await Deno.writeTextFile(file, `${BEGIN}\n${END}\n`);
      const probe = async (binary: string) => ({ ...await fakeProbe(binary), accels });
      const io = capture();
      assert.equal(await main(["--write", file], io, { ...FAKE_DEPS, probe }), 0, io.errs.join("\n"));
      tables.push(await Deno.readTextFile(file));
    }
    assert.equal(tables[1], tables[0]);
    // The reference host's nested KVM, not the printing host's: the dirty ring's note is that one.
    assert.match(tables[0], /needs KVM's dirty ring on bare metal/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
