/**
 * `deno task upstream [--qemu NAME=PATH]... [--write FILE | --check FILE]`: a Markdown table with a row per
 * path upstream's migration qtest suite registers (harness/upstream.ts): upstream's set, the tier of the
 * case of exactly that name here, and whether each world can run it — the engine and the simulated world,
 * and real QEMU per probed binary, decided by the worlds' own `cannotRun` and QEMU's table of known bugs,
 * as the matrix decides. `--write` puts it into a file between markers; `--check` fails on drift (CI).
 */
import type { ParseArgsOptionsConfig } from "node:util";
import { ALL_CASES } from "../../cases/all.ts";
import { type Cli, type CliIo, CONSOLE_IO, readCli, UsageError } from "../../engine/cli.ts";
import { errorMessage } from "../../engine/error.ts";
import type { Tier } from "../../harness/case.ts";
import { cannotRunIn, knownBugIn, type MigrationCase } from "../../harness/families/mod.ts";
import { UPSTREAM_PATHS, type UpstreamPath } from "../../harness/upstream.ts";
import { createQemuWorld } from "../../harness/world/qemu.ts";
import { describeProbe, probeQemu, type QemuProbe } from "../../harness/world/qemu_probe.ts";
import { qemuBinary } from "../../harness/world/qemu_process.ts";
import type { World } from "../../harness/world/world.ts";
import { worldByName } from "../../harness/world/worlds.ts";

export const BEGIN = "<!-- upstream-table:begin -->";
export const END = "<!-- upstream-table:end -->";

/** deno fmt's line width (deno.json): generated prose is wrapped as deno fmt would wrap it. */
const LINE_WIDTH = 110;

/** Where tools/qemu/install-backports.sh unpacks QEMU 10.0. */
const BACKPORTS = new URL("../../.cache/qemu-10.0/usr/bin/qemu-system-x86_64", import.meta.url).pathname;

const USAGE = `usage: deno task upstream [--qemu NAME=PATH]... [--write FILE | --check FILE]

Prints a Markdown table with a row per path upstream's x86_64 migration qtest suite registers
(harness/upstream.ts): upstream's set, the tier of the case of that name here, and whether each world can
run it: engine, sim, and QEMU per binary (probed): ✓, xfail (a known QEMU bug), — (cannot, reason in a note).

  --qemu NAME=PATH  the binary of the column "QEMU NAME" (NAME is MAJOR.MINOR, checked against the probe);
                    repeatable. Defaults: 7.2 = QTEST_QEMU_BINARY or qemu-system-x86_64 on PATH;
                    10.0 = .cache/qemu-10.0/usr/bin/qemu-system-x86_64 (tools/qemu/install-backports.sh)
  --write FILE      replace the text between ${BEGIN} and ${END} in FILE
  --check FILE      exit 1 with a diff when FILE's text between the markers is not what --write would write
  --help            this text

Example:
  deno task upstream --write README.md
  deno task upstream --check README.md --qemu 10.0=$(tools/qemu/install-backports.sh | tail -1)
`;

/** What one world says of one case. */
export type Cell =
  | { kind: "runs"; intermittentBug?: string }
  | { kind: "xfail"; note: string }
  | { kind: "cannot"; note: string };

/** A column of worlds: its header and its verdict on a case. */
export interface Column {
  label: string;
  cell(c: MigrationCase): Cell;
}

export interface Row {
  upstream: UpstreamPath;
  /** The tier of the case of that name here, or null when there is none. */
  tier: Tier | null;
  /** One per column; empty when there is no case. */
  cells: Cell[];
}

/** A world's verdict as the runner would reach it: skipped with a reason, a known bug, or a plain run. */
export function worldCell(world: World, c: MigrationCase, tidy: (reason: string) => string = (r) => r): Cell {
  const why = cannotRunIn(world, c);
  if (why !== null) return { kind: "cannot", note: tidy(why) };
  const bug = knownBugIn(world, c);
  if (!bug) return { kind: "runs" };
  // An intermittent bug's run may pass: marking it xfail would claim what the runner does not.
  if (bug.intermittent) return { kind: "runs", intermittentBug: bug.id };
  return { kind: "xfail", note: `known bug ${bug.id}` };
}

export function buildRows(
  paths: readonly UpstreamPath[],
  cases: readonly MigrationCase[],
  columns: readonly Column[],
): Row[] {
  const byName = new Map(cases.map((c) => [c.name, c]));
  return paths.map((upstream) => {
    const c = byName.get(upstream.path);
    return { upstream, tier: c?.tier ?? null, cells: c ? columns.map((col) => col.cell(c)) : [] };
  });
}

const SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹";
const superscript = (n: number) => [...String(n)].map((d) => SUPERSCRIPT[Number(d)]).join("");

/** Text safe in a table cell (a pipe would split it). */
const cellText = (s: string) => s.replaceAll("|", "\\|");

/** A Markdown table padded as deno fmt pads one, so the file stays as deno fmt leaves it. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const width = (s: string) => [...s].length;
  const widths = header.map((h, i) => Math.max(1, width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? "") + " ".repeat(w - width(cells[i] ?? ""))).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

/** Greedy word wrap at deno fmt's width, as it wraps a paragraph. */
export function wrap(text: string, width = LINE_WIDTH): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** The summary: how many upstream paths have a case here, and how many each world runs. */
export function summaryLine(labels: readonly string[], rows: readonly Row[]): string {
  const mirrored = rows.filter((r) => r.tier !== null);
  const per = labels.map((label, i) => {
    const count = (kind: Cell["kind"]) => mirrored.filter((r) => r.cells[i].kind === kind).length;
    const xfail = count("xfail");
    return `${label} ${count("runs")}${xfail ? ` (+${xfail} xfail)` : ""}`;
  });
  return `${mirrored.length} of ${rows.length} upstream paths mirrored (a case of the same name here); ` +
    `runnable (✓): ${per.join(", ")}.`;
}

/** The generated text that goes between the markers: the table, the summary and the notes. */
export function renderTable(labels: readonly string[], rows: readonly Row[]): string {
  const notes = new Map<string, number>();
  const noteNumber = (note: string) => {
    if (!notes.has(note)) notes.set(note, notes.size + 1);
    return notes.get(note) ?? 0;
  };
  const show = (cell: Cell) =>
    cell.kind === "runs"
      ? "✓"
      : `${cell.kind === "xfail" ? "xfail" : "—"}${superscript(noteNumber(cell.note))}`;
  const body = rows.map((r) => [
    `\`${r.upstream.path}\``,
    r.upstream.set,
    cellText(r.upstream.needs ?? ""),
    r.tier ?? "no case",
    ...labels.map((_, i) => r.cells[i] ? show(r.cells[i]) : ""),
  ]);
  const out = [
    ...markdownTable(["upstream path", "set", "upstream needs", "here", ...labels], body),
    "",
    ...wrap(summaryLine(labels, rows)),
  ];
  // Intermittent bugs by column and id: said once under the table, not in every cell.
  const intermittent = new Map<string, { bug: string; label: string; rows: number }>();
  for (const r of rows) {
    r.cells.forEach((cell, i) => {
      if (cell.kind !== "runs" || !cell.intermittentBug) return;
      const key = `${cell.intermittentBug}\0${labels[i]}`;
      const seen = intermittent.get(key) ?? { bug: cell.intermittentBug, label: labels[i], rows: 0 };
      intermittent.set(key, { ...seen, rows: seen.rows + 1 });
    });
  }
  if (intermittent.size) {
    const bugs = [...intermittent.values()].map((b) =>
      `${b.bug} (${b.label}, ${b.rows} row${b.rows === 1 ? "" : "s"})`
    );
    out.push(
      "",
      ...wrap(
        `Marked ✓ although a known bug may strike, since it strikes some runs only (the run then reports ` +
          `XFAIL): ${bugs.join("; ")}.`,
      ),
    );
  }
  if (notes.size) {
    out.push(
      "",
      "<details>",
      "<summary>Notes: why a world cannot run a case (—), and its known bugs (xfail; " +
        "harness/world/qemu_bugs.ts)</summary>",
      "",
      ...markdownTable(["note", "reason"], [...notes].map(([note, n]) => [String(n), cellText(note)])),
      "",
      "</details>",
    );
  }
  return out.join("\n");
}

/** The three parts of a text around its markers; an error when they are missing, repeated or reversed. */
function splitAtMarkers(text: string): { head: string; inner: string; tail: string } {
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < 0) throw new Error(`no ${begin < 0 ? BEGIN : END} marker`);
  if (text.indexOf(BEGIN, begin + 1) >= 0 || text.indexOf(END, end + 1) >= 0) {
    throw new Error("a marker appears twice");
  }
  if (end < begin) throw new Error(`${END} comes before ${BEGIN}`);
  return {
    head: text.slice(0, begin + BEGIN.length),
    inner: text.slice(begin + BEGIN.length, end),
    tail: text.slice(end),
  };
}

/** What goes between the markers: the generated text set apart by blank lines. */
const between = (generated: string) => `\n\n${generated}\n\n`;

/** `text` with the generated text between its markers. */
export function replaceMarked(text: string, generated: string): string {
  const { head, tail } = splitAtMarkers(text);
  return head + between(generated) + tail;
}

/**
 * A line diff of `a` against `b` (- only in a, + only in b), one `@@ line N @@` header per change, N
 * counted from `firstLine` in a. Longest common subsequence: the tables are a few hundred lines.
 */
export function lineDiff(a: readonly string[], b: readonly string[], firstLine = 1): string[] {
  const common = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      common[i][j] = a[i] === b[j] ? common[i + 1][j + 1] + 1 : Math.max(common[i + 1][j], common[i][j + 1]);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      i++;
      j++;
      continue;
    }
    out.push(`@@ line ${firstLine + i} @@`);
    while ((i < a.length || j < b.length) && !(i < a.length && j < b.length && a[i] === b[j])) {
      if (i < a.length && (j === b.length || common[i + 1][j] >= common[i][j + 1])) out.push(`-${a[i++]}`);
      else out.push(`+${b[j++]}`);
    }
  }
  return out;
}

/** Null when the text between the markers is `generated`, else what differs and how to fix it. */
export function checkMarked(text: string, generated: string, file: string): string | null {
  const { head, inner } = splitAtMarkers(text);
  if (inner === between(generated)) return null;
  const firstLine = head.split("\n").length;
  const diff = lineDiff(inner.split("\n"), between(generated).split("\n"), firstLine);
  return `${file}: the table of upstream's paths between the markers is not current ` +
    `(- in ${file}, + generated):\n${diff.join("\n")}\n` +
    `regenerate it: deno task upstream --write ${file}`;
}

/** The accelerators every QEMU of the table starts with on the reference host. */
const REFERENCE_HOST_ACCELS = ["tcg", "kvm"];

/** A QEMU column: its header's version and its binary. */
export interface QemuColumnSpec {
  label: string;
  binary: string;
}

/**
 * The column of one QEMU binary, through the QEMU world prepared as the matrix prepares it (its probe,
 * accelerators and machine). Reasons name the binary by its column, so the table does not depend on where
 * the binary lies or on its micro release.
 */
export async function qemuColumn(
  spec: QemuColumnSpec,
  probe: (binary: string) => Promise<QemuProbe>,
): Promise<Column> {
  // The table describes the binaries on the project's reference host (CI's: a guest with nested KVM), not
  // on whichever machine prints it: a host without /dev/kvm changed its COLO and dirty-ring notes, and the
  // check failed on a table that was current (found 2026-12-07 on a fresh machine without KVM).
  const onReferenceHost = async (binary: string): Promise<QemuProbe> => {
    const p = await probe(binary);
    return { ...p, accels: [...new Set([...p.accels, ...REFERENCE_HOST_ACCELS])] };
  };
  const world = createQemuWorld({ binary: () => spec.binary, probe: onReferenceHost, nestedHost: true });
  await world.prepare?.();
  const setup = world.setup;
  if (!setup) throw new Error(`QEMU ${spec.label}: the world was not prepared`);
  const { major, minor } = setup.src.version;
  if (`${major}.${minor}` !== spec.label) {
    throw new Error(
      `the column QEMU ${spec.label} is ${describeProbe(setup.src)}: name it by its version ` +
        `(--qemu ${major}.${minor}=${spec.binary})`,
    );
  }
  const label = `QEMU ${spec.label}`;
  const tidy = (reason: string) => reason.replaceAll(describeProbe(setup.src), label);
  return { label, cell: (c) => worldCell(world, c, tidy) };
}

/** The worlds every table has, whatever binaries there are. */
function modelColumns(): Column[] {
  return (["engine", "sim"] as const).map((name) => {
    const world = worldByName(name);
    return { label: name, cell: (c: MigrationCase) => worldCell(world, c) };
  });
}

/** The generated text for these QEMU binaries. */
export async function generate(
  qemu: readonly QemuColumnSpec[],
  probe: (binary: string) => Promise<QemuProbe>,
  cases: readonly MigrationCase[] = ALL_CASES,
): Promise<string> {
  const columns = [...modelColumns()];
  for (const spec of qemu) columns.push(await qemuColumn(spec, probe));
  const rows = buildRows(UPSTREAM_PATHS, cases, columns);
  return renderTable(columns.map((c) => c.label), rows);
}

export interface UpstreamArgs {
  /** Column name → binary, from --qemu (the defaults fill the rest). */
  qemu: Map<string, string>;
  write?: string;
  check?: string;
}

const CLI = {
  tool: "upstream",
  usage: USAGE,
  options: {
    qemu: { type: "string", multiple: true },
    write: { type: "string" },
    check: { type: "string" },
  },
} satisfies Cli<ParseArgsOptionsConfig>;

function parseQemu(specs: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of specs) {
    const m = /^(\d+\.\d+)=(.+)$/.exec(s);
    if (!m) {
      throw new UsageError(
        `--qemu must be NAME=PATH with NAME a version MAJOR.MINOR (e.g. 10.0), got '${s}'`,
      );
    }
    out.set(m[1], m[2]);
  }
  return out;
}

/** How the tool finds and probes binaries (the unit tests give fakes). */
export interface UpstreamDeps {
  probe(binary: string): Promise<QemuProbe>;
  /** The binary of a default column ("7.2", "10.0"), or undefined. */
  defaultBinary(label: string): string | undefined;
  cases?: readonly MigrationCase[];
}

function existing(path: string): string | undefined {
  try {
    return Deno.statSync(path).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

const REAL_DEPS: UpstreamDeps = {
  probe: probeQemu,
  defaultBinary: (label) =>
    label === "7.2" ? qemuBinary("src") : label === "10.0" ? existing(BACKPORTS) : undefined,
};

/** The default columns, in order; --qemu overrides one by name or adds one after them. */
const DEFAULT_QEMU = ["7.2", "10.0"];

/** How to get a default column's binary. */
const WHERE: Record<string, string> = {
  "7.2": "put qemu-system-x86_64 on PATH or set QTEST_QEMU_BINARY",
  "10.0": "run tools/qemu/install-backports.sh",
};

export async function main(
  argv: readonly string[],
  io: CliIo = CONSOLE_IO,
  deps: UpstreamDeps = REAL_DEPS,
): Promise<number> {
  const cli = readCli(CLI, argv, ({ values: v }): UpstreamArgs => {
    if (v.write !== undefined && v.check !== undefined) {
      throw new UsageError("--write and --check exclude each other");
    }
    return { qemu: parseQemu(v.qemu ?? []), write: v.write, check: v.check };
  }, io);
  if ("status" in cli) return cli.status;
  const { qemu, write, check } = cli.args;
  const specs: QemuColumnSpec[] = [];
  for (const label of [...DEFAULT_QEMU, ...[...qemu.keys()].filter((l) => !DEFAULT_QEMU.includes(l))]) {
    const binary = qemu.get(label) ?? deps.defaultBinary(label);
    if (!binary) {
      io.err(`upstream: no QEMU ${label} binary: ${WHERE[label]}, or pass --qemu ${label}=PATH`);
      return 1;
    }
    specs.push({ label, binary });
  }
  let generated: string;
  try {
    generated = await generate(specs, deps.probe, deps.cases);
  } catch (e) {
    io.err(`upstream: ${errorMessage(e)}`);
    return 1;
  }
  const file = write ?? check;
  if (file === undefined) {
    io.out(generated);
    return 0;
  }
  try {
    const text = await Deno.readTextFile(file);
    if (check !== undefined) {
      const drift = checkMarked(text, generated, file);
      if (drift) {
        io.err(drift);
        return 1;
      }
      io.out(`${file}: the table of upstream's paths is current`);
      return 0;
    }
    const updated = replaceMarked(text, generated);
    if (updated !== text) await Deno.writeTextFile(file, updated);
    io.out(`${file}: the table of upstream's paths ${updated === text ? "was already current" : "written"}`);
    return 0;
  } catch (e) {
    io.err(`upstream: ${file}: ${errorMessage(e)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
