/**
 * `deno task qemu-build SOURCE [--name NAME] [--jobs N]` (deno run -A tools/qemu/build.ts): builds a qemu-system-x86_64 for the QEMU
 * world from source, into `.cache/qemu-build/NAME/` (ignored by git), and prints the binary's absolute path
 * on its last stdout line (everything else goes to stderr):
 *
 *   QTEST_QEMU_BINARY=$(deno run -A tools/qemu/build.ts debian | tail -1) deno task matrix --backend qemu
 *
 * SOURCE: a QEMU source tree (a folder with `configure`), a release tarball, `GITDIR@REF` (a commit of a
 * local checkout, taken with `git archive`: no network), or `debian` (the newest QEMU source package the
 * system's Debian suites and <codename>-backports offer, by `apt-get source`).
 *
 * Idempotent: when NAME already holds a finished build of the same source, the run only checks that the
 * binary answers `--version` and prints its path. A failed run resumes where it stopped (make is
 * incremental). Every failure names the command that failed and shows its last lines of output.
 */
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type CliArgs, parseCount, readCli, UsageError } from "../../engine/cli.ts";
import { errorMessage } from "../../engine/error.ts";

export const USAGE = `usage: deno task qemu-build SOURCE [--name NAME] [--jobs N]

Builds qemu-system-x86_64 (x86_64-softmmu, a minimal feature set with what migration needs: zlib, zstd,
gnutls) into .cache/qemu-build/NAME/ and prints the binary's absolute path on the last line of stdout.

SOURCE is one of:
  DIR                 a QEMU source tree (a folder with configure); built out of tree
  FILE.tar.xz|bz2|gz  a QEMU release tarball
  GITDIR@REF          a commit of a local QEMU git checkout (git archive; no network)
  debian              Debian's newest QEMU source package (apt-get source; deb-src entries are derived
                      from /etc/apt/sources.list.d/debian.sources, plus <codename>-backports)

Options:
  --name NAME   the build's folder under .cache/qemu-build/ (default: debian, the tarball's or folder's
                name, or the ref)
  --jobs N      parallel compile jobs (default: the number of CPUs)
  --help        this text

A second run with the same SOURCE and NAME only checks the binary and prints its path.
`;

// ---------------------------------------------------------------------------------------------------------
// The command line.

export interface BuildArgs {
  source: string;
  name: string | undefined;
  jobs: number;
}

const CLI = {
  tool: "qemu-build",
  usage: USAGE,
  options: { name: { type: "string" }, jobs: { type: "string" } },
  positionals: true,
} as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkArgs(args: CliArgs<typeof CLI.options>, cpus: number): BuildArgs {
  const { values: v, positionals } = args;
  if (positionals.length === 0) throw new UsageError("SOURCE is missing");
  if (positionals.length > 1) throw new UsageError(`one SOURCE only, got ${positionals.length}`);
  if (positionals[0] === "") throw new UsageError("SOURCE is empty");
  if (v.name !== undefined && !NAME_RE.test(v.name)) {
    throw new UsageError(`--name must be letters, digits, '.', '_' or '-' (not first), got '${v.name}'`);
  }
  return {
    source: positionals[0],
    name: v.name,
    jobs: v.jobs === undefined ? Math.max(1, cpus) : parseCount(v.jobs, "--jobs"),
  };
}

/** The command line, or the status to exit with (0 after --help, 2 after a usage error, both printed). */
export function parseBuildArgs(
  argv: readonly string[],
  cpus: number,
  io = { out: (t: string) => console.log(t), err: (t: string) => console.error(t) },
): { args: BuildArgs } | { status: 0 | 2 } {
  return readCli(CLI, argv, (a) => checkArgs(a, cpus), io);
}

// ---------------------------------------------------------------------------------------------------------
// SOURCE.

export type Source =
  | { kind: "debian" }
  | { kind: "dir"; path: string }
  | { kind: "tarball"; path: string }
  | { kind: "git"; gitDir: string; ref: string };

/** What classifySource asks of the file system (a test answers from a table). */
export interface PathProbe {
  isDir(path: string): boolean;
  isFile(path: string): boolean;
}

const TARBALL_RE = /\.(tar\.xz|tar\.bz2|tar\.gz|tgz)$/;

function isGitRepo(path: string, probe: PathProbe): boolean {
  // A checkout (.git folder), a linked worktree (.git file) or a bare repository.
  return probe.isDir(join(path, ".git")) || probe.isFile(join(path, ".git")) ||
    (probe.isFile(join(path, "HEAD")) && probe.isDir(join(path, "objects")));
}

/** What SOURCE names, with its paths made absolute against `cwd`; a UsageError says why it names nothing. */
export function classifySource(text: string, cwd: string, probe: PathProbe): Source {
  if (text === "debian") return { kind: "debian" };
  const path = resolve(cwd, text);
  // An existing path wins over the GITDIR@REF reading: a folder's name may contain '@'.
  if (probe.isDir(path)) {
    if (!probe.isFile(join(path, "configure"))) {
      throw new UsageError(`${path} has no configure: not a QEMU source tree`);
    }
    return { kind: "dir", path };
  }
  if (probe.isFile(path)) {
    if (!TARBALL_RE.test(path)) {
      throw new UsageError(`${path} is not a .tar.xz, .tar.bz2 or .tar.gz tarball`);
    }
    return { kind: "tarball", path };
  }
  // GITDIR@REF: the first '@' after an existing folder splits (a ref may hold '@': HEAD@{1}).
  const ats = [...text.matchAll(/@/g)].map((m) => m.index).filter((i) => i > 0);
  if (ats.length > 0) {
    const at = ats.find((i) => probe.isDir(resolve(cwd, text.slice(0, i)))) ?? ats[0];
    const gitDir = resolve(cwd, text.slice(0, at));
    const ref = text.slice(at + 1);
    if (ref === "") throw new UsageError(`${text}: no REF after '@'`);
    if (!probe.isDir(gitDir)) throw new UsageError(`${gitDir}: no such folder (GITDIR@REF)`);
    if (!isGitRepo(gitDir, probe)) throw new UsageError(`${gitDir} is not a git repository (GITDIR@REF)`);
    return { kind: "git", gitDir, ref };
  }
  throw new UsageError(
    `${path}: no such file or folder (SOURCE is a folder, a tarball, GITDIR@REF or debian)`,
  );
}

function sanitizeName(text: string): string {
  const s = text.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return s === "" ? "qemu" : s;
}

/** The build's folder name when --name is not given. */
export function defaultName(source: Source): string {
  switch (source.kind) {
    case "debian":
      return "debian";
    case "dir":
      return sanitizeName(basename(source.path));
    case "tarball":
      return sanitizeName(basename(source.path).replace(TARBALL_RE, ""));
    case "git":
      return sanitizeName(source.ref);
  }
}

/** What a finished build is a build of: a second run compares it (a git source also by commit). */
export function sourceIdentity(source: Source): string {
  switch (source.kind) {
    case "debian":
      return "debian";
    case "dir":
      return `dir:${source.path}`;
    case "tarball":
      return `tarball:${source.path}`;
    case "git":
      return `git:${source.gitDir}@${source.ref}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// configure.

/** What the source tree holds, as far as configure's arguments depend on it. */
export interface TreeFacts {
  /** pc-bios/ lacks its prebuilt blobs (Debian's +ds/+dfsg repack removes them). */
  strippedFirmware: boolean;
  /** subprojects/ holds the wraps' sources (a release tarball); a git tree fetches them at configure. */
  subprojectsVendored: boolean;
}

export interface ConfigureOptions extends TreeFacts {
  /** The compiler command: ["ccache", "cc"] when ccache is installed. */
  cc: readonly string[] | undefined;
  /** The Python configure runs (its venv's base), when not the first python3 on PATH. */
  python?: string;
}

/**
 * configure's arguments: the x86_64 system emulator alone, no UIs, docs or tools; zstd and gnutls on, as
 * the multifd-compression and TLS cases need them (zlib is not optional in QEMU). Warnings do not fail
 * the build: a newer compiler's new warning is no reason to stop a test build.
 */
export function configureArgs(o: ConfigureOptions): string[] {
  const args = [
    "--target-list=x86_64-softmmu",
    "--disable-docs",
    "--disable-tools",
    "--disable-guest-agent",
    "--disable-werror",
    "--disable-gtk",
    "--disable-sdl",
    "--disable-vnc",
    "--disable-spice",
    "--disable-opengl",
    "--disable-curses",
    // No case gives the guest a network: -nodefaults and no -netdev.
    "--disable-slirp",
    "--enable-zstd",
    "--enable-gnutls",
  ];
  // Offline unless the tree must fetch its subprojects (a git tree's wraps).
  if (o.subprojectsVendored) args.push("--disable-download");
  // pc-bios/meson.build would install the blobs the repack removed; the firmware is linked after the build.
  if (o.strippedFirmware) args.push("--disable-install-blobs");
  if (o.cc !== undefined) args.push(`--cc=${o.cc.join(" ")}`);
  if (o.python !== undefined) args.push(`--python=${o.python}`);
  return args;
}

const PC_BIOS_SUBDIR_RE = /^subdir\('pc-bios'\)$/m;

/**
 * The top-level meson.build of a stripped tree without `subdir('pc-bios')` (as Debian's own
 * skip-meson-pc-bios patch does): pc-bios/meson.build names the removed blobs and fails configure. Its
 * `roms` list, which the test folders read, stays defined, empty. Null when the line is not there
 * (already patched, e.g. by Debian's patches).
 */
export function skipPcBiosSubdir(mesonBuild: string): string | null {
  if (!PC_BIOS_SUBDIR_RE.test(mesonBuild)) return null;
  return mesonBuild.replace(
    PC_BIOS_SUBDIR_RE,
    "roms = []  # migtest build.ts: no subdir('pc-bios'), the repacked tree has none of its blobs",
  );
}

/** A Python package configure's venv needs: its name and the lowest version accepted. */
export interface PythonDep {
  name: string;
  min: string | null;
}

/**
 * The packages of the `[meson]` group of pythondeps.toml (what configure installs into its venv from
 * python/wheels/): `meson = { accepted = ">=1.5.0", ... }`, `pycotap = { accepted = ">=1.1.0", ... }`.
 */
export function mesonGroup(pythondeps: string): PythonDep[] {
  const deps: PythonDep[] = [];
  let inGroup = false;
  for (const line of pythondeps.split("\n")) {
    const header = /^\[([^\]]+)\]/.exec(line);
    if (header !== null) {
      inGroup = header[1].trim() === "meson";
      continue;
    }
    const entry = /^([A-Za-z0-9_.-]+)\s*=\s*\{(.*)\}/.exec(line);
    if (!inGroup || entry === null) continue;
    const min = /accepted\s*=\s*"\s*>=\s*([0-9][0-9.]*)\s*"/.exec(entry[2])?.[1] ?? null;
    deps.push({ name: entry[1], min });
  }
  return deps;
}

/** The Debian package of a Python package: meson is "meson", the rest "python3-<name>". */
export function debianPackageOf(pythonPackage: string): string {
  const n = pythonPackage.toLowerCase().replaceAll("_", "-");
  return n === "meson" ? "meson" : `python3-${n}`;
}

// ---------------------------------------------------------------------------------------------------------
// Debian: deb822 sources, versions, apt-cache showsrc.

/** One deb822 stanza: its fields in order; continuation lines stay part of their field's value. */
export interface Stanza {
  fields: { name: string; value: string }[];
}

/** deb822 text as stanzas; comment lines (#) are dropped, as apt ignores them. */
export function parseDeb822(text: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let current: Stanza | null = null;
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      current = null;
      continue;
    }
    if (line.startsWith("#")) continue;
    if (/^[ \t]/.test(line)) {
      const last = current?.fields.at(-1);
      if (last !== undefined) last.value += "\n" + line;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    if (current === null) {
      current = { fields: [] };
      stanzas.push(current);
    }
    current.fields.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
  }
  return stanzas;
}

export function field(s: Stanza, name: string): string | undefined {
  return s.fields.find((f) => f.name.toLowerCase() === name.toLowerCase())?.value;
}

function words(value: string | undefined): string[] {
  return (value ?? "").split(/\s+/).filter((w) => w !== "");
}

function withField(s: Stanza, name: string, value: string): Stanza {
  return {
    fields: s.fields.map((f) => f.name.toLowerCase() === name.toLowerCase() ? { name: f.name, value } : f),
  };
}

export function formatStanza(s: Stanza): string {
  return s.fields.map((f) => `${f.name}: ${f.value}`).join("\n") + "\n";
}

/** The first binary stanza whose Suites names the release itself (not only -updates or -security). */
function releaseStanza(stanzas: Stanza[], codename: string): Stanza | undefined {
  return stanzas.find((s) =>
    words(field(s, "Types")).includes("deb") && words(field(s, "Suites")).includes(codename)
  );
}

/**
 * The deb-src entries for the system's own Debian suites: every binary stanza of the release (its mirror,
 * keyring and components) copied with `Types: deb-src`, plus the release's stanza with
 * `Suites: <codename>-backports` when no stanza names backports already. Null when no stanza names the
 * release.
 */
export function deriveDebSrcEntries(systemSources: string, codename: string): string | null {
  const stanzas = parseDeb822(systemSources);
  const release = releaseStanza(stanzas, codename);
  if (release === undefined) return null;
  const backports = `${codename}-backports`;
  const ofRelease = stanzas.filter((s) =>
    words(field(s, "Types")).includes("deb") &&
    words(field(s, "Suites")).some((w) => w === codename || w.startsWith(`${codename}-`))
  );
  const out = ofRelease.map((s) => withField(s, "Types", "deb-src"));
  if (!ofRelease.some((s) => words(field(s, "Suites")).includes(backports))) {
    out.push(withField(withField(release, "Types", "deb-src"), "Suites", backports));
  }
  return out.map(formatStanza).join("\n");
}

/**
 * The binary <codename>-backports entry exactly as tools/qemu/install-backports.sh derives it (the release's
 * stanza, comments dropped, Suites replaced), so the two tools write the same file.
 */
export function deriveBackportsEntry(systemSources: string, codename: string): string | null {
  const release = releaseStanza(parseDeb822(systemSources), codename);
  return release === undefined ? null : formatStanza(withField(release, "Suites", `${codename}-backports`));
}

/** Debian's order of two version strings ([epoch:]upstream[-revision]): negative, zero or positive. */
export function compareDebianVersions(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(":");
    const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0;
    const rest = colon >= 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf("-");
    return dash >= 0
      ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
      : { epoch, upstream: rest, revision: "" };
  };
  const x = split(a);
  const y = split(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision);
}

// A character's weight in the non-digit runs: '~' before everything (even the end), letters before
// other characters.
function weight(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // The non-digit run, character by character.
    while ((i < a.length && !/\d/.test(a[i])) || (j < b.length && !/\d/.test(b[j]))) {
      const ca = i < a.length && !/\d/.test(a[i]) ? a[i] : undefined;
      const cb = j < b.length && !/\d/.test(b[j]) ? b[j] : undefined;
      const d = weight(ca) - weight(cb);
      if (d !== 0) return d;
      i++;
      j++;
    }
    // The digit run, as a number.
    let na = "";
    let nb = "";
    while (i < a.length && /\d/.test(a[i])) na += a[i++];
    while (j < b.length && /\d/.test(b[j])) nb += b[j++];
    const d = Number(na || "0") - Number(nb || "0");
    if (d !== 0) return d;
  }
  return 0;
}

/** The versions of source package `pkg` in `apt-cache showsrc` output, newest first. */
export function sourceVersions(showsrc: string, pkg: string): string[] {
  const versions = parseDeb822(showsrc)
    .filter((s) => field(s, "Package") === pkg)
    .map((s) => field(s, "Version"))
    .filter((v): v is string => v !== undefined);
  return [...new Set(versions)].sort((a, b) => compareDebianVersions(b, a));
}

/** The upstream part of a Debian version: 1:10.0.2+ds-2+deb13u1~bpo12+1 -> 10.0.2 */
export function upstreamVersion(debianVersion: string): string {
  const noEpoch = debianVersion.replace(/^\d+:/, "");
  const dash = noEpoch.lastIndexOf("-");
  return (dash >= 0 ? noEpoch.slice(0, dash) : noEpoch).replace(/[+~].*$/, "");
}

// ---------------------------------------------------------------------------------------------------------
// Firmware.

/** The blobs an x86 machine may load, and where a stripped tree's build finds them (first match wins). */
export const X86_FIRMWARE = [
  "bios-256k.bin",
  "bios.bin",
  "kvmvapic.bin",
  "linuxboot.bin",
  "linuxboot_dma.bin",
  "multiboot.bin",
  "multiboot_dma.bin",
  "pvh.bin",
  "vgabios.bin",
  "vgabios-stdvga.bin",
  "vgabios-cirrus.bin",
  "vgabios-virtio.bin",
  "vgabios-qxl.bin",
  "vgabios-vmware.bin",
  "vgabios-bochs-display.bin",
  "vgabios-ramfb.bin",
  "efi-e1000.rom",
  "efi-e1000e.rom",
  "efi-virtio.rom",
  "efi-rtl8139.rom",
  "efi-ne2k_pci.rom",
  "efi-pcnet.rom",
  "efi-eepro100.rom",
  "efi-vmxnet3.rom",
];

/** Debian's firmware packages (seabios, ipxe-qemu): the same folders Debian's own QEMU searches. */
export const SYSTEM_FIRMWARE_DIRS = ["/usr/share/seabios", "/usr/lib/ipxe/qemu"];

/** Which blob to link from where: the option ROMs the build made from source first, then the system's. */
export function firmwareLinks(
  wanted: readonly string[],
  present: ReadonlySet<string>,
  candidates: readonly { dir: string; files: ReadonlySet<string> }[],
): { name: string; from: string }[] {
  const links: { name: string; from: string }[] = [];
  for (const name of wanted) {
    if (present.has(name)) continue;
    const c = candidates.find((c) => c.files.has(name));
    if (c !== undefined) links.push({ name, from: join(c.dir, name) });
  }
  return links;
}

/** CONFIG_QEMU_DATADIR from a build's config-host.h. */
export function configuredDataDir(configHost: string): string | null {
  return /^#define CONFIG_QEMU_DATADIR "([^"]+)"$/m.exec(configHost)?.[1] ?? null;
}

// ---------------------------------------------------------------------------------------------------------
// Running commands.

export class BuildError extends Error {}

const TAIL_LINES = 30;

function tail(text: string, n = TAIL_LINES): string {
  const lines = text.replace(/\s+$/, "").split("\n");
  return lines.slice(-n).map((l) => `    ${l}`).join("\n");
}

function shellWords(cmd: readonly string[]): string {
  return cmd.map((w) => /^[A-Za-z0-9_./=:,+@%^-]+$/.test(w) ? w : `'${w.replaceAll("'", "'\\''")}'`).join(
    " ",
  );
}

function log(text: string): void {
  console.error(`qemu-build: ${text}`);
}

interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
}

const IS_ROOT = Deno.uid() === 0;

/** A command that needs root: as is when we are root, else through sudo. */
function asRoot(cmd: readonly string[]): string[] {
  return IS_ROOT ? [...cmd] : ["sudo", ...cmd];
}

/** Runs a command and returns its stdout; a failure names it and shows its last lines. */
async function capture(cmd: readonly string[], opts: RunOptions = {}): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      cwd: opts.cwd,
      env: opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new BuildError(`${shellWords(cmd)} could not start: ${errorMessage(e)}`);
  }
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const both = stdout + new TextDecoder().decode(out.stderr);
    throw new BuildError(
      `${shellWords(cmd)} failed (exit ${out.code})${opts.cwd ? ` in ${opts.cwd}` : ""}; its last lines:\n${
        tail(both)
      }`,
    );
  }
  return stdout;
}

/** Whether a command runs and succeeds (its output discarded). */
async function succeeds(cmd: readonly string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Runs a long command with its output shown on stderr as it comes and kept whole in `logFile`; a failure
 * names the command and shows its last lines and the log.
 */
async function stream(label: string, cmd: readonly string[], logFile: string, opts: RunOptions = {}) {
  log(`${label}: ${shellWords(cmd)}${opts.cwd ? ` (in ${opts.cwd})` : ""}`);
  await Deno.mkdir(dirname(logFile), { recursive: true });
  using logHandle = await Deno.open(logFile, { write: true, create: true, truncate: true });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      cwd: opts.cwd,
      env: opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    throw new BuildError(`${label}: ${shellWords(cmd)} could not start: ${errorMessage(e)}`);
  }
  let recent = "";
  const pump = async (readable: ReadableStream<Uint8Array>) => {
    for await (const chunk of readable) {
      await Deno.stderr.write(chunk);
      await logHandle.write(chunk);
      // Keep enough to show the last lines on failure, not the whole output.
      recent = (recent + new TextDecoder().decode(chunk)).slice(-16384);
    }
  };
  const [status] = await Promise.all([child.status, pump(child.stdout), pump(child.stderr)]);
  if (!status.success) {
    throw new BuildError(
      `${label} failed (exit ${status.code}): ${shellWords(cmd)}${opts.cwd ? ` in ${opts.cwd}` : ""}\n` +
        `  its last lines:\n${tail(recent)}\n  whole output: ${logFile}`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function listDir(path: string): Promise<Set<string>> {
  const names = new Set<string>();
  try {
    for await (const e of Deno.readDir(path)) names.add(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names;
}

const REAL_PROBE: PathProbe = {
  isDir: (p) => {
    try {
      return Deno.statSync(p).isDirectory;
    } catch {
      return false;
    }
  },
  isFile: (p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  },
};

function seconds(since: number): string {
  const s = Math.round((performance.now() - since) / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// ---------------------------------------------------------------------------------------------------------
// Packages.

/** What a minimal x86_64-softmmu build needs from apt (meson apart: see ensurePythonDeps). */
export const BUILD_PACKAGES = [
  "gcc",
  "make",
  "ninja-build",
  "pkgconf",
  "python3",
  "python3-venv",
  "flex",
  "bison",
  "libglib2.0-dev",
  "libpixman-1-dev",
  "zlib1g-dev",
  "libzstd-dev",
  "libgnutls28-dev",
  "ccache",
  "xz-utils",
  "bzip2",
];

export function packagesFor(source: Source): string[] {
  const extra = source.kind === "debian" ? ["dpkg-dev"] : source.kind === "git" ? ["git"] : [];
  return [...BUILD_PACKAGES, ...extra];
}

async function installed(pkg: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("dpkg-query", {
      args: ["-W", "-f=${db:Status-Status}", pkg],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success && new TextDecoder().decode(out.stdout).trim() === "installed";
  } catch {
    return false;
  }
}

let aptUpdated = false;

async function aptUpdate(): Promise<void> {
  if (aptUpdated) return;
  log("apt-get update");
  await capture(asRoot(["apt-get", "update", "-q"]));
  aptUpdated = true;
}

/** Installs the packages not installed yet; without apt (not Debian or Ubuntu) it says so and goes on. */
async function ensurePackages(pkgs: readonly string[], target?: string, upgrade = false): Promise<void> {
  if (!await succeeds(["dpkg-query", "--version"])) {
    log(`no dpkg here: make sure these (or their equivalents) are installed: ${pkgs.join(" ")}`);
    return;
  }
  const missing: string[] = [];
  // upgrade: install even when installed (a release's version that is too old, from backports).
  for (const p of pkgs) if (upgrade || !await installed(p)) missing.push(p);
  if (missing.length === 0) return;
  await aptUpdate();
  const spec = target === undefined ? missing : missing.map((p) => `${p}/${target}`);
  log(`apt-get install ${spec.join(" ")}`);
  await capture(asRoot(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...spec]), {
    env: { DEBIAN_FRONTEND: "noninteractive" },
  });
}

const SYSTEM_SOURCES = "/etc/apt/sources.list.d/debian.sources";
const SOURCES_DIR = "/etc/apt/sources.list.d";

async function codename(): Promise<string> {
  const osRelease = await readText("/etc/os-release") ?? "";
  const name = /^VERSION_CODENAME=(?:"?)([a-z]+)/m.exec(osRelease)?.[1];
  if (name === undefined) throw new BuildError("/etc/os-release names no VERSION_CODENAME: is this Debian?");
  return name;
}

async function systemSources(): Promise<string> {
  const text = await readText(SYSTEM_SOURCES);
  if (text === null) {
    throw new BuildError(
      `${SYSTEM_SOURCES} not found: add deb-src entries for your suites (and <codename>-backports) by hand`,
    );
  }
  return text;
}

/** Writes an apt sources file when its content differs; returns whether it changed. */
async function writeSourcesFile(path: string, content: string): Promise<boolean> {
  if (await readText(path) === content) return false;
  log(`writing ${path} (derived from ${SYSTEM_SOURCES})`);
  if (IS_ROOT) {
    await Deno.writeTextFile(path, content);
  } else {
    const child = new Deno.Command("sudo", { args: ["tee", path], stdin: "piped", stdout: "null" }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(content));
    await w.close();
    if (!(await child.status).success) throw new BuildError(`sudo tee ${path} failed`);
  }
  aptUpdated = false;
  return true;
}

/** The deb-src entries (release suites and backports) under sources.list.d; apt's lists refreshed. */
async function ensureDebSrc(code: string): Promise<void> {
  const entries = deriveDebSrcEntries(await systemSources(), code);
  if (entries === null) throw new BuildError(`no entry for suite '${code}' in ${SYSTEM_SOURCES}`);
  await writeSourcesFile(join(SOURCES_DIR, "migtest-deb-src.sources"), entries);
  await aptUpdate();
}

/** The binary backports entry, as install-backports.sh writes it (kept when it exists already). */
async function ensureBackports(code: string): Promise<void> {
  const path = join(SOURCES_DIR, `migtest-${code}-backports.sources`);
  if (await exists(path)) return;
  const entry = deriveBackportsEntry(await systemSources(), code);
  if (entry === null) throw new BuildError(`no entry for suite '${code}' in ${SYSTEM_SOURCES}`);
  await writeSourcesFile(path, entry);
}

/** The system Python, for which Debian's python3-* packages and meson are installed. */
const SYSTEM_PYTHON = "/usr/bin/python3";

/** The version of a Python package as `python` sees it installed, or null. */
async function pythonPackageVersion(python: string, name: string): Promise<string | null> {
  try {
    const code = `import importlib.metadata as m, sys; print(m.version(sys.argv[1]))`;
    return (await capture([python, "-c", code, name])).trim();
  } catch {
    return null;
  }
}

/**
 * The Python packages of configure's venv, when the tree bundles none. Release tarballs and git trees carry
 * them in python/wheels/; Debian's repack removes them, and bookworm's meson (1.0) is too old for QEMU 10:
 * then they come from apt (meson and python3-pycotap from <codename>-backports where the release's are too
 * old or missing) and configure runs with the system Python they are installed for (a python3 earlier on
 * PATH, e.g. pyenv's, would not see them). Returns the Python to pass to configure, if any.
 */
async function ensurePythonDeps(src: string): Promise<string | undefined> {
  const wheels = await listDir(join(src, "python", "wheels"));
  if ([...wheels].some((w) => w.startsWith("meson-") && w.endsWith(".whl"))) return undefined;
  const deps = mesonGroup(await readText(join(src, "pythondeps.toml")) ?? "");
  if (deps.length === 0) return undefined; // An older QEMU: configure finds the system's meson itself.
  const lacking = async () => {
    const out: { dep: PythonDep; have: string | null }[] = [];
    for (const dep of deps) {
      const have = await pythonPackageVersion(SYSTEM_PYTHON, dep.name);
      if (have === null || (dep.min !== null && compareDebianVersions(have, dep.min) < 0)) {
        out.push({ dep, have });
      }
    }
    return out;
  };
  const missing = await lacking();
  if (missing.length === 0) return SYSTEM_PYTHON;
  const say = missing.map((m) => `${m.dep.name} >= ${m.dep.min ?? "any"} (have ${m.have ?? "none"})`).join(
    ", ",
  );
  log(`the tree bundles no Python wheels; ${SYSTEM_PYTHON} lacks ${say}`);
  if (!await succeeds(["dpkg-query", "--version"])) {
    throw new BuildError(`configure needs ${say} for ${SYSTEM_PYTHON} (the tree bundles none): install them`);
  }
  const pkgs = missing.map((m) => debianPackageOf(m.dep.name));
  // The release's own packages first, backports when those are still too old.
  await ensurePackages(pkgs);
  let still = await lacking();
  if (still.length > 0) {
    const code = await codename();
    await ensureBackports(code);
    await ensurePackages(still.map((m) => debianPackageOf(m.dep.name)), `${code}-backports`, true);
    still = await lacking();
  }
  if (still.length > 0) {
    const left = still.map((m) => `${m.dep.name} ${m.have ?? "(none)"} (needs >= ${m.dep.min})`).join(", ");
    throw new BuildError(`after apt-get install, ${SYSTEM_PYTHON} still lacks ${left}`);
  }
  for (const dep of deps) log(`${dep.name} ${await pythonPackageVersion(SYSTEM_PYTHON, dep.name)} (apt)`);
  return SYSTEM_PYTHON;
}

// ---------------------------------------------------------------------------------------------------------
// Getting the source tree.

interface Prepared {
  /** The tree configure runs from. */
  src: string;
  /** What was built, in words (the stamp and the final lines). */
  detail: string;
  commit?: string;
  /** The tree is ours (extracted under the build folder): it may be patched. */
  owned: boolean;
}

const EXTRACTED = ".migtest-extracted";

async function extractTarball(tarball: string, dest: string): Promise<void> {
  await Deno.remove(dest, { recursive: true }).catch(() => {});
  await Deno.mkdir(dest, { recursive: true });
  log(`unpacking ${tarball}`);
  // Every QEMU tarball has one top folder (qemu-X.Y.Z/).
  await capture(["tar", "-xf", tarball, "-C", dest, "--strip-components=1"]);
  await Deno.writeTextFile(join(dest, EXTRACTED), tarball + "\n");
}

async function prepareTarball(path: string, dir: string): Promise<Prepared> {
  const src = join(dir, "src");
  if ((await readText(join(src, EXTRACTED)))?.trim() !== path) await extractTarball(path, src);
  return { src, detail: `tarball ${path}`, owned: true };
}

async function prepareGit(gitDir: string, ref: string, dir: string): Promise<Prepared> {
  const commit = (await capture(["git", "-C", gitDir, "rev-parse", "--verify", `${ref}^{commit}`])).trim();
  const src = join(dir, "src");
  if ((await readText(join(src, EXTRACTED)))?.trim() !== commit) {
    await Deno.remove(src, { recursive: true }).catch(() => {});
    await Deno.mkdir(src, { recursive: true });
    const tar = join(dir, "src.tar");
    log(`git archive ${commit} from ${gitDir}`);
    await capture(["git", "-C", gitDir, "archive", "--format=tar", "-o", tar, commit]);
    await capture(["tar", "-xf", tar, "-C", src]);
    await Deno.remove(tar);
    // Subprojects a checkout has fetched are untracked, so git archive leaves them out: copied, they
    // spare configure a download (and let it work offline).
    for (const name of await listDir(join(gitDir, "subprojects"))) {
      if (!name.endsWith(".wrap")) continue;
      const sub = name.slice(0, -".wrap".length);
      const from = join(gitDir, "subprojects", sub);
      if (REAL_PROBE.isDir(from) && !await exists(join(src, "subprojects", sub))) {
        await capture(["cp", "-a", from, join(src, "subprojects", sub)]);
      }
    }
    await Deno.writeTextFile(join(src, EXTRACTED), commit + "\n");
  }
  return { src, detail: `git ${gitDir} ${ref} (${commit})`, commit, owned: true };
}

/**
 * Debian's newest QEMU source package. `apt-get source` fetches the .dsc, the orig tarball and the
 * Debian tarball and applies Debian's patches; when the mirror lacks the .dsc or the Debian tarball
 * (it happens: a pool that no longer holds an older backport), the orig tarball alone is built, and the
 * output says so.
 */
async function prepareDebian(dir: string): Promise<Prepared> {
  const code = await codename();
  await ensurePackages(["dpkg-dev"]);
  await ensureDebSrc(code);
  const versions = sourceVersions(await capture(["apt-cache", "showsrc", "qemu"]), "qemu");
  if (versions.length === 0) {
    throw new BuildError("apt-cache showsrc qemu lists no version: deb-src missing?");
  }
  const version = versions[0];
  log(`QEMU source versions offered: ${versions.join(", ")}; taking ${version}`);
  const src = join(dir, "src");
  const marker = (await readText(join(src, EXTRACTED)))?.trim();
  if (marker?.startsWith(version + " ")) {
    return { src, detail: `Debian qemu ${version}${marker.slice(version.length)}`, owned: true };
  }
  const download = join(dir, "download");
  await Deno.remove(download, { recursive: true }).catch(() => {});
  await Deno.mkdir(download, { recursive: true });
  let how: string;
  try {
    log(`apt-get source qemu=${version}`);
    await capture(["apt-get", "source", "-q", `qemu=${version}`], { cwd: download });
    const tree = [...await listDir(download)].find((n) =>
      n.startsWith("qemu-") && REAL_PROBE.isDir(join(download, n))
    );
    if (tree === undefined) throw new BuildError(`apt-get source made no qemu-* folder in ${download}`);
    await Deno.remove(src, { recursive: true }).catch(() => {});
    await Deno.rename(join(download, tree), src);
    how = "(with Debian's patches)";
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    log(`${e.message}\nbuild: falling back to the orig tarball alone (apt-get source --tar-only)`);
    await capture(["apt-get", "source", "-q", "--tar-only", `qemu=${version}`], { cwd: download });
    const orig = [...await listDir(download)].find((n) => /^qemu_.*\.orig\.tar\.(xz|bz2|gz)$/.test(n));
    if (orig === undefined) {
      throw new BuildError(`apt-get source --tar-only left no orig tarball in ${download}`);
    }
    await extractTarball(join(download, orig), src);
    how = "(orig tarball only: the mirror lacks its .dsc/Debian tarball, so no Debian patches)";
  }
  await Deno.writeTextFile(join(src, EXTRACTED), `${version} ${how}\n`);
  return { src, detail: `Debian qemu ${version} ${how}`, owned: true };
}

async function prepare(source: Source, dir: string): Promise<Prepared> {
  switch (source.kind) {
    case "debian":
      return await prepareDebian(dir);
    case "tarball":
      return await prepareTarball(source.path, dir);
    case "git":
      return await prepareGit(source.gitDir, source.ref, dir);
    case "dir":
      return { src: source.path, detail: `tree ${source.path}`, owned: false };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Checking the binary.

async function versionLine(binary: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(binary, { args: ["--version"], stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) return null;
    return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
  } catch {
    return null;
  }
}

/**
 * Starts the binary as the QEMU world does (machine pc, no display, no default devices, stopped), with QMP
 * on stdio: negotiates, asks the run state, quits. Firmware is loaded at machine creation, so a missing
 * BIOS fails here. Returns null when it worked, else what went wrong.
 */
export async function bootCheck(binary: string, dataDirs: readonly string[]): Promise<string | null> {
  const args = [
    ...dataDirs.flatMap((d) => ["-L", d]),
    "-machine",
    "pc",
    "-display",
    "none",
    "-nodefaults",
    "-S",
  ];
  args.push("-qmp", "stdio");
  const child = new Deno.Command(binary, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 30_000);
  try {
    const w = child.stdin.getWriter();
    const cmds = ["qmp_capabilities", "query-status", "quit"].map((c) =>
      JSON.stringify({ execute: c }) + "\n"
    );
    await w.write(new TextEncoder().encode(cmds.join(""))).catch(() => {});
    await w.close().catch(() => {});
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr).trim();
    const cmdline = `${binary} ${shellWords(args)}`;
    if (!out.success) return `${cmdline} exited ${out.code}${stderr ? `:\n${tail(stderr, 10)}` : ""}`;
    if (!/"status":\s*"prelaunch"/.test(stdout)) {
      return `${cmdline}: query-status did not answer prelaunch:\n${tail(stdout, 10)}`;
    }
    if (stderr !== "") log(`the boot check's stderr (warnings):\n${tail(stderr, 10)}`);
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A stripped tree's build has no BIOS or option ROMs in its qemu-bundle (the data folder a build tree
 * searches): links them there from the ROMs the build made from source and from Debian's firmware packages,
 * so the binary needs no -L.
 */
async function linkFirmware(build: string): Promise<string[]> {
  const dataDir = configuredDataDir(await readText(join(build, "config-host.h")) ?? "");
  if (dataDir === null) throw new BuildError(`${build}/config-host.h names no CONFIG_QEMU_DATADIR`);
  // How QEMU relocates its data folder when the binary sits beside a qemu-bundle/ (a build tree).
  const bundleData = join(build, "qemu-bundle", dataDir);
  await Deno.mkdir(bundleData, { recursive: true });
  const candidates = [];
  for (const dir of [join(build, "pc-bios", "optionrom"), ...SYSTEM_FIRMWARE_DIRS]) {
    candidates.push({ dir, files: await listDir(dir) });
  }
  const links = firmwareLinks(X86_FIRMWARE, await listDir(bundleData), candidates);
  for (const l of links) await Deno.symlink(l.from, join(bundleData, l.name));
  return links.map((l) => `${l.name} -> ${l.from}`);
}

// ---------------------------------------------------------------------------------------------------------
// The build.

interface Stamp {
  identity: string;
  status: "building" | "built";
  detail?: string;
  commit?: string;
  binary?: string;
  version?: string;
  /** -L folders the binary needs (none when it finds its firmware itself). */
  dataDirs?: string[];
  buildSeconds?: number;
  finished?: string;
}

function isStamp(v: unknown): v is Stamp {
  return typeof v === "object" && v !== null && "identity" in v && typeof v.identity === "string" &&
    "status" in v && (v.status === "building" || v.status === "built");
}

async function readStamp(path: string): Promise<Stamp | null> {
  const text = await readText(path);
  if (text === null) return null;
  try {
    const v: unknown = JSON.parse(text);
    return isStamp(v) ? v : null;
  } catch {
    return null;
  }
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function buildRoot(name: string): string {
  return join(ROOT, ".cache", "qemu-build", name);
}

function dataDirsNotice(dirs: readonly string[]): string {
  return `the binary needs -L ${dirs.join(" -L ")}: run the matrix with MIGTEST_QEMU_DATADIRS=${
    dirs.join(":")
  }`;
}

async function ccacheCommand(): Promise<string[] | undefined> {
  if (!await succeeds(["ccache", "--version"])) return undefined;
  const cc = Deno.env.get("CC")?.trim() || "cc";
  return ["ccache", ...cc.split(/\s+/)];
}

/** Builds (or finds built) and returns the binary's path. */
export async function build(args: BuildArgs): Promise<string> {
  const source = classifySource(args.source, Deno.cwd(), REAL_PROBE);
  const name = args.name ?? defaultName(source);
  const dir = buildRoot(name);
  const buildDir = join(dir, "build");
  const binary = join(buildDir, "qemu-system-x86_64");
  const stampPath = join(dir, "source.json");
  const identity = sourceIdentity(source);
  const stamp = await readStamp(stampPath);

  if (stamp !== null && stamp.identity !== identity) {
    throw new BuildError(
      `${dir} holds a build of ${stamp.identity}, not ${identity}: pass another --name, or remove that folder`,
    );
  }
  if (stamp?.status === "built") {
    // A git ref that moved is built again (incrementally); anything else is done.
    const moved = source.kind === "git" &&
      (await capture(["git", "-C", source.gitDir, "rev-parse", "--verify", `${source.ref}^{commit}`]))
          .trim() !==
        stamp.commit;
    if (!moved) {
      const v = await versionLine(binary);
      if (v !== null) {
        log(`already built (${stamp.detail ?? identity}): ${v}`);
        if (stamp.dataDirs !== undefined && stamp.dataDirs.length > 0) log(dataDirsNotice(stamp.dataDirs));
        return binary;
      }
      log(`${binary} no longer runs --version: building again`);
    } else {
      log(`${source.ref} moved since the last build: building again`);
    }
  }

  const started = performance.now();
  await Deno.mkdir(dir, { recursive: true });
  const writeStamp = (s: Stamp) => Deno.writeTextFile(stampPath, JSON.stringify(s, null, 2) + "\n");
  await writeStamp({ identity, status: "building" });

  await ensurePackages(packagesFor(source));
  const prepared = await prepare(source, dir);
  log(`source: ${prepared.detail}`);
  const { src } = prepared;

  const facts: TreeFacts = {
    strippedFirmware: !REAL_PROBE.isFile(join(src, "pc-bios", "bios-256k.bin")),
    subprojectsVendored: REAL_PROBE.isDir(join(src, "subprojects", "keycodemapdb")),
  };
  if (facts.strippedFirmware) {
    const mesonBuild = join(src, "meson.build");
    const patched = skipPcBiosSubdir(await Deno.readTextFile(mesonBuild));
    if (patched !== null) {
      if (!prepared.owned) {
        throw new BuildError(
          `${src} has no firmware blobs (a Debian-style repack) and its meson.build still enters pc-bios/, ` +
            `which fails configure: build it from its tarball or 'debian' instead, or comment out ` +
            `subdir('pc-bios') in ${mesonBuild}`,
        );
      }
      log(
        `${src} has no firmware blobs (repacked): skipping subdir('pc-bios') in meson.build, as Debian does`,
      );
      await Deno.writeTextFile(mesonBuild, patched);
    }
  }
  const python = await ensurePythonDeps(src);

  const cc = await ccacheCommand();
  log(cc === undefined ? "ccache not found: compiling without it" : `compiler: ${cc.join(" ")}`);
  const logs = join(dir, "logs");
  // configure once; after that make re-runs meson itself when the build files change.
  if (!await exists(join(buildDir, "build.ninja"))) {
    await Deno.remove(buildDir, { recursive: true }).catch(() => {});
    await Deno.mkdir(buildDir, { recursive: true });
    await stream(
      "configure",
      [join(src, "configure"), ...configureArgs({ ...facts, cc, python })],
      join(logs, "configure.log"),
      { cwd: buildDir },
    );
  }
  const compileStarted = performance.now();
  await stream("make", ["make", `-j${args.jobs}`], join(logs, "make.log"), { cwd: buildDir });
  log(`make took ${seconds(compileStarted)}`);

  const version = await versionLine(binary);
  if (version === null) throw new BuildError(`${binary} was built but does not run --version`);
  log(`built: ${version}`);

  let dataDirs: string[] = [];
  let problem = await bootCheck(binary, []);
  if (problem !== null && facts.strippedFirmware) {
    log(`without firmware it does not start:\n${problem}`);
    const links = await linkFirmware(buildDir);
    log(`linked into the build's qemu-bundle: ${links.length === 0 ? "nothing found" : links.join(", ")}`);
    problem = await bootCheck(binary, []);
  }
  if (problem !== null) {
    log(`it does not start by itself:\n${problem}`);
    // Last resort: the system's firmware folders by -L (the binary stays usable, with a setting).
    const dirs = [...SYSTEM_FIRMWARE_DIRS, "/usr/share/qemu"].filter((d) => REAL_PROBE.isDir(d));
    if (dirs.length > 0 && await bootCheck(binary, dirs) === null) {
      dataDirs = dirs;
      log(dataDirsNotice(dirs));
    } else {
      throw new BuildError(`${binary} does not start:\n${problem}`);
    }
  }
  log(`boot check passed: -machine pc -display none -nodefaults -S, QMP query-status and quit`);
  const buildSeconds = Math.round((performance.now() - started) / 1000);
  await writeStamp({
    identity,
    status: "built",
    detail: prepared.detail,
    commit: prepared.commit,
    binary,
    version,
    dataDirs,
    buildSeconds,
    finished: new Date().toISOString(),
  });
  log(`done in ${seconds(started)}: ${prepared.detail}`);
  return binary;
}

export async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseBuildArgs(argv, navigator.hardwareConcurrency);
  if ("status" in parsed) return parsed.status;
  try {
    const binary = await build(parsed.args);
    if (!isAbsolute(binary)) throw new BuildError(`internal: ${binary} is not absolute`);
    console.log(binary);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`qemu-build: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof BuildError) {
      console.error(`qemu-build: FAILED: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
