/**
 * A case is data: a record like upstream's MigrateStart/MigrateCommon, one member of a union
 * discriminated by `flow`, so a field exists only where its flow reads it (a COLO case cannot carry
 * `cancelAfter`, a file case cannot carry a socket fault it would ignore). This file holds what every
 * family shares (the base, sockets, outcomes, faults); each family adds its record type in its own folder
 * (harness/families/<family>/case.ts) and the registry (harness/families/mod.ts) makes the union and
 * validates the tables in cases/ when they load.
 */
import type { WorkloadSpec } from "../engine/guest/workload.ts";
import type { Capability, SetParameters } from "../engine/options.ts";
import type { DefectName } from "../engine/testing/defects.ts";
import type { StreamFaultKind } from "../engine/testing/faults.ts";
import type { ColoWirePlace } from "./wire_colo.ts";

export type Tier = "smoke" | "full" | "slow";
export const TIERS: readonly Tier[] = ["smoke", "full", "slow"];

/**
 * Expected outcome (upstream's MIG_TEST_*): the migration completes; it fails and the destination stays
 * usable; it fails and the destination process exits with status 1; the `migrate` command itself errors.
 */
/**
 * How the migration must end. "complete-or-fail": a fault the run may or may not hit (the swarm's
 * connection reset at a seeded byte) — it completes and passes every check, or fails cleanly.
 * "refused": the destination refuses the connection (a TLS peer it does not accept) and keeps listening:
 * the source fails and keeps its guest, the destination loaded nothing and still answers.
 * "survives": a stream mangled on the wire (the fuzzer's): the destination completes (holding what it was
 * sent: QEMU's format has no checksum) or fails with an error that says what was wrong; the source
 * completes or fails and keeps its guest; both still answer.
 */
export type Expect =
  | "succeed"
  | "fail"
  | "fail-dest-exits"
  | "qmp-error"
  | "complete-or-fail"
  | "refused"
  | "survives";

/** A fault injected into one side's stream (x-test-inject-fault; engine/testing/faults.ts). */
export interface FaultSpec {
  kind: StreamFaultKind;
  /** Absolute stream offset for corrupt/truncate; a function of the seed picks one in a range. */
  offset?: number | ((seed: number) => number);
  xor?: number;
  /** A multifd channel id (corrupt/truncate on that channel; multifd-channel-delay/-slow). */
  channel?: number;
  delayMs?: number;
  /**
   * What `offset` is, by name, for a world that writes another layout than the model's: the wire proxy
   * finds the same place in real QEMU's stream (harness/wire_proxy.ts).
   */
  at?: StreamPoint;
}

/**
 * A named place in a stream. In the main stream: the last byte of the RAM section's MEM_SIZE word (its
 * flags), or a byte of a block's be64 length in the RAM setup's block list (byte 0 the most significant).
 * On a multifd channel, in its first packet that carries pages: a byte of its first page offset (be64),
 * or of its payload.
 */
export type StreamPoint =
  | { point: "mem-size-flags" }
  | { point: "block-length"; block: string; byte: number }
  /** The first page record after the RAM setup (its be64 address and flags; byte 7 the flags). */
  | { point: "ram-first-record"; byte: number }
  /** The RAM setup section's footer (its 0x7e marker, then the be32 section id). */
  | { point: "ram-setup-footer"; byte: number }
  /** A byte of the machine type's name in the configuration section (the stream's first). */
  | { point: "machine-type"; byte: number }
  | { point: "multifd-offset" | "multifd-payload"; byte: number };

/** An edit of a stream's bytes on the wire (harness/wire_mutate.ts makes them). */
export type Edit =
  | { op: "xor"; at: number; mask: number }
  | { op: "set"; at: number; bytes: number[] }
  | { op: "insert"; at: number; bytes: number[] }
  | { op: "remove"; at: number; count: number }
  /** Deliver the bytes before `at`, then reset the connection (a broken link). */
  | { op: "cut"; at: number };

export interface StreamMutation {
  /** The migration connection, by the order they are made (the main channel first, then multifd's). */
  connection: number;
  /** forward: what the connecting side (the source) sends; back: its peer's answers (the return path). */
  direction: "forward" | "back";
  /** Offsets count from this place of a COLO checkpoint (forward, main channel) instead of byte 0. */
  from?: { place: ColoWirePlace; checkpoint: number };
  edits: Edit[];
}

/** The control-plane commands a probe can send (harness/control_plane.ts judges their answers). */
export const PROBE_KINDS = [
  "query-migrate",
  "query-status",
  "caps-same",
  "continue",
  "start-postcopy",
  "pause",
  "lost-heartbeat",
  "incoming-again",
  "bad-downtime",
] as const;
export type ProbeKind = typeof PROBE_KINDS[number];

/** One command at a moment: `atMs` after the pair is up, in the sides' time (virtual in the simulation). */
export interface Probe {
  atMs: number;
  side: "src" | "dst";
  kind: ProbeKind;
}

/** Which side of the pair: the source or the destination (a running side is world.ts's `Side`). */
export type SideId = "src" | "dst";
export type VcpuDuty = { runMs: number; sleepMs: number };

/** What every case has, whatever its flow: the pair as upstream's MigrateStart describes it. */
export interface CaseBase {
  /** QEMU-style path, e.g. "/migration/precopy/unix/plain". */
  name: string;
  tier: Tier;
  /** One line: the bug class the case guards (shown by `--list`). */
  why: string;
  /** Bound of the whole case (default 120 s). */
  timeoutMs?: number;
  /** Machine fixture (fixtures/machines.ts); default "pc". */
  machine?: string;
  /** Guest workload on both sides; default a-b. A random workload's seed comes from the case seed. */
  workload?: WorkloadSpec;
  /** Capabilities on both sides (`events` is always on), and per side. */
  caps?: Capability[];
  srcCaps?: Capability[];
  dstCaps?: Capability[];
  srcParams?: SetParameters;
  dstParams?: SetParameters;
  uuid?: { src?: string; dst?: string };
  /** The vCPU's duty cycle (ms running / ms asleep per slice; default 2/2). */
  vcpu?: VcpuDuty;
  /** The destination's vCPU duty cycle, when it differs (a COLO secondary running slower diverges more). */
  dstVcpu?: VcpuDuty;
  /** -mem-prealloc on both sides (guest RAM faulted in at start). */
  memPrealloc?: boolean;
  /**
   * `-accel kvm,dirty-ring-size=N` on both sides (upstream's use_dirty_ring): the vCPU logs written pages
   * on a ring of N entries instead of the dirty bitmap. QEMU needs KVM for it.
   */
  dirtyRingSize?: number;
  /**
   * Where the guest's main RAM lives (upstream's MigrateStart.mem_type): "shmem", one file both sides map
   * shared (a memory-backend-file with share=on as the machine's memory-backend; with x-ignore-shared the
   * destination maps the source's RAM instead of receiving it); "memfd", a memory-backend-memfd (its
   * descriptor is what cpr-transfer passes on). Default: anonymous memory of each side's own.
   */
  memType?: "shmem" | "memfd";
  /** -machine aux-ram-share=on on both sides: every other RAM block a shared memfd too (cpr-transfer). */
  auxRamShare?: boolean;
  /**
   * The simulated world: the least percent of the engine's interleave points (Clock.interleave) at which
   * a running guest writes, whatever the seed draws (it may draw more). For a case that exists to race
   * the guest against one step of migration code, so that no seed of the matrix runs it without the race
   * (a seed may draw 0). The other worlds have real concurrency and ignore it.
   */
  simInterleavePercent?: number;
  /**
   * Edits of one connection's bytes on the wire (a fuzz finding kept as a case): the simulated link makes
   * them, other worlds' sides talk through the wire proxy, which makes them (harness/wire_mutate.ts).
   */
  wireEdits?: StreamMutation;
  /**
   * Control-plane commands beside the flow, each judged by the state machine's oracle
   * (harness/control_plane.ts): a command a management layer may send at that moment.
   */
  probes?: Probe[];
  /** Known defects (engine/testing/defects.ts) switched on per side. */
  defects?: { src?: DefectName[]; dst?: DefectName[] };
  /**
   * Regression cases: the known defect this case guards against. The defects meta-test runs the case
   * with it switched on (the case must fail) and off (it must pass).
   */
  guards?: { side: SideId; defect: DefectName };
}

/**
 * TLS with x509 credentials (upstream's tls-tests.c): one CA, the server's certificate for `serverName`,
 * the client's for CN "ACME QEMU Client" (or the hostile one, or none); object-add on both sides, then
 * tls-creds (and tls-hostname, tls-authz) as the parameters say.
 */
export interface TlsSpec {
  /** Pre-shared keys (tls-creds-psk) instead of certificates: both sides' keys.psk agree, or not. */
  psk?: "match" | "mismatch";
  /** The server certificate's name (IP or DNS); default 127.0.0.1. */
  serverName?: string;
  /**
   * The client's certificate: friendly (default), hostile ("ACME Hostile Client"), foreign (the friendly
   * name, signed by another CA) or none (anonymous).
   */
  client?: "friendly" | "hostile" | "foreign" | "none";
  /** The destination's verify-peer (default true): whether it asks for and checks a client certificate. */
  verifyPeer?: boolean;
  /** tls-hostname on the source (the name it checks the server's certificate against). */
  hostname?: string;
  /** tls-authz on the destination: only CN=ACME QEMU Client may connect. */
  authz?: boolean;
}

/** A migration over a socket. */
export interface SocketCase {
  /** Every channel a TLS session (x509 or PSK). */
  tls?: TlsSpec;
  /** unix (default), tcp on 127.0.0.1, or rdma on the host's RDMA link (port 29200, as upstream). */
  transport?: "unix" | "tcp" | "rdma";
  /** rdma over the link's global IPv6 address instead of its IPv4 one (upstream's rdma/plain/ipv6). */
  ipv6?: boolean;
  /** Start the destination with `-incoming defer` and send migrate-incoming from the flow. */
  defer?: boolean;
  /** migrate-incoming exit-on-error (only with defer); default true like QEMU. */
  exitOnError?: boolean;
}

/** How the migration must end, and what its error must say. */
export interface Outcome {
  expect?: Expect;
  /** What the error (error-desc, QMP error or destination stderr) must match; only with a failure. */
  error?: RegExp;
  /** What the source's error-desc must match, where its own error says why (a TLS check it made). */
  srcError?: RegExp;
  /**
   * What real QEMU says instead of `error`, where the model says more than QEMU (the stream offset, the
   * value it read): QEMU's stderr or error-desc must match it when the case runs on QEMU.
   */
  qemuError?: RegExp;
}

/**
 * A case of some family, as the core sees it: the base every case has and its flow's name. The core
 * (framework, runner, validate, select, the worlds) works on this alone; each family's own record type
 * lives in harness/families/<family>/, and the registry (harness/families/mod.ts) makes their union.
 */
export interface AnyCase extends CaseBase {
  flow: string;
}

/** Cases of the selected tier and below (smoke ⊂ full ⊂ slow). */
export function inTier(c: AnyCase, tier: Tier): boolean {
  return TIERS.indexOf(c.tier) <= TIERS.indexOf(tier);
}

/** Case names mirror upstream: "/migration/...". A filter is a substring or /regex/. */
export function matchesFilter(name: string, filter: string | undefined): boolean {
  if (!filter) return true;
  const m = /^\/(.*)\/([a-z]*)$/.exec(filter);
  if (m && !filter.startsWith("/migration")) return new RegExp(m[1], m[2]).test(name);
  return name.includes(filter);
}
