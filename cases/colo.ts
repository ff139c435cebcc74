/**
 * COLO cases: upstream's eight (/migration/colo/{plain,multifd}/{primary,secondary}_failover[_checkpoint]),
 * then the primary killed at each named moment of a checkpoint, a failover requested during the apply,
 * COLO over each multifd compression, many checkpoints under a heavy writer, and pages turning zero.
 * Every case checks each applied checkpoint page by page (secondary == primary, cache == secondary,
 * devices equal) and the survivor after the failover.
 */
import type { ColoCase, ColoPhase, ColoScenario } from "../harness/families/colo/case.ts";

type Kind = "plain" | "multifd";
const KINDS: Kind[] = ["plain", "multifd"];
const SURVIVORS: ColoScenario["survivor"][] = ["primary", "secondary"];
const COMPRESSIONS: ("zlib" | "zstd")[] = ["zlib", "zstd"];

function colo(
  name: string,
  kind: Kind,
  scenario: ColoScenario,
  extra: Partial<ColoCase> = {},
): ColoCase {
  const multifd = kind === "multifd";
  const params: ColoCase["srcParams"] = multifd ? { "multifd-channels": 4 } : {};
  return {
    name,
    tier: "full",
    flow: "colo",
    why: scenarioWhy(scenario),
    transport: "tcp",
    defer: multifd,
    caps: multifd ? ["x-colo", "multifd"] : ["x-colo"],
    colo: scenario,
    ...extra,
    srcParams: { ...params, ...extra.srcParams },
    dstParams: { ...params, ...extra.dstParams },
  };
}

/** What a scenario guards, from its failure moment. */
function scenarioWhy(sc: ColoScenario): string {
  const every = "every checkpoint exact (secondary == primary, cache == secondary RAM, devices)";
  if (sc.killPrimaryAt) {
    return `${every}; the primary dying at ${sc.killPrimaryAt} leaves the secondary with its own state ` +
      "or the whole checkpoint, never a mix";
  }
  if (sc.failoverDuringApply) return `${every}; a failover asked for during the apply relaunches after it`;
  if (sc.failoverDuringMultifdPacket) {
    return `${every}; a takeover while a multifd channel holds a packet keeps the cache until it stops`;
  }
  const when = sc.duringCheckpoint ? " while the secondary is stopped in a checkpoint" : "";
  return `${every}; after a failover on the ${sc.survivor}${when} the survivor runs and passes check_guests_ram`;
}

const upstream: ColoCase[] = KINDS.flatMap((kind) =>
  SURVIVORS.flatMap((lost) =>
    [false, true].map((duringCheckpoint) =>
      colo(
        `/migration/colo/${kind}/${lost}_failover${duringCheckpoint ? "_checkpoint" : ""}`,
        kind,
        // "primary_failover": failover triggered on the primary (the secondary is lost), and vice versa.
        { survivor: lost, duringCheckpoint },
      )
    )
  )
);

const PHASES: ColoPhase[] = [
  "colo-request-sent",
  "colo-stopped",
  "colo-ram-half-sent",
  "colo-ram-half-received",
  "colo-device-buffer-half-sent",
  "colo-device-buffer-received",
  "colo-after-vmstate-received",
  "colo-apply-middle",
  "colo-after-vmstate-loaded",
];

const kills: ColoCase[] = KINDS.flatMap((kind) =>
  PHASES.map((phase) =>
    colo(`/migration/colo/${kind}/kill-primary/${phase.replace(/^colo-/, "")}`, kind, {
      survivor: "secondary",
      checkpoints: 2,
      killPrimaryAt: phase,
    })
  )
);

const beyond: ColoCase[] = [
  colo("/migration/colo/plain/secondary_failover_during_apply", "plain", {
    survivor: "secondary",
    checkpoints: 2,
    failoverDuringApply: true,
  }),
  ...COMPRESSIONS.map((compression) =>
    colo(`/migration/colo/multifd/${compression}/secondary_failover`, "multifd", { survivor: "secondary" }, {
      srcParams: { "multifd-compression": compression },
      dstParams: { "multifd-compression": compression },
    })
  ),
  colo("/migration/colo/multifd/many-checkpoints", "multifd", {
    survivor: "secondary",
    checkpoints: 50,
    checkpointDelayMs: 20,
  }, {
    workload: { kind: "random", seed: 0, hotPages: 4096, hotPercent: 70 },
    machine: "tiny",
    why: "50 checkpoints, each checked page by page, under a random writer over a 16 MiB hot set",
  }),
  ...KINDS.map((kind) =>
    colo(`/migration/colo/${kind}/cold-ram`, kind, {
      survivor: "secondary",
      checkpoints: 3,
      checkpointDelayMs: 50,
    }, {
      workload: { kind: "random", seed: 0, hotPages: 64, hotPercent: 100 },
      machine: "tiny",
      fillRam: true,
      why: "a guest whose RAM was written once before the migration and then only a small hot set: pages " +
        "sent only by the initial precopy must be in the COLO cache too (the precopy mirror, the cache's " +
        "initial copy), or the first flush or a failover brings back stale pages",
    })
  ),
  ...KINDS.map((kind) =>
    colo(`/migration/colo/${kind}/secondary-diverges`, kind, {
      survivor: "secondary",
      checkpoints: 5,
      checkpointDelayMs: 50,
    }, {
      workload: { kind: "random", seed: 0, hotPages: 256, hotPercent: 50 },
      machine: "tiny",
      // The primary's guest runs a tenth of the time; the secondary's at the default 2/2 ms.
      vcpu: { runMs: 1, sleepMs: 20 },
      dstVcpu: { runMs: 2, sleepMs: 2 },
      why: "the secondary runs its guest faster than the primary, so between checkpoints it writes pages " +
        "the primary has not: the flush must restore received ∪ secondary-dirtied pages, not only received",
    })
  ),
  colo("/migration/colo/plain/zero-churn", "plain", {
    survivor: "secondary",
    checkpoints: 10,
    checkpointDelayMs: 50,
  }, {
    workload: { kind: "zero-churn", seed: 0, pages: 512 },
    machine: "tiny",
    why: "pages that flip between zero and non-zero in COLO state: a page turning zero must be flushed",
  }),
  colo("/migration/colo/multifd/zero-churn", "multifd", {
    survivor: "secondary",
    checkpoints: 10,
    checkpointDelayMs: 50,
  }, {
    workload: { kind: "zero-churn", seed: 0, pages: 512 },
    machine: "tiny",
    why: "the same over multifd, whose zero pages are offsets only: they must be recorded in the COLO bitmap",
  }),
];

export const COLO_CASES: ColoCase[] = [...upstream, ...kills, ...beyond];
