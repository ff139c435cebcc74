/**
 * What a QEMU binary is and has, asked of the binary itself: a short-lived `-machine none` instance
 * answers QMP on stdio (version, migration capabilities and parameters, commands, the QMP schema, the
 * accelerators, the machine types) and shows whether it applies the multifd compression levels. The
 * QEMU world decides from these probes which cases a binary can run, so no version name is assumed.
 *
 * Results are cached per binary path and mtime (a rebuilt binary is probed again).
 */
import { isObject } from "../../engine/qmp/json.ts";
import { qemuDataDirs, qemuEnv } from "./qemu_process.ts";
import { errorMessage } from "../../engine/error.ts";

export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

export interface QemuMachineType {
  name: string;
  /** e.g. "pc" for the newest pc-i440fx type. */
  alias?: string;
}

export interface QemuProbe {
  binary: string;
  version: QemuVersion;
  /** The distributor's version string (e.g. "Debian 1:7.2+dfsg-7+deb12u18"), "" for a plain build. */
  package: string;
  capabilities: string[];
  /** Names of the members query-migrate-parameters returns. */
  parameters: string[];
  commands: string[];
  /** Argument names of `migrate` and `migrate-incoming` (from the QMP schema). */
  migrateArgs: string[];
  migrateIncomingArgs: string[];
  /** Migration address transports (`socket`, `exec`, `rdma`, `file`): [] when there is no `channels`. */
  transports: string[];
  /** Values of multifd-compression this build accepts (zstd is a build option). */
  multifdCompressions: string[];
  /**
   * Level parameters (multifd-zlib-level, multifd-zstd-level) whose value reads back as set: QEMU 7.2
   * accepts them and keeps reading back 1, so a case that sets one cannot run there as specified.
   */
  appliedLevels: string[];
  /** What a level that is not applied reads back as, by parameter. */
  levelReadBack: Record<string, unknown>;
  /** Accelerators that work: "tcg" when built in, "kvm" when it is enabled with /dev/kvm here. */
  accels: string[];
  machines: QemuMachineType[];
  /** The migration statuses query-migrate can report (MigrationStatus in the schema). */
  statuses: string[];
  /**
   * Capabilities this binary refuses together in some order, by set (CAPABILITY_SETS, joined by "+"),
   * with its error: QEMU 10.0 refuses multifd once postcopy-ram is on ("Postcopy is not yet compatible
   * with multifd").
   */
  refusedCapabilitySets: Record<string, string>;
}

/** Capability sets whose acceptance differs between versions: each is tried at once on the probe. */
export const CAPABILITY_SETS: readonly (readonly string[])[] = [["multifd", "postcopy-ram"]];

/** The value the level probe sets: not the default (1) of either level. */
export const PROBE_LEVEL = 7;
export const PROBE_TIMEOUT_MS = 15_000;
const LEVELS = ["multifd-zlib-level", "multifd-zstd-level"];

/** One exchange of the probe: the command and its arguments, by id. */
const REQUESTS: [string, string, Record<string, unknown>?][] = [
  ["version", "query-version"],
  ["caps", "query-migrate-capabilities"],
  ["params", "query-migrate-parameters"],
  ["commands", "query-commands"],
  ["schema", "query-qmp-schema"],
  ["kvm", "query-kvm"],
  ["machines", "query-machines"],
  ...LEVELS.map((name): [string, string, Record<string, unknown>] => [
    `set-${name}`,
    "migrate-set-parameters",
    { [name]: PROBE_LEVEL },
  ]),
  ["params-after", "query-migrate-parameters"],
  // One call per capability, in each order, then all off again (a case turns them on one call at a
  // time, the family's and the case's own).
  ...CAPABILITY_SETS.flatMap((set) =>
    [set, [...set].reverse()].flatMap((order, o) => [
      ...order.map((capability, i): [string, string, Record<string, unknown>] => [
        `caps-${set.join("+")}-${o}-${i}`,
        "migrate-set-capabilities",
        { capabilities: [{ capability, state: true }] },
      ]),
      [
        `caps-${set.join("+")}-${o}-off`,
        "migrate-set-capabilities",
        { capabilities: set.map((capability) => ({ capability, state: false })) },
      ] as [string, string, Record<string, unknown>],
    ])
  ),
];

type Answers = Map<string, { return?: unknown; error?: unknown }>;

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The QMP schema by entity name, with the walks the probe needs. */
class Schema {
  readonly #byName = new Map<string, Record<string, unknown>>();

  constructor(entries: unknown) {
    for (const e of list(entries)) if (isObject(e) && typeof e.name === "string") this.#byName.set(e.name, e);
  }

  /** The members of a command's argument object. */
  commandArgs(command: string): Map<string, string> {
    const cmd = this.#byName.get(command);
    return this.members(str(cmd?.["arg-type"]));
  }

  /** An object's members (name → type name); its variants' members too (a union's branches). */
  members(type: string | undefined): Map<string, string> {
    const out = new Map<string, string>();
    const obj = type === undefined ? undefined : this.#byName.get(type);
    if (!obj) return out;
    for (const m of list(obj.members)) {
      if (isObject(m) && typeof m.name === "string" && typeof m.type === "string") out.set(m.name, m.type);
    }
    return out;
  }

  /** A command's return type. */
  commandReturn(command: string): string | undefined {
    return str(this.#byName.get(command)?.["ret-type"]);
  }

  /** An enum's values (older schemas list `values`, newer ones `members` too). */
  enumValues(type: string | undefined): string[] {
    const e = type === undefined ? undefined : this.#byName.get(type);
    if (!e || e["meta-type"] !== "enum") return [];
    return list(e.values).flatMap((v) => typeof v === "string" ? [v] : []);
  }

  elementType(type: string | undefined): string | undefined {
    const a = type === undefined ? undefined : this.#byName.get(type);
    return a?.["meta-type"] === "array" ? str(a["element-type"]) : undefined;
  }
}

/**
 * Builds the probe from the answers of the instance started with `-accel kvm -accel tcg` and whether
 * `-accel tcg` alone started (pure: the unit tests feed it recorded answers).
 */
export function probeFromAnswers(binary: string, answers: Answers, tcgStarts: boolean): QemuProbe {
  const ret = (id: string): unknown => {
    const a = answers.get(id);
    if (!a || !("return" in a)) {
      throw new Error(`probe of ${binary}: ${id} failed: ${JSON.stringify(a?.error ?? "no answer")}`);
    }
    return a.return;
  };
  const v = ret("version");
  const q = isObject(v) && isObject(v.qemu) ? v.qemu : {};
  const version = {
    major: Number(q.major),
    minor: Number(q.minor),
    micro: Number(q.micro),
  };
  if (![version.major, version.minor, version.micro].every(Number.isInteger)) {
    throw new Error(`probe of ${binary}: query-version answered ${JSON.stringify(v)}`);
  }
  const schema = new Schema(ret("schema"));
  // migrate's channels: an array of MigrationChannel, whose addr is a union tagged by its transport.
  const migrateArgs = schema.commandArgs("migrate");
  const channel = schema.elementType(migrateArgs.get("channels"));
  const addr = schema.members(channel).get("addr");
  const transports = schema.enumValues(schema.members(addr).get("transport"));
  const setParams = schema.commandArgs("migrate-set-parameters");
  const params = ret("params");
  const after = answers.get("params-after")?.return;
  const applied = LEVELS.filter((name) =>
    answers.get(`set-${name}`)?.return !== undefined && isObject(after) && after[name] === PROBE_LEVEL
  );
  const kvm = answers.get("kvm")?.return;
  const accels = [...(tcgStarts ? ["tcg"] : []), ...(isObject(kvm) && kvm.enabled === true ? ["kvm"] : [])];
  return {
    binary,
    version,
    package: isObject(v) ? str(v.package) ?? "" : "",
    capabilities: list(ret("caps")).flatMap((c) =>
      isObject(c) && typeof c.capability === "string" ? [c.capability] : []
    ),
    parameters: isObject(params) ? Object.keys(params) : [],
    commands: list(ret("commands")).flatMap((c) => isObject(c) && typeof c.name === "string" ? [c.name] : []),
    migrateArgs: [...migrateArgs.keys()],
    migrateIncomingArgs: [...schema.commandArgs("migrate-incoming").keys()],
    transports,
    multifdCompressions: schema.enumValues(setParams.get("multifd-compression")),
    appliedLevels: applied,
    levelReadBack: Object.fromEntries(
      LEVELS.filter((n) => !applied.includes(n) && isObject(after) && n in after).map((n) => [
        n,
        isObject(after) ? after[n] : undefined,
      ]),
    ),
    accels,
    statuses: schema.enumValues(schema.members(schema.commandReturn("query-migrate")).get("status")),
    refusedCapabilitySets: Object.fromEntries(CAPABILITY_SETS.flatMap((set) => {
      const name = set.join("+");
      const a = [0, 1].flatMap((o) => set.map((_, i) => answers.get(`caps-${name}-${o}-${i}`)))
        .find((a) => a?.error !== undefined);
      if (!a) return [];
      const desc = isObject(a.error) ? str(a.error.desc) : undefined;
      return [[name, desc ?? JSON.stringify(a.error)]];
    })),
    machines: list(ret("machines")).flatMap((m) =>
      isObject(m) && typeof m.name === "string"
        ? [{ name: m.name, ...(typeof m.alias === "string" ? { alias: m.alias } : {}) }]
        : []
    ),
  };
}

/**
 * Starts `binary` with no machine, the given accelerators and QMP on stdio, asks it `requests` at once
 * (QMP answers in order), then quits it. Bounded by `timeoutMs`; the error names the answers still
 * missing and QEMU's stderr.
 */
export async function exchange(
  binary: string,
  accels: readonly string[],
  requests: readonly [string, string, Record<string, unknown>?][],
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<Answers> {
  const args = [
    ...qemuDataDirs(binary).flatMap((d) => ["-L", d]),
    "-machine",
    "none",
    ...accels.flatMap((a) => ["-accel", a]),
    "-nodefaults",
    "-display",
    "none",
    "-qmp",
    "stdio",
  ];
  const child = new Deno.Command(binary, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: qemuEnv(binary),
  }).spawn();
  const answers: Answers = new Map();
  const pending = new Set(requests.map(([id]) => id));
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  const writer = child.stdin.getWriter();
  const enc = new TextEncoder();
  const send = (obj: Record<string, unknown>) => writer.write(enc.encode(JSON.stringify(obj) + "\n"));
  const reading = (async () => {
    let buf = "";
    let greeted = false;
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg: unknown = JSON.parse(line);
        if (!isObject(msg)) continue;
        if (!greeted && "QMP" in msg) {
          greeted = true;
          await send({ execute: "qmp_capabilities" });
          for (const [id, execute, args] of requests) {
            await send({ execute, id, ...(args ? { arguments: args } : {}) });
          }
          if (pending.size === 0) await send({ execute: "quit" });
          continue;
        }
        if (typeof msg.id === "string" && pending.delete(msg.id)) {
          answers.set(msg.id, { return: msg.return, error: msg.error });
          if (pending.size === 0) await send({ execute: "quit" });
        }
      }
    }
  })();
  // A write to a QEMU that already exited fails; the missing answers then say what went wrong.
  reading.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  try {
    const outcome = await Promise.race([reading.then(() => "eof" as const, () => "eof" as const), timeout]);
    if (outcome === "timeout") {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }
    await reading.catch(() => {});
    await stderrDone.catch(() => {});
    if (pending.size > 0) {
      const what = outcome === "timeout" ? `within ${timeoutMs} ms` : "before it exited";
      throw new Error(
        `probe of ${binary} (${accels.map((a) => `-accel ${a}`).join(" ")}): no answer to ` +
          `${[...pending].join(", ")} ${what}` + (stderr.trim() ? `; its stderr: ${stderr.trim()}` : ""),
      );
    }
  } finally {
    clearTimeout(timer);
    await writer.close().catch(() => {});
    await child.status;
    await stderrDone.catch(() => {});
  }
  return answers;
}

/**
 * Probes `binary`: one instance with `-accel kvm -accel tcg` answers everything (query-kvm says whether
 * KVM was taken); when it took KVM, a second with `-accel tcg` alone shows whether TCG starts.
 */
export async function runProbe(binary: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<QemuProbe> {
  const answers = await exchange(binary, ["kvm", "tcg"], REQUESTS, timeoutMs);
  const kvm = answers.get("kvm")?.return;
  const onKvm = isObject(kvm) && kvm.enabled === true;
  const tcgStarts = !onKvm ||
    await exchange(binary, ["tcg"], [["version", "query-version"]], timeoutMs).then(() => true, () => false);
  return probeFromAnswers(binary, answers, tcgStarts);
}

const cache = new Map<string, Promise<QemuProbe>>();

/**
 * The probe of `binary`, cached per resolved path and mtime for this process (the probe takes a few
 * hundred milliseconds; register.ts prepares once per case table).
 */
export async function probeQemu(binary: string): Promise<QemuProbe> {
  let key: string;
  try {
    const path = await Deno.realPath(binary);
    key = `${path}\0${(await Deno.stat(path)).mtime?.getTime() ?? 0}`;
  } catch (e) {
    throw new Error(`QEMU binary ${binary}: ${errorMessage(e)}`);
  }
  let p = cache.get(key);
  if (!p) {
    p = runProbe(binary);
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return await p;
}

export function versionText(v: QemuVersion): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}

/** "QEMU 7.2.22 (/usr/bin/qemu-system-x86_64)": how a reason names the binary it probed. */
export function describeProbe(p: QemuProbe): string {
  return `QEMU ${versionText(p.version)} (${p.binary})`;
}

/** Negative, zero or positive as a is older than, the same as, or newer than b. */
export function compareVersions(a: QemuVersion, b: QemuVersion): number {
  return a.major - b.major || a.minor - b.minor || a.micro - b.micro;
}

/** "7.2" or "7.2.22" as a version (missing parts are 0). */
export function parseVersion(text: string): QemuVersion {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new RangeError(`'${text}' is not a QEMU version (MAJOR.MINOR[.MICRO])`);
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0) };
}
