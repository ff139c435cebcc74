/**
 * Migration capabilities and parameters (migration/options.c, qapi/migration.json): names, defaults,
 * ranges and the error messages QEMU gives for out-of-range values.
 */

/** Every capability QEMU lists in query-migrate-capabilities, in QAPI order. */
export const CAPABILITIES = [
  "xbzrle",
  "rdma-pin-all",
  "auto-converge",
  "zero-blocks",
  "events",
  "postcopy-ram",
  "x-colo",
  "release-ram",
  "return-path",
  "pause-before-switchover",
  "multifd",
  "dirty-bitmaps",
  "postcopy-blocktime",
  "late-block-activate",
  "x-ignore-shared",
  "validate-uuid",
  "background-snapshot",
  "zero-copy-send",
  "postcopy-preempt",
  "switchover-ack",
  "dirty-limit",
  "mapped-ram",
] as const;
export type Capability = typeof CAPABILITIES[number];

/** Capabilities this model implements; enabling any other is refused rather than silently ignored. */
export const MODELLED_CAPABILITIES: ReadonlySet<Capability> = new Set<Capability>([
  "events",
  "return-path",
  "pause-before-switchover",
  "validate-uuid",
  "multifd",
  "xbzrle",
  "x-colo",
  "postcopy-ram",
  "postcopy-blocktime",
  "postcopy-preempt",
  "mapped-ram",
  "switchover-ack",
  "auto-converge",
  "dirty-limit",
  "x-ignore-shared",
]);

export const ZERO_PAGE_DETECTION = ["none", "legacy", "multifd"] as const;
/**
 * MigMode (QEMU 8.2 on; cpr-transfer 10.0): normal; cpr-reboot, where the VM stops before anything is
 * saved, for a QEMU restarted from the image (its RAM best kept in shared memory with x-ignore-shared);
 * cpr-transfer, whose cpr channel passes the memory's descriptors to a new QEMU started beside it.
 */
export const MIG_MODE = ["normal", "cpr-reboot", "cpr-transfer"] as const;
export const MULTIFD_COMPRESSION = ["none", "zlib", "zstd"] as const;
/**
 * QEMU's other multifd methods, each a build option over an accelerator or its library (Intel QAT,
 * Intel IAA through QPL, HiSilicon's UADK). The model has none of them and refuses them as a QEMU built
 * without them does; cases name them so that a QEMU that has one runs them.
 */
export const HARDWARE_COMPRESSION = ["qatzip", "qpl", "uadk"] as const;
export type HardwareCompression = typeof HARDWARE_COMPRESSION[number];

export interface MigrationParameters {
  "max-bandwidth": number;
  /** Bandwidth of the postcopy phase's background pages (0: unlimited); requested pages go regardless. */
  "max-postcopy-bandwidth": number;
  "avail-switchover-bandwidth": number;
  "downtime-limit": number;
  "x-checkpoint-delay": number;
  "multifd-channels": number;
  "multifd-compression": typeof MULTIFD_COMPRESSION[number];
  "multifd-zlib-level": number;
  "multifd-zstd-level": number;
  "xbzrle-cache-size": number;
  "zero-page-detection": typeof ZERO_PAGE_DETECTION[number];
  mode: typeof MIG_MODE[number];
  "throttle-trigger-threshold": number;
  "cpu-throttle-initial": number;
  "cpu-throttle-increment": number;
  "max-cpu-throttle": number;
  /** auto-converge raises the throttle by no more than the dirty rate needs (cpu-throttle-tailslow). */
  "cpu-throttle-tailslow": boolean;
  "announce-initial": number;
  "announce-max": number;
  "announce-rounds": number;
  "announce-step": number;
  /**
   * O_DIRECT on the multifd channels of a mapped-ram file migration (QEMU 9.1 on; it takes effect only
   * with mapped-ram and multifd, as migrate_direct_io says).
   */
  "direct-io": boolean;
  /** dirty-limit's quota for every vCPU, MB/s (QEMU 8.1 on). */
  "vcpu-dirty-limit": number;
  /** How often dirty-limit measures the vCPUs' rates and adjusts their throttle, ms. */
  "x-vcpu-dirty-limit-period": number;
  /** The id of the tls-creds object the channels use; "" (or null when set): no TLS. */
  "tls-creds": string;
  /** The name the source checks the destination's certificate against; "": the URI's host. */
  "tls-hostname": string;
  /** The id of the authz object the destination checks a client's certificate with; "": none. */
  "tls-authz": string;
}

/** The string parameters, which QMP also takes as null (QAPI's StrOrNull: reset to ""). */
export const STR_PARAMETERS = ["tls-creds", "tls-hostname", "tls-authz"] as const;

/** What migrate-set-parameters takes: any subset, the string ones also as null (MigrateSetParameters). */
export type SetParameters =
  & Partial<Omit<MigrationParameters, typeof STR_PARAMETERS[number] | "multifd-compression">>
  & { [K in typeof STR_PARAMETERS[number]]?: string | null }
  & { "multifd-compression"?: MigrationParameters["multifd-compression"] | HardwareCompression };

export const DEFAULT_PARAMETERS: MigrationParameters = {
  "max-bandwidth": 134217728,
  "max-postcopy-bandwidth": 0,
  "avail-switchover-bandwidth": 0,
  "downtime-limit": 300,
  "x-checkpoint-delay": 20000,
  "multifd-channels": 2,
  "multifd-compression": "none",
  "vcpu-dirty-limit": 1,
  "x-vcpu-dirty-limit-period": 1000,
  "multifd-zlib-level": 1,
  "multifd-zstd-level": 1,
  "xbzrle-cache-size": 67108864,
  "zero-page-detection": "multifd",
  mode: "normal",
  "throttle-trigger-threshold": 50,
  "cpu-throttle-initial": 20,
  "cpu-throttle-increment": 10,
  "max-cpu-throttle": 99,
  "cpu-throttle-tailslow": false,
  "announce-initial": 50,
  "announce-max": 550,
  "announce-rounds": 5,
  "announce-step": 100,
  "direct-io": false,
  "tls-creds": "",
  "tls-hostname": "",
  "tls-authz": "",
};

type IntRange = { min: number; max: number; what: string };
const INT64_MAX = Number.MAX_SAFE_INTEGER;

/** Ranges from migrate_params_check; `what` completes QEMU's "Parameter 'x' expects ..." message. */
const INT_RANGES: Partial<Record<keyof MigrationParameters, IntRange>> = {
  "max-bandwidth": { min: 0, max: INT64_MAX, what: "an integer in the range of 0 to 2^64-1 bytes/second" },
  "max-postcopy-bandwidth": {
    min: 0,
    max: INT64_MAX,
    what: "an integer in the range of 0 to 2^64-1 bytes/second",
  },
  "avail-switchover-bandwidth": {
    min: 0,
    max: INT64_MAX,
    what: "an integer in the range of 0 to 2^64-1 bytes/second",
  },
  "downtime-limit": { min: 0, max: 2000000, what: "an integer in the range of 0 to 2000000 milliseconds" },
  "x-checkpoint-delay": { min: 0, max: 0xffffffff, what: "an integer in the range of 0 to 2^32-1" },
  "multifd-channels": { min: 1, max: 255, what: "a value between 1 and 255" },
  "multifd-zlib-level": { min: 0, max: 9, what: "a value between 0 and 9" },
  "multifd-zstd-level": { min: 0, max: 20, what: "a value between 0 and 20" },
  "xbzrle-cache-size": {
    min: 4096,
    max: INT64_MAX,
    what: "a power of two no less than the target page size",
  },
  "throttle-trigger-threshold": { min: 1, max: 100, what: "an integer in the range of 1 to 100" },
  "cpu-throttle-initial": { min: 1, max: 99, what: "an integer in the range of 1 to 99" },
  "cpu-throttle-increment": { min: 1, max: 99, what: "an integer in the range of 1 to 99" },
  "max-cpu-throttle": { min: 1, max: 99, what: "an integer in the range of 1 to 99" },
  "announce-initial": { min: 1, max: 100000, what: "a value between 1 and 100000" },
  "announce-max": { min: 1, max: 100000, what: "a value between 1 and 100000" },
  "announce-rounds": { min: 1, max: 1000, what: "a value between 1 and 1000" },
  "announce-step": { min: 1, max: 10000, what: "a value between 1 and 10000" },
};

const ENUMS: Partial<Record<keyof MigrationParameters, readonly string[]>> = {
  "multifd-compression": MULTIFD_COMPRESSION,
  "zero-page-detection": ZERO_PAGE_DETECTION,
  mode: MIG_MODE,
};

/** QMP argument types for migrate-set-parameters (all optional). */
export function parameterArgTypes(): Record<string, "int" | "bool" | "any" | { enum: string[] }> {
  const out: Record<string, "int" | "bool" | "any" | { enum: string[] }> = {};
  for (const k of Object.keys(DEFAULT_PARAMETERS) as (keyof MigrationParameters)[]) {
    const e = ENUMS[k];
    const d = DEFAULT_PARAMETERS[k];
    // StrOrNull: checked in checkParameters.
    out[k] = e ? { enum: [...e] } : typeof d === "boolean" ? "bool" : typeof d === "string" ? "any" : "int";
  }
  return out;
}

/** Validates a partial parameter update; returns the error message QEMU would give, or null. */
export function checkParameters(update: Partial<Record<string, unknown>>): string | null {
  for (const [k, v] of Object.entries(update)) {
    if ((STR_PARAMETERS as readonly string[]).includes(k) && v !== null && typeof v !== "string") {
      return `Invalid parameter type for '${k}', expected: StrOrNull`;
    }
    // migrate_params_check's own words for these two.
    if (k === "vcpu-dirty-limit" && typeof v === "number" && v < 1) {
      return "Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s";
    }
    if (
      k === "x-vcpu-dirty-limit-period" && typeof v === "number" &&
      !(Number.isInteger(v) && v >= 1 && v <= 1000)
    ) {
      return "Parameter 'x-vcpu-dirty-limit-period' expects a value between 1 and 1000";
    }
    const range = INT_RANGES[k as keyof MigrationParameters];
    if (range && typeof v === "number") {
      const underscored = k.replaceAll("-", "_");
      if (!Number.isInteger(v) || v < range.min || v > range.max) {
        return `Parameter '${underscored}' expects ${range.what}`;
      }
      if (k === "xbzrle-cache-size" && !Number.isInteger(Math.log2(v))) {
        return `Parameter '${underscored}' expects ${range.what}`;
      }
    }
  }
  return null;
}

export class MigrationOptions {
  readonly caps = new Map<Capability, boolean>(CAPABILITIES.map((c) => [c, false]));
  params: MigrationParameters = { ...DEFAULT_PARAMETERS };

  cap(c: Capability): boolean {
    return this.caps.get(c) ?? false;
  }

  /** The vCPU logs on a dirty ring (KVM's dirty-ring-size): what dirty-limit needs. */
  dirtyRing = false;

  /** Applies a migrate-set-capabilities list; returns an error message or null (nothing applied then). */
  setCapabilities(list: { capability: string; state: boolean }[]): string | null {
    const next = new Map(this.caps);
    for (const { capability, state } of list) {
      if (!this.caps.has(capability as Capability)) {
        return `Parameter 'capability' does not accept value '${capability}'`;
      }
      // migrate_caps_check: the dirty limit throttles vCPUs by their dirty rings.
      if (state && capability === "dirty-limit" && !this.dirtyRing) {
        return "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set";
      }
      if (state && !MODELLED_CAPABILITIES.has(capability as Capability)) {
        return `Capability '${capability}' is not supported by the migtest engine`;
      }
      next.set(capability as Capability, state);
    }
    // migrate_caps_check: combinations QEMU refuses.
    if (next.get("multifd") && next.get("xbzrle")) return "Multifd is not compatible with xbzrle";
    if (next.get("dirty-limit") && next.get("auto-converge")) {
      return "dirty-limit conflicts with auto-converge either of then available currently";
    }
    if (next.get("postcopy-preempt") && !next.get("postcopy-ram")) {
      return "Postcopy preempt requires postcopy-ram";
    }
    if (next.get("postcopy-ram") && next.get("x-colo")) return "COLO is not compatible with postcopy-ram";
    if (next.get("switchover-ack") && !next.get("return-path")) {
      return "Capability 'switchover-ack' requires capability 'return-path'";
    }
    if (next.get("mapped-ram") && next.get("xbzrle")) {
      return "Mapped-ram migration is incompatible with xbzrle";
    }
    if (next.get("mapped-ram") && next.get("postcopy-ram")) {
      return "Mapped-ram migration is incompatible with postcopy";
    }
    for (const [k, v] of next) this.caps.set(k, v);
    return null;
  }

  queryCapabilities(): { capability: string; state: boolean }[] {
    return CAPABILITIES.map((c) => ({ capability: c, state: this.cap(c) }));
  }
}
