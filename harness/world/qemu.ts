/**
 * The QEMU world: each side is a real qemu-system-x86_64 (MIGTEST_BACKEND=qemu, or
 * `deno task matrix --backend qemu`; the binary from QTEST_QEMU_BINARY[_SRC|_DST] as upstream, else
 * qemu-system-x86_64 on PATH). Memory is read the way upstream reads it (qtest, pmemsave), so the checks
 * that serve the model serve QEMU too.
 */
import { pageDigests } from "../../engine/testing/ram_digest.ts";
import { type RamSource, withoutPages } from "../check/ram_equal.ts";
import type { AnyCase } from "../case.ts";
import { knownQemuBug } from "./qemu_bugs.ts";
import {
  compareVersions,
  describeProbe,
  parseVersion,
  PROBE_LEVEL,
  probeQemu,
  type QemuProbe,
} from "./qemu_probe.ts";
import { ProcessSide } from "./process_side.ts";
import { QEMU_UNCOMPARED_FIELDS, readDeviceState } from "./qemu_devices.ts";
import { qemuBinary, QemuProcess } from "./qemu_process.ts";
import { rdmaAddress } from "./rdma.ts";
import { waitFor } from "../../engine/wait.ts";
import {
  describePanic,
  PARAMS_GPA,
  PARAMS_SIZE,
  PROGRAM_BASE,
  programImage,
  type ProgramParams,
  programParams,
  programState,
  qemuRamBytes,
  WORKLOAD_IMAGE,
} from "./guest_program.ts";
import type {
  Breakpoints,
  CaseNeeds,
  DeviceState,
  KnownBug,
  QemuNeed,
  Side,
  SideSpec,
  Unavailable,
  World,
} from "./world.ts";

/** Guest RAM of QEMU's pc machine as upstream sizes it. */
export const QEMU_RAM_MIB = 150;

/**
 * The guest RAM QEMU runs a machine fixture with (KiB): upstream's 150 MiB for pc; for another fixture
 * its pc.ram (QEMU's own blocks stand for the fixture's others: QEMU has its ROMs and video RAM).
 */
export function qemuRamKiB(machine: string): number {
  return machine === "pc" ? QEMU_RAM_MIB * 1024 : qemuRamBytes(machine) / 1024;
}

/** Faults whose place is a record only the model's source writes, as a skip says them. */
const MODEL_RECORDS: Record<string, string> = {
  "unknown-section": "a section for a device the destination does not have",
  "newer-device-version": "a device section of a newer version than the destination's",
  "newer-subsection-version": "a subsection of a newer version than the destination's",
  "device-extra-field": "a device section with a field its description lacks",
  "xbzrle-overrun": "an XBZRLE delta that runs past its page",
  "multifd-missing-channel": "a multifd source that opens one channel fewer than it announced",
};

/**
 * What only the model offers (the same on every QEMU): the case is skipped with this reason, or null.
 * The family says what of the model its case uses (`needs`); the base fields are read here.
 */
export function modelOnlyReason(c: AnyCase, needs: CaseNeeds): string | null {
  if (needs.heldAt && !needs.heldOnWire) {
    return `${needs.heldAt} needs the side held at that moment: breakpoints are the model's (x-test-breakpoint)`;
  }
  if (needs.modelCounters) return `${needs.modelCounters}: counters only the model keeps (x-test)`;
  if (needs.scheduled) return `${needs.scheduled}: an interleaving only the simulated world schedules`;
  // A regression case runs plainly (its `guards` defect is switched on only by the model's meta-test):
  // on QEMU it asks whether QEMU has the bug class the model once had.
  const kinds = needs.faults ?? [];
  if (kinds.length) {
    return kinds.map((k) => MODEL_RECORDS[k] ?? `the model's ${k} fault`).join("; ") +
      ": only the model's source writes it (x-test-inject-fault); no byte of QEMU's stream turns into it " +
      "on the wire";
  }
  if (c.defects) return "known defects are switched on in the model only (x-test)";

  if (needs.olderRelease) {
    return "older releases of the devices are the model's (x-test-release); against QEMU, " +
      "QTEST_QEMU_BINARY_SRC/_DST name an older binary";
  }
  if (c.workload && c.workload.kind !== "a-b") {
    const program = programParams(c.workload, qemuRamKiB(c.machine ?? "pc") * 1024);
    if ("none" in program) return `the ${c.workload.kind} guest program cannot run here: ${program.none}`;
  }
  if (c.vcpu || c.dstVcpu) {
    return "a vCPU duty cycle (run, then sleep, in ms) is the model's vCPU knob: the guest programs never pause";
  }
  if (needs.guestControl || c.memPrealloc) return "guest-control knobs of the model engine";
  return null;
}

/**
 * Measured on this project's machine, itself a guest ('hypervisor' in /proc/cpuinfo), with QEMU 7.2 and
 * 10.0: under its nested KVM a vCPU with a dirty ring stops dead once dirty logging starts (the a-b
 * guest, 12 passes a second before, did not advance its byte at 4 MiB in 16 s of a 3 MB/s migration),
 * so no dirty-ring migration can converge there. Whether the nested kernel or QEMU's ring-full handling
 * is at fault is not settled; on bare metal the cases run.
 */
const DIRTY_RING_NESTED =
  "needs KVM's dirty ring on bare metal: this host is itself a guest ('hypervisor' in " +
  "/proc/cpuinfo), and under its nested KVM a vCPU with a dirty ring stops once dirty logging starts " +
  "(measured with both Debian builds this project runs)";

let nested: boolean | undefined;
function nestedHost(): boolean {
  if (nested === undefined) {
    // Deno reads /proc only with every permission: grep reads it.
    try {
      nested = new Deno.Command("grep", { args: ["-qw", "hypervisor", "/proc/cpuinfo"], stderr: "null" })
        .outputSync().success;
    } catch {
      nested = false;
    }
  }
  return nested;
}

/** Where upstream QEMU gained a feature a case needs: said next to what a binary lacks, as a hint. */
const SINCE: Record<string, string> = {
  file: "8.2",
  channels: "8.2",
  "zero-page-detection": "9.0",
  "mapped-ram": "9.0",
  "postcopy-recover-setup": "9.1",
};

const LEVEL_PARAMS = new Set(["multifd-zlib-level", "multifd-zstd-level"]);

/**
 * What the case needs of the two binaries beyond what every QEMU that migrates has (migrate,
 * migrate-incoming, the `events` capability): what its family declares, then its capabilities and
 * parameters.
 */
export function qemuNeeds(c: AnyCase, family: CaseNeeds): QemuNeed[] {
  const needs: QemuNeed[] = [...(family.qemu ?? [])];
  const sides = [
    { side: "src" as const, caps: [...(c.caps ?? []), ...(c.srcCaps ?? [])], params: c.srcParams ?? {} },
    { side: "dst" as const, caps: [...(c.caps ?? []), ...(c.dstCaps ?? [])], params: c.dstParams ?? {} },
  ];
  for (const { side, caps, params } of sides) {
    const all = new Set([
      ...caps,
      ...needs.flatMap((n) => n.side === side && n.kind === "capability" ? [n.name] : []),
    ]);
    for (const name of new Set(caps)) needs.push({ side, kind: "capability", name });
    if (all.size > 1) needs.push({ side, kind: "capability-set", name: [...all].join("+") });
    for (const [name, value] of Object.entries(params)) {
      needs.push({ side, kind: "parameter", name });
      if (name === "multifd-compression" && typeof value === "string") {
        needs.push({ side, kind: "compression", name: value });
      }
      if (LEVEL_PARAMS.has(name)) needs.push({ side, kind: "applies-level", name, value });
    }
  }
  return needs;
}

function describeNeed(n: QemuNeed): string {
  const since = SINCE[n.name] ? ` (upstream QEMU ${SINCE[n.name]} on)` : "";
  switch (n.kind) {
    case "transport":
      return `the ${n.name}: migration transport${since}`;
    case "migrate-arg":
      return `the '${n.name}' argument of migrate${since}`;
    case "capability":
      return `migration capability '${n.name}'${since}`;
    case "parameter":
      return `migration parameter '${n.name}'${since}`;
    case "compression":
      return `multifd-compression '${n.name}' (a build option)`;
    case "applies-level":
      return `${n.name} ${n.value} applied`;
    case "status":
      return `migration status '${n.name}'${since}`;
    case "capability-set":
      return `capabilities ${n.name.split("+").join(" with ")}`;
  }
}

/** Why `p` does not meet the need (what it lacks, in its own terms), or null. */
function unmet(n: QemuNeed, p: QemuProbe): string | null {
  switch (n.kind) {
    case "transport":
      return p.transports.includes(n.name) ? null : `has no ${n.name}: transport`;
    case "migrate-arg":
      return p.migrateArgs.includes(n.name) ? null : `has no '${n.name}' argument on migrate`;
    case "capability":
      return p.capabilities.includes(n.name) ? null : `has no capability '${n.name}'`;
    case "parameter":
      return p.parameters.includes(n.name) ? null : `has no parameter '${n.name}'`;
    case "compression":
      return p.multifdCompressions.includes(n.name) ? null : `was built without ${n.name}`;
    case "applies-level":
      // Found by this harness on QEMU 7.2: it accepts these levels and reads back 1 every time.
      if (p.appliedLevels.includes(n.name)) return null;
      if (!(n.name in p.levelReadBack)) return `has no parameter '${n.name}'`;
      if (p.levelReadBack[n.name] === n.value) return null;
      return `accepts ${n.name} but does not apply it (set to ${PROBE_LEVEL}, it reads back ` +
        `${p.levelReadBack[n.name]})`;
    case "status":
      return p.statuses.includes(n.name) ? null : `has no migration status '${n.name}'`;
    case "capability-set": {
      const names = n.name.split("+");
      for (const [set, error] of Object.entries(p.refusedCapabilitySets)) {
        if (set.split("+").every((c) => names.includes(c))) {
          return `refuses ${set.split("+").join(" with ")}: ${error}`;
        }
      }
      return null;
    }
  }
}

/** What the QEMU world learnt in prepare(): both binaries' probes, the accelerators and the machine. */
export interface QemuSetup {
  src: QemuProbe;
  dst: QemuProbe;
  /** MIGTEST_QEMU_ACCEL, in order of preference. */
  accel: string[];
  /**
   * The accelerators for COLO, in order of preference: MIGTEST_QEMU_ACCEL when set, else KVM first,
   * as upstream, because under TCG QEMU 7.2's primary deadlocks after the first checkpoint (the
   * default TCG is for this machine's speed, not a need). Absent: the same as `accel`.
   */
  coloAccel?: string[];
  /** The -machine both sides use, or why there is none. */
  machine: string | { none: string };
  /** Whether this host is itself a guest (its KVM nested); absent: read from /proc/cpuinfo. */
  nestedHost?: boolean;
}

function sideName(side: "src" | "dst", setup: QemuSetup): string {
  const p = setup[side];
  if (setup.src.binary === setup.dst.binary) return describeProbe(p);
  return `the ${side === "src" ? "source" : "destination"}'s ${describeProbe(p)}`;
}

/**
 * Why a case cannot run with these binaries (it is then reported as skipped with this reason), or null.
 * Every reason names what is missing and the probed binary; `setup` null (the world not prepared) skips
 * whatever needs more than every QEMU has, saying the binaries were not probed.
 */
export function qemuCannotRun(c: AnyCase, family: CaseNeeds, setup: QemuSetup | null): string | null {
  const modelOnly = modelOnlyReason(c, family);
  if (modelOnly) return modelOnly;
  const needs = qemuNeeds(c, family);
  return qemuSidesCannotRun(c, family, setup, needs, ["src", "dst"]);
}

/**
 * Why the QEMU binaries of `sides` cannot run what the case needs of them (the model-only hooks aside),
 * or null: the part of qemuCannotRun a pair with the model on its other side shares.
 */
export function qemuSidesCannotRun(
  c: AnyCase,
  family: CaseNeeds,
  setup: QemuSetup | null,
  allNeeds: QemuNeed[],
  sides: readonly ("src" | "dst")[],
): string | null {
  const needs = allNeeds.filter((n) => sides.includes(n.side));
  if (!setup) {
    if (!needs.length) return null;
    return `needs ${[...new Set(needs.map(describeNeed))].join(", ")}: the QEMU binaries were not probed ` +
      "(the world was not prepared)";
  }
  if (family.rdmaLink) {
    const r = rdmaAddress(family.rdmaLink === "IPv6");
    if ("none" in r) return `needs an RDMA link (${family.rdmaLink}): ${r.none}`;
  }
  if (c.dirtyRingSize) {
    for (const side of sides) {
      if (!setup[side].accels.includes("kvm")) {
        return `needs KVM: the dirty ring (dirty-ring-size) is KVM's, and ${sideName(side, setup)} starts ` +
          `with ${setup[side].accels.join(", ") || "no accelerator"}`;
      }
    }
    if (setup.nestedHost ?? nestedHost()) return DIRTY_RING_NESTED;
  }
  const accel = accelsFor(family, setup);
  for (const side of sides) {
    const p = setup[side];
    if (!accel.some((a) => p.accels.includes(a))) {
      return `none of the accelerators asked for (MIGTEST_QEMU_ACCEL=${accel.join(",")}) works with ` +
        `${sideName(side, setup)}: it starts with ${p.accels.join(", ") || "none"}`;
    }
  }
  if (typeof setup.machine !== "string") return setup.machine.none;
  for (const n of needs) {
    const why = unmet(n, setup[n.side]);
    if (why) return `needs ${describeNeed(n)}: ${sideName(n.side, setup)} ${why}`;
  }
  return null;
}

/** The accelerators a case's sides are started with, in order of preference. */
export function accelsFor(needs: CaseNeeds, setup: QemuSetup): string[] {
  return needs.coloPair ? setup.coloAccel ?? setup.accel : setup.accel;
}

/** The accelerator QEMU picks from `accel` (the first that starts with this binary), or null. */
export function effectiveAccel(accel: readonly string[], probe: QemuProbe): string | null {
  return accel.find((a) => probe.accels.includes(a)) ?? null;
}

/**
 * The machine type for the pair, as upstream's find_common_machine_version: QTEST_QEMU_MACHINE_TYPE if
 * set; "pc" when both sides run the same binary; else the newest versioned pc-i440fx type both list
 * (an alias resolves to each binary's own newest type, which the older one may not know).
 */
export function chooseMachine(src: QemuProbe, dst: QemuProbe, override?: string): string | { none: string } {
  if (override) {
    for (const p of [src, dst]) {
      if (!p.machines.some((m) => m.name === override || m.alias === override)) {
        return { none: `${describeProbe(p)} has no machine type '${override}' (QTEST_QEMU_MACHINE_TYPE)` };
      }
    }
    return override;
  }
  if (src.binary === dst.binary) return "pc";
  const versions = (p: QemuProbe) =>
    new Map(p.machines.flatMap((m) => {
      const v = /^pc-i440fx-(\d+\.\d+)$/.exec(m.name);
      return v ? [[m.name, parseVersion(v[1])] as const] : [];
    }));
  const dstTypes = versions(dst);
  const common = [...versions(src)].filter(([name]) => dstTypes.has(name));
  if (!common.length) {
    return {
      none: `${describeProbe(src)} and ${describeProbe(dst)} have no pc-i440fx machine type in common`,
    };
  }
  common.sort((a, b) => compareVersions(b[1], a[1]));
  return common[0][0];
}

/**
 * QEMU's RAM through `pmemsave` of guest-physical [0, RAM size) into the run directory (one call; qtest
 * `read` of that much is far slower), digested here with the engine's page digest.
 */
function pmemsaveRam(side: QemuProcess, dir: string, bytes: number): RamSource {
  let image: Uint8Array | null = null;
  const load = async () => {
    if (image) return image;
    const file = `${dir}/${side.name}.pmem`;
    await side.qmp.execute("pmemsave", { val: 0, size: bytes, filename: file }, {
      timeoutMs: 60_000,
    });
    image = await Deno.readFile(file);
    await Deno.remove(file);
    return image;
  };
  return {
    name: side.name,
    async digests() {
      const mem = await load();
      return {
        "page-size": 4096,
        blocks: [{ idstr: "pc.ram", pages: mem.length / 4096, digests: pageDigests(mem, 4096).toBase64() }],
      };
    },
    async readPage(_idstr, offset, size) {
      return (await load()).slice(offset, offset + size);
    },
  };
}

/** Waits for a guest program's 'A' on the serial: it left the BIOS and runs. */
async function waitProgramStarted(q: QemuProcess, timeoutMs: number): Promise<void> {
  await waitFor(`${q.name}'s guest program to start ('A' on its serial)`, async (see) => {
    const text = await Deno.readTextFile(q.serialPath).catch(() => "");
    see(text ? `the serial reads '${text.slice(0, 16)}'` : "nothing on the serial");
    return text.startsWith("A");
  }, { timeoutMs, intervalMs: 5 });
}

/** What one qtest b64write of a RAM fill carries. */
const FILL_CHUNK = 1 << 20;

/**
 * Whether a destination on this binary stays up after a failed load: only when migrate-incoming takes
 * exit-on-error (upstream 9.1 on) can the flow ask it to; before, it always exits with status 1.
 */
export function staysUpAfterFailedLoad(probe: QemuProbe): boolean {
  return probe.migrateIncomingArgs.includes("exit-on-error");
}

/**
 * Found by this harness (QEMU 10.0.2): a guest that slept, saved out by a migration, is in postmigrate
 * remembering it was suspended; `cont` then aborts QEMU ("invalid runstate transition: 'postmigrate' ->
 * 'suspended'"). The device-state read is such a save, so it would kill the side it reads.
 */
const SUSPENDED_SAVE_ABORTS = "reading the devices saves the side out by a migration, and a guest that " +
  "slept then aborts on cont (QEMU: invalid runstate transition 'postmigrate' -> 'suspended'; see " +
  "/migration/precopy/unix/suspend/source-cont)";

/**
 * Under KVM, SeaBIOS keeps a kvmclock (pvclock) structure in the BIOS area, and KVM itself rewrites it
 * whenever it updates the guest's clock (its version field moves by 2): found by this harness comparing a
 * precopy's RAM under KVM (QEMU 7.2, block offset 0xe8c20). The a-b guest never writes there, so the
 * BIOS area [0xe0000, 0x100000) of pc.ram is left out of the comparison on a KVM side.
 */
const KVM_WRITTEN_BIOS_PAGES: Map<string, Uint8Array> = (() => {
  const bits = new Uint8Array(0x100000 / 4096 / 8);
  for (let p = 0xe0000 / 4096; p < 0x100000 / 4096; p++) bits[p >>> 3] |= 1 << (p & 7);
  return new Map([["pc.ram", bits]]);
})();

/** Why this binary's device state cannot be read (no `file:` to save it to), or null. */
export function deviceStateUnavailable(probe: QemuProbe): string | null {
  if (probe.transports.includes("file")) return null;
  return `${describeProbe(probe)} has no file: migration transport (upstream QEMU 8.2 on), which reading ` +
    "its device state needs (QEMU has no command that returns it; the analyzer decodes a saved stream)";
}

export class QemuSide extends ProcessSide<QemuProcess> implements Side {
  readonly staysUpAfterFailedLoad: boolean;
  readonly uncomparedFields = QEMU_UNCOMPARED_FIELDS;

  /** `probe` is the probe of the binary this side runs: it says whether migrate-incoming has exit-on-error. */
  constructor(
    process: QemuProcess,
    name: "source" | "target",
    readonly dir: string,
    readonly probe: QemuProbe,
    /** The guest suspends itself (the suspending a-b sector). */
    readonly suspendMe = false,
    /** The side runs under KVM (which writes into guest RAM on its own: see KVM_WRITTEN_BIOS_PAGES). */
    readonly kvm = false,
    /** Its guest RAM in bytes (what `ram()` reads). */
    readonly ramBytes = QEMU_RAM_MIB << 20,
    /** The guest program it boots, when not a-b (its parameter block says how it runs). */
    readonly program: ProgramParams | null = null,
  ) {
    super(process, name);
    this.staysUpAfterFailedLoad = staysUpAfterFailedLoad(probe);
  }

  ram(): RamSource {
    const ram = pmemsaveRam(this.process, this.dir, this.ramBytes);
    return this.kvm ? withoutPages(ram, KVM_WRITTEN_BIOS_PAGES) : ram;
  }

  coloCache(): Unavailable {
    return { unavailable: "QEMU has no command that reads the COLO cache" };
  }

  async guestProgress(): Promise<number | null> {
    if (!this.program || this.program.pages === 0) return null;
    return programState(await this.readRam(PARAMS_GPA, PARAMS_SIZE)).heartbeat;
  }

  /**
   * The model's x-test-ram-fill on QEMU: seeded words (xorshift32, as the model's) through qtest, over
   * [1 MiB, end of RAM) — the program's region; below it are the BIOS's data and the program itself.
   */
  async fillRam(seed: number): Promise<void> {
    let x = seed >>> 0 || 1;
    const chunk = new Uint32Array(FILL_CHUNK / 4);
    for (let at = PROGRAM_BASE; at < this.ramBytes; at += FILL_CHUNK) {
      for (let i = 0; i < chunk.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        chunk[i] = x;
      }
      const bytes = new Uint8Array(chunk.buffer, 0, Math.min(FILL_CHUNK, this.ramBytes - at));
      await this.process.qtest.b64write(at, bytes, { timeoutMs: 60_000 });
    }
  }

  /** What the guest program saw when it panicked, read from its parameter block (null: no panic). */
  async guestPanic(): Promise<string | null> {
    if (!this.program) return null;
    const state = programState(await this.readRam(PARAMS_GPA, PARAMS_SIZE));
    return state.panic ? describePanic(state.panic, this.program) : null;
  }

  postcopyStats(): Promise<Unavailable> {
    return Promise.resolve({
      unavailable: "QEMU keeps no per-page postcopy counters (they are the model's)",
    });
  }

  guestWritten(): Promise<Unavailable> {
    return Promise.resolve({
      unavailable: "QEMU does not say which pages its guest wrote (no dirty log query)",
    });
  }

  readRam(offset: number, size: number): Promise<Uint8Array> {
    return this.process.qtest.read(offset, size);
  }

  writeRam(offset: number, data: Uint8Array): Promise<void> {
    return this.process.qtest.write(offset, data);
  }

  firstBytes(start: number, end: number): Promise<Uint8Array> {
    const addrs: number[] = [];
    for (let a = start; a < end; a += 4096) addrs.push(a);
    return this.process.qtest.readbMany(addrs, { timeoutMs: 60_000 });
  }

  /**
   * QEMU has no command that returns device state, but it writes it into every migration stream, and the
   * analyzer decodes the device sections through the stream's vmdesc. So the side, stopped, migrates to a
   * `file:` in the pair's directory (upstream 8.2 on) and the analyzer reads it back as a process.
   */
  async deviceState(): Promise<DeviceState | Unavailable> {
    const why = deviceStateUnavailable(this.probe);
    if (why) return { unavailable: why };
    if (this.suspendMe) return { unavailable: SUSPENDED_SAVE_ABORTS };
    return await readDeviceState(this.process, `${this.dir}/${this.name}-devices.mig`, this.dir);
  }

  breakpoints(): Breakpoints | Unavailable {
    return {
      unavailable: "QEMU cannot be held at a named moment of a checkpoint (x-test-breakpoint is the model's)",
    };
  }

  captureMainChannel(): Promise<Unavailable> {
    return Promise.resolve({
      unavailable:
        "QEMU has no command that tees its outgoing migration stream (x-test-capture is the model's)",
    });
  }
}

/** How the QEMU world finds its binaries and probes them (the unit tests give fakes). */
export interface QemuWorldDeps {
  binary(side: "src" | "dst"): string | undefined;
  probe(binary: string): Promise<QemuProbe>;
  /** Whether the host is a guest itself (default: /proc/cpuinfo's 'hypervisor' flag). */
  nestedHost?: boolean;
}

const REAL_DEPS: QemuWorldDeps = { binary: qemuBinary, probe: probeQemu };

/** The accelerators asked for: MIGTEST_QEMU_ACCEL, comma-separated, in order of preference. */
function accelFromEnv(fallback = "tcg"): string[] {
  // TCG by default: this machine's KVM is nested and slower than TCG for the a-b guest.
  // MIGTEST_QEMU_ACCEL=kvm,tcg gives upstream's order where KVM is real.
  return (Deno.env.get("MIGTEST_QEMU_ACCEL") ?? fallback).split(",").filter(Boolean);
}

/** The QEMU world: prepare() probes both binaries; the cases and the sides follow from the probes. */
export function createQemuWorld(
  deps: QemuWorldDeps = REAL_DEPS,
): World & { readonly setup: QemuSetup | null } {
  let setup: QemuSetup | null = null;
  return {
    name: "qemu",
    wireFaults: true,
    qemuSides: { src: true, dst: true },
    get setup() {
      return setup;
    },
    async prepare() {
      const paths = { src: deps.binary("src"), dst: deps.binary("dst") };
      for (const side of ["src", "dst"] as const) {
        if (!paths[side]) {
          throw new Error(
            `no QEMU binary for the ${side === "src" ? "source" : "destination"}: set QTEST_QEMU_BINARY ` +
              "(or QTEST_QEMU_BINARY_SRC/_DST) or put qemu-system-x86_64 on PATH",
          );
        }
      }
      const [src, dst] = await Promise.all([deps.probe(paths.src!), deps.probe(paths.dst!)]);
      setup = {
        src,
        dst,
        accel: accelFromEnv(),
        coloAccel: accelFromEnv("kvm,tcg"),
        machine: chooseMachine(src, dst, Deno.env.get("QTEST_QEMU_MACHINE_TYPE") || undefined),
        ...(deps.nestedHost !== undefined ? { nestedHost: deps.nestedHost } : {}),
      };
    },
    cannotRun: (c, needs) => qemuCannotRun(c, needs, setup),
    knownBug(c: AnyCase, needs: CaseNeeds): KnownBug | null {
      if (!setup) return null;
      const machine = typeof setup.machine === "string" ? setup.machine : undefined;
      return knownQemuBug(c, {
        ...setup,
        accel: effectiveAccel(accelsFor(needs, setup), setup.src),
        machine,
      });
    },
    async spawn(spec: SideSpec): Promise<Side> {
      if (!setup) await this.prepare!();
      const s = setup!;
      if (typeof s.machine !== "string") throw new Error(s.machine.none);
      const probe = spec.name === "target" ? s.dst : s.src;
      const memoryKiB = qemuRamKiB(spec.machine);
      let program: ProgramParams | null = null;
      let image: Uint8Array | undefined;
      if (spec.workload.kind !== "a-b") {
        const params = programParams(spec.workload, memoryKiB * 1024);
        if ("none" in params) throw new Error(`${spec.name}: ${params.none}`);
        program = params;
        image = programImage(await Deno.readFile(WORKLOAD_IMAGE), params);
      }
      const process = await QemuProcess.spawn({
        name: spec.name,
        dir: spec.dir,
        binary: probe.binary,
        incoming: spec.incoming,
        startPaused: spec.startPaused,
        uuid: spec.uuid,
        transcript: spec.transcript,
        timeoutMs: spec.timeoutMs,
        memoryKiB,
        program: image,
        machine: s.machine,
        // upstream's use_dirty_ring: KVM with the ring, no TCG to fall back on.
        accel: spec.dirtyRingSize
          ? [`kvm,dirty-ring-size=${spec.dirtyRingSize}`]
          : spec.colo
          ? s.coloAccel ?? s.accel
          : s.accel,
        oob: spec.colo,
        snapshot: spec.colo,
        suspendMe: spec.workload.kind === "a-b" && spec.workload.suspendMe === true,
        memoryBackend: spec.memoryBackend,
        auxRamShare: spec.auxRamShare,
        cprChannel: spec.cprChannel,
      });
      const suspendMe = spec.workload.kind === "a-b" && spec.workload.suspendMe === true;
      const kvm = spec.dirtyRingSize !== undefined ||
        effectiveAccel(spec.colo ? s.coloAccel ?? s.accel : s.accel, probe) === "kvm";
      const side = new QemuSide(
        process,
        spec.name,
        spec.dir,
        probe,
        suspendMe,
        kvm,
        memoryKiB * 1024,
        program,
      );
      // A running guest program is past the BIOS once its 'A' is out: a migration before that would carry
      // the BIOS mid-boot, not the program (a flow waits for a-b's own 'B' itself).
      if (program && !spec.incoming && !spec.startPaused && !spec.cprChannel) {
        try {
          await waitProgramStarted(process, spec.timeoutMs);
        } catch (e) {
          await side.kill();
          throw e;
        }
      }
      return side;
    },
  };
}

export const qemuWorld = createQemuWorld();
