/** The pure parts of tools/qemu/build.ts: no network, no apt, no compiler. */
import assert from "node:assert/strict";
import { UsageError } from "../../engine/cli.ts";
import {
  classifySource,
  compareDebianVersions,
  configureArgs,
  configuredDataDir,
  debianPackageOf,
  defaultName,
  deriveBackportsEntry,
  deriveDebSrcEntries,
  firmwareLinks,
  mesonGroup,
  packagesFor,
  parseBuildArgs,
  parseDeb822,
  type PathProbe,
  skipPcBiosSubdir,
  sourceIdentity,
  sourceVersions,
  upstreamVersion,
} from "./build.ts";

function parse(argv: string[], cpus = 2) {
  const out: string[] = [];
  const err: string[] = [];
  const r = parseBuildArgs(argv, cpus, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { r, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("arguments: SOURCE, --name, --jobs (default: the CPUs)", () => {
  assert.deepEqual(parse(["debian"]).r, { args: { source: "debian", name: undefined, jobs: 2 } });
  assert.deepEqual(parse(["./q", "--name", "master", "--jobs", "1"], 8).r, {
    args: { source: "./q", name: "master", jobs: 1 },
  });
  assert.deepEqual(parse(["--jobs=3", "x.tar.xz"]).r, {
    args: { source: "x.tar.xz", name: undefined, jobs: 3 },
  });
  // A machine that reports no CPUs still builds with one job.
  assert.deepEqual(parse(["debian"], 0).r, { args: { source: "debian", name: undefined, jobs: 1 } });
});

Deno.test("arguments: each mistake is one line and the usage, exit 2; --help exits 0", () => {
  for (
    const [argv, says] of [
      [[], "qemu-build: SOURCE is missing"],
      [["a", "b"], "qemu-build: one SOURCE only, got 2"],
      [["debian", "--jobs", "0"], "qemu-build: --jobs must be a positive integer, got '0'"],
      [["debian", "--jobs", "-1"], "qemu-build: --jobs must be a positive integer, got '-1'"],
      [["debian", "--name", "../x"], "qemu-build: --name must be letters"],
      [["debian", "--name=-x"], "qemu-build: --name must be letters"],
      [["debian", "--frob"], "qemu-build: Unknown option '--frob'"],
    ] as const
  ) {
    const { r, err } = parse([...argv]);
    assert.deepEqual(r, { status: 2 }, argv.join(" "));
    assert(err.startsWith(says), `${argv.join(" ")}: ${err.split("\n")[0]}`);
    assert(err.includes("usage: deno task qemu-build SOURCE"));
  }
  const help = parse(["--help"]);
  assert.deepEqual(help.r, { status: 0 });
  assert(help.out.includes("GITDIR@REF"));
});

/** A file system of a few paths: folders end with '/'. */
function fakeFs(paths: string[]): PathProbe {
  const dirs = new Set(paths.filter((p) => p.endsWith("/")).map((p) => p.slice(0, -1)));
  const files = new Set(paths.filter((p) => !p.endsWith("/")));
  return { isDir: (p) => dirs.has(p), isFile: (p) => files.has(p) };
}

const FS = fakeFs([
  "/w/qemu/",
  "/w/qemu/configure",
  "/w/qemu/.git/",
  "/w/notqemu/",
  "/w/wt/",
  "/w/wt/.git",
  "/w/bare.git/",
  "/w/bare.git/HEAD",
  "/w/bare.git/objects/",
  "/w/dl/qemu-10.0.2.tar.xz",
  "/w/dl/qemu-9.2.0.tar.bz2",
  "/w/dl/notes.txt",
  "/w/odd@name/",
  "/w/odd@name/configure",
]);

Deno.test("SOURCE: the word debian, a tree, a tarball, GITDIR@REF", () => {
  assert.deepEqual(classifySource("debian", "/w", FS), { kind: "debian" });
  assert.deepEqual(classifySource("qemu", "/w", FS), { kind: "dir", path: "/w/qemu" });
  assert.deepEqual(classifySource("/w/qemu/", "/", FS), { kind: "dir", path: "/w/qemu" });
  assert.deepEqual(classifySource("dl/qemu-10.0.2.tar.xz", "/w", FS), {
    kind: "tarball",
    path: "/w/dl/qemu-10.0.2.tar.xz",
  });
  assert.deepEqual(classifySource("qemu@v10.0.0", "/w", FS), {
    kind: "git",
    gitDir: "/w/qemu",
    ref: "v10.0.0",
  });
  assert.deepEqual(classifySource("../wt@HEAD~3", "/w/qemu", FS), {
    kind: "git",
    gitDir: "/w/wt",
    ref: "HEAD~3",
  });
  assert.deepEqual(classifySource("bare.git@stable-10.0", "/w", FS), {
    kind: "git",
    gitDir: "/w/bare.git",
    ref: "stable-10.0",
  });
  // An existing folder whose name has '@' is a folder; a ref may contain '@' too.
  assert.deepEqual(classifySource("odd@name", "/w", FS), { kind: "dir", path: "/w/odd@name" });
  assert.deepEqual(classifySource("qemu@HEAD@{1}", "/w", FS), {
    kind: "git",
    gitDir: "/w/qemu",
    ref: "HEAD@{1}",
  });
});

Deno.test("SOURCE: what names nothing says why", () => {
  for (
    const [text, says] of [
      ["notqemu", "/w/notqemu has no configure: not a QEMU source tree"],
      ["dl/notes.txt", "/w/dl/notes.txt is not a .tar.xz, .tar.bz2 or .tar.gz tarball"],
      ["missing", "/w/missing: no such file or folder"],
      ["qemu@", "qemu@: no REF after '@'"],
      ["nowhere@master", "/w/nowhere: no such folder (GITDIR@REF)"],
      ["notqemu@master", "/w/notqemu is not a git repository (GITDIR@REF)"],
    ] as const
  ) {
    assert.throws(() => classifySource(text, "/w", FS), (e) => {
      assert(e instanceof UsageError, text);
      assert(e.message.startsWith(says), `${text}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("SOURCE: default names and identities", () => {
  assert.deepEqual(defaultName({ kind: "debian" }), "debian");
  assert.deepEqual(defaultName({ kind: "dir", path: "/w/qemu-src" }), "qemu-src");
  assert.deepEqual(defaultName({ kind: "tarball", path: "/d/qemu-10.0.2.tar.xz" }), "qemu-10.0.2");
  assert.deepEqual(defaultName({ kind: "tarball", path: "/d/qemu-9.2.0.tgz" }), "qemu-9.2.0");
  assert.deepEqual(defaultName({ kind: "git", gitDir: "/w/qemu", ref: "master" }), "master");
  assert.deepEqual(
    defaultName({ kind: "git", gitDir: "/w/qemu", ref: "origin/stable-10.0" }),
    "origin-stable-10.0",
  );
  assert.deepEqual(defaultName({ kind: "git", gitDir: "/w/qemu", ref: "HEAD~3" }), "HEAD-3");
  assert.deepEqual(defaultName({ kind: "git", gitDir: "/w/qemu", ref: "@{u}" }), "u-");
  assert.deepEqual(sourceIdentity({ kind: "git", gitDir: "/w/qemu", ref: "master" }), "git:/w/qemu@master");
  assert.deepEqual(sourceIdentity({ kind: "debian" }), "debian");
  assert.deepEqual(sourceIdentity({ kind: "dir", path: "/w/q" }), "dir:/w/q");
});

Deno.test("configure: x86_64-softmmu, no UIs or docs, zstd and gnutls on, the tree's conditions", () => {
  const release = configureArgs({ strippedFirmware: false, subprojectsVendored: true, cc: ["ccache", "cc"] });
  assert.deepEqual(release[0], "--target-list=x86_64-softmmu");
  for (
    const a of [
      "--disable-docs",
      "--disable-tools",
      "--disable-gtk",
      "--disable-sdl",
      "--disable-vnc",
      "--disable-spice",
      "--disable-opengl",
      "--disable-werror",
      "--enable-zstd",
      "--enable-gnutls",
      "--disable-download",
      "--cc=ccache cc",
    ]
  ) assert(release.includes(a), a);
  assert(!release.includes("--disable-install-blobs"));
  assert(!release.some((a) => a.startsWith("--python")));
  // Nothing that would switch off what the migration cases use.
  for (const off of ["--disable-zstd", "--disable-gnutls", "--disable-replication", "--disable-kvm"]) {
    assert(!release.includes(off), off);
  }

  const git = configureArgs({ strippedFirmware: false, subprojectsVendored: false, cc: undefined });
  assert(!git.includes("--disable-download"), "a git tree fetches its wraps");
  assert(!git.some((a) => a.startsWith("--cc=")));

  const debian = configureArgs({
    strippedFirmware: true,
    subprojectsVendored: true,
    cc: ["ccache", "gcc"],
    python: "/usr/bin/python3",
  });
  assert(debian.includes("--disable-install-blobs"));
  assert(debian.includes("--python=/usr/bin/python3"));
  assert(debian.includes("--cc=ccache gcc"));
  assert.deepEqual(new Set(debian).size, debian.length, "no argument twice");
});

Deno.test("a repacked tree's meson.build skips pc-bios/ but keeps roms defined; once", () => {
  const text = "subdir('tools')\nsubdir('pc-bios')\nsubdir('docs')\n";
  const patched = skipPcBiosSubdir(text) ?? "(not patched)";
  assert(!/^subdir\('pc-bios'\)$/m.test(patched));
  assert(/^roms = \[\]/m.test(patched));
  assert(patched.startsWith("subdir('tools')\n") && patched.endsWith("\nsubdir('docs')\n"));
  assert.equal(skipPcBiosSubdir(patched), null);
  assert.equal(skipPcBiosSubdir("#subdir('pc-bios')\n"), null, "Debian's patch applied already");
});

Deno.test("pythondeps.toml: the [meson] group's packages and lowest versions", () => {
  const toml = `# comment
[meson]
# The install key should match the version in python/wheels/
meson = { accepted = ">=1.5.0", installed = "1.5.0", canary = "meson" }
pycotap = { accepted = ">=1.1.0", installed = "1.3.1" }

[docs]
sphinx = { accepted = ">=3.4.3", installed = "5.3.0", canary = "sphinx-build" }
`;
  assert.deepEqual(mesonGroup(toml), [{ name: "meson", min: "1.5.0" }, { name: "pycotap", min: "1.1.0" }]);
  assert.deepEqual(mesonGroup('[docs]\nsphinx = { accepted = ">=3" }\n'), []);
  assert.deepEqual(debianPackageOf("meson"), "meson");
  assert.deepEqual(debianPackageOf("pycotap"), "python3-pycotap");
  assert.deepEqual(debianPackageOf("sphinx_rtd_theme"), "python3-sphinx-rtd-theme");
});

Deno.test("packages: the build's, plus dpkg-dev for debian and git for a ref", () => {
  for (
    const p of ["ninja-build", "libglib2.0-dev", "libpixman-1-dev", "libzstd-dev", "flex", "bison", "ccache"]
  ) {
    assert(packagesFor({ kind: "dir", path: "/q" }).includes(p), p);
  }
  assert(packagesFor({ kind: "debian" }).includes("dpkg-dev"));
  assert(packagesFor({ kind: "git", gitDir: "/q", ref: "m" }).includes("git"));
  assert(!packagesFor({ kind: "tarball", path: "/q.tar.xz" }).includes("git"));
});

// The system's own file on a Debian 12 image (a comment line inside a stanza, as the image writes it).
const DEBIAN_SOURCES = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

Deno.test("deb822: stanzas, comments dropped, continuation lines kept", () => {
  const s = parseDeb822("A: 1\n# c\nB: two\n words\n\n\nC: 3\n");
  assert.deepEqual(s, [
    { fields: [{ name: "A", value: "1" }, { name: "B", value: "two\n words" }] },
    { fields: [{ name: "C", value: "3" }] },
  ]);
});

Deno.test("deb-src entries: every suite of the release as deb-src, plus backports", () => {
  const out = deriveDebSrcEntries(DEBIAN_SOURCES, "bookworm");
  assert.deepEqual(
    out,
    `Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`,
  );
  // A system that lists backports already gets no second backports stanza.
  const withBackports = DEBIAN_SOURCES.replace("bookworm bookworm-updates", "bookworm bookworm-backports");
  assert.deepEqual(deriveDebSrcEntries(withBackports, "bookworm")?.match(/bookworm-backports/g)?.length, 1);
  // Another release's entries, or deb-src ones, are not copied.
  assert.equal(deriveDebSrcEntries(DEBIAN_SOURCES, "trixie"), null);
  assert.equal(
    deriveDebSrcEntries(DEBIAN_SOURCES.replaceAll("Types: deb", "Types: deb-src"), "bookworm"),
    null,
  );
});

Deno.test("backports entry: the same text tools/qemu/install-backports.sh writes", () => {
  assert.deepEqual(
    deriveBackportsEntry(DEBIAN_SOURCES, "bookworm"),
    `Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`,
  );
  assert.equal(deriveBackportsEntry("", "bookworm"), null);
});

Deno.test("Debian versions: epochs, revisions, ~ before everything, letters before other characters", () => {
  const ordered = [
    "1.0~rc1",
    "1.0",
    "1.0-1",
    "1.0a",
    "1.0+b1",
    "1.2",
    "1.10",
    "7.2+dfsg-7+deb12u15",
    "7.2+dfsg-7+deb12u18",
    "10.0.2+ds-2+deb13u1~bpo12+1",
    "10.0.2+ds-2+deb13u1",
    "1:7.2+dfsg-7",
    "1:10.0.2+ds-2+deb13u1~bpo12+1",
  ];
  for (let i = 0; i < ordered.length; i++) {
    for (let j = 0; j < ordered.length; j++) {
      const c = Math.sign(compareDebianVersions(ordered[i], ordered[j]));
      assert.deepEqual(c, Math.sign(i - j), `${ordered[i]} vs ${ordered[j]}`);
    }
  }
  assert.deepEqual(compareDebianVersions("1.7.0", "1.5.0") > 0, true, "meson versions compare too");
  assert.deepEqual(compareDebianVersions("1.0.1", "1.5.0") < 0, true);
  assert.deepEqual(compareDebianVersions("01.0", "1.0"), 0);
});

Deno.test("apt-cache showsrc: the package's versions, newest first; upstream part", () => {
  const showsrc = `Package: qemu
Binary: qemu-system, qemu-utils
Version: 1:7.2+dfsg-7+deb12u18
Build-Depends: debhelper-compat (= 13),
 ninja-build

Package: qemu
Version: 1:10.0.2+ds-2+deb13u1~bpo12+1

Package: qemu-web
Version: 9:99

Package: qemu
Version: 1:7.2+dfsg-7+deb12u15

Package: qemu
Version: 1:7.2+dfsg-7+deb12u18
`;
  assert.deepEqual(sourceVersions(showsrc, "qemu"), [
    "1:10.0.2+ds-2+deb13u1~bpo12+1",
    "1:7.2+dfsg-7+deb12u18",
    "1:7.2+dfsg-7+deb12u15",
  ]);
  assert.deepEqual(sourceVersions("", "qemu"), []);
  assert.deepEqual(upstreamVersion("1:10.0.2+ds-2+deb13u1~bpo12+1"), "10.0.2");
  assert.deepEqual(upstreamVersion("1:7.2+dfsg-7+deb12u18"), "7.2");
  assert.deepEqual(upstreamVersion("9.2.0"), "9.2.0");
});

Deno.test("firmware: the build's own ROMs first, then the system's; present ones left alone", () => {
  const links = firmwareLinks(
    ["bios-256k.bin", "kvmvapic.bin", "linuxboot_dma.bin", "efi-e1000.rom", "vgabios-qxl.bin"],
    new Set(["linuxboot_dma.bin"]),
    [
      { dir: "/b/pc-bios/optionrom", files: new Set(["kvmvapic.bin", "linuxboot_dma.bin", "Makefile"]) },
      { dir: "/usr/share/seabios", files: new Set(["bios-256k.bin", "kvmvapic.bin"]) },
      { dir: "/usr/lib/ipxe/qemu", files: new Set(["efi-e1000.rom"]) },
    ],
  );
  assert.deepEqual(links, [
    { name: "bios-256k.bin", from: "/usr/share/seabios/bios-256k.bin" },
    { name: "kvmvapic.bin", from: "/b/pc-bios/optionrom/kvmvapic.bin" },
    { name: "efi-e1000.rom", from: "/usr/lib/ipxe/qemu/efi-e1000.rom" },
  ]);
  assert.deepEqual(
    configuredDataDir(
      '#define CONFIG_QEMU_CONFDIR "/usr/local/etc/qemu"\n#define CONFIG_QEMU_DATADIR "/usr/local/share/qemu"\n',
    ),
    "/usr/local/share/qemu",
  );
  assert.equal(configuredDataDir(""), null);
});
