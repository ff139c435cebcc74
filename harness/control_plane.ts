/**
 * The control plane under attack: QMP commands sent at seeded moments of a case, on either side, next to
 * the case's own flow, each judged by an oracle of QEMU's migration state machine (what a management layer
 * such as libvirt meets when it sends a command at whatever moment it likes).
 *
 * The state machine the oracle holds (QEMU 10.0's migration/migration.c, options.c, colo.c):
 *
 *   none → setup → active → [pre-switchover →] device → completed        (precopy)
 *                  active → postcopy-active ⇄ postcopy-paused → postcopy-recover(-setup) → … → completed
 *                  active → colo (until a failover; then completed)
 *   any running status → cancelling → cancelled;  any running status → failed
 *
 * "Running" (migration_is_running) is every status from setup up to the end except the ends themselves:
 * setup, active, pre-switchover, device, wait-unplug, cancelling, colo, and the postcopy ones. A probe
 * never changes where the case goes: it is either a query (always answered) or a command the state machine
 * refuses at that moment, with QEMU's words:
 *
 * | probe            | side     | when it applies                 | QEMU's answer                                       |
 * |------------------|----------|---------------------------------|-----------------------------------------------------|
 * | query-migrate    | either   | always                          | the status                                          |
 * | query-status     | either   | always                          | the run state                                       |
 * | caps-same        | source   | always                          | running: "There's a migration process in progress"; |
 * |                  |          |                                 | otherwise accepted (the value it already has)       |
 * | continue         | source   | no pause-before-switchover      | "Migration not in expected state: <status>"         |
 * | start-postcopy   | source   | no postcopy-ram                 | "Enable postcopy with migrate_set_capability before |
 * |                  |          |                                 | the start of migration"                             |
 * | pause            | either   | no postcopy-ram                 | "migrate-pause is currently only supported during   |
 * |                  |          |                                 | postcopy-active or postcopy-recover state"          |
 * | lost-heartbeat   | either   | no x-colo                       | "VM is not in COLO mode"                            |
 * | incoming-again   | target   | its incoming migration started  | "The incoming migration has already been started"   |
 * |                  |          | (-incoming URI, or the flow's)  | (QEMU's one start is spent, whatever came after)    |
 * | bad-downtime     | either   | always                          | "Parameter 'downtime_limit' expects …", and the     |
 * |                  |          |                                 | downtime-limit is what it was                       |
 *
 * A command runs at a moment the prober cannot pin (the status may move while the command is on its way):
 * the side's status is read before and after, and the answer must be the oracle's for one of the two.
 */
import { type AnyCase, type Probe, PROBE_KINDS, type ProbeKind } from "./case.ts";

export { type Probe, PROBE_KINDS, type ProbeKind };
import type { MigrationPair } from "./framework.ts";
import type { Side } from "./world/world.ts";

/** migration_is_running: the statuses in which the source refuses a change of capabilities. */
export const RUNNING_STATUSES: ReadonlySet<string> = new Set([
  "setup",
  "active",
  "pre-switchover",
  "device",
  "wait-unplug",
  "cancelling",
  "colo",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover-setup",
  "postcopy-recover",
]);

/** Whether the probe cannot change where the case goes (a refused command, on a side it can reach). */
export function probeApplies(p: Probe, c: AnyCase): boolean {
  const caps: readonly string[] = c.caps ?? [];
  const sourceOnly = ["caps-same", "continue", "start-postcopy"];
  if (sourceOnly.includes(p.kind) && p.side !== "src") return false;
  // A flow that turns the capability on itself (postcopy, COLO) may do so while a probe is on its way.
  switch (p.kind) {
    case "continue":
      return !caps.includes("pause-before-switchover");
    case "start-postcopy":
    case "pause":
      return !caps.includes("postcopy-ram") && c.flow !== "postcopy";
    case "lost-heartbeat":
      return !caps.includes("x-colo") && c.flow !== "colo";
    case "incoming-again":
      // Only where the incoming migration has started (the probe looks first): a deferred destination's
      // first migrate-incoming is the flow's to send.
      return p.side === "dst";
    default:
      return true;
  }
}

/** What the oracle expects: an answer, or an error whose description matches. */
export type Expected = { ok: true } | { error: RegExp };

/** The command a probe sends, given the side's current capabilities (caps-same sets one to its value). */
export function probeCommand(
  kind: ProbeKind,
  events: boolean,
): { command: string; args?: Record<string, unknown> } {
  switch (kind) {
    case "query-migrate":
    case "query-status":
      return { command: kind };
    case "caps-same":
      return {
        command: "migrate-set-capabilities",
        args: { capabilities: [{ capability: "events", state: events }] },
      };
    case "continue":
      return { command: "migrate-continue", args: { state: "pre-switchover" } };
    case "start-postcopy":
      return { command: "migrate-start-postcopy" };
    case "pause":
      return { command: "migrate-pause" };
    case "lost-heartbeat":
      return { command: "x-colo-lost-heartbeat" };
    case "incoming-again":
      return { command: "migrate-incoming", args: { uri: "tcp:127.0.0.1:0" } };
    case "bad-downtime":
      return { command: "migrate-set-parameters", args: { "downtime-limit": 2_000_001 } };
  }
}

const quote = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The oracle: QEMU's answer to the probe on a side whose query-migrate status is `status`. */
export function expectedAnswer(kind: ProbeKind, status: string): Expected {
  switch (kind) {
    case "query-migrate":
    case "query-status":
      return { ok: true };
    case "caps-same":
      return RUNNING_STATUSES.has(status)
        ? { error: /^There's a migration process in progress$/ }
        : { ok: true };
    case "continue":
      return { error: new RegExp(`^Migration not in expected state: ${quote(status)}$`) };
    case "start-postcopy":
      return { error: /^Enable postcopy with migrate_set_capability before the start of migration$/ };
    case "pause":
      return {
        error: /^migrate-pause is currently only supported during postcopy-active or postcopy-recover state$/,
      };
    case "lost-heartbeat":
      return { error: /^VM is not in COLO mode$/ };
    case "incoming-again":
      return { error: /^The incoming migration has already been started$/ };
    case "bad-downtime":
      return { error: /^Parameter 'downtime_limit' expects an integer in the range of 0 to / };
  }
}

/** Whether `answer` is what the oracle expects in one of `statuses`. */
export function answerAgrees(
  kind: ProbeKind,
  statuses: readonly string[],
  answer: { error?: string },
): boolean {
  return statuses.some((s) => {
    const want = expectedAnswer(kind, s);
    if ("ok" in want) return answer.error === undefined;
    return answer.error !== undefined && want.error.test(answer.error);
  });
}

function describe(want: Expected): string {
  return "ok" in want ? "an answer" : `the error ${want.error}`;
}

/** A probe's answer that disagrees with the oracle. */
export class ControlPlaneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ControlPlaneError";
  }
}

/**
 * Runs the probes beside the flow: each at its time, judged by the oracle. `stop` ends the probing (the
 * flow is over); `done` resolves with the first disagreement, or null. A side that is gone (killed,
 * exited, not yet there) is not probed.
 */
export function startProbes(pair: MigrationPair, c: AnyCase, probes: readonly Probe[]): {
  stop(): void;
  done: Promise<ControlPlaneError | null>;
  sent: () => number;
} {
  let stopped = false;
  let sent = 0;
  let cancel: (() => void) | null = null;
  const stop = Promise.withResolvers<void>();
  // A wait the stop ends at once (its timer cancelled: nothing is left pending after the case).
  const wait = (ms: number) => {
    const { promise, resolve } = Promise.withResolvers<void>();
    cancel = pair.clock.timer(resolve, ms);
    return Promise.race([promise, stop.promise]);
  };
  const run = async (): Promise<ControlPlaneError | null> => {
    const sorted = probes.filter((p) => probeApplies(p, c)).sort((a, b) => a.atMs - b.atMs);
    let now = 0;
    for (const p of sorted) {
      if (p.atMs > now) await wait(p.atMs - now);
      now = p.atMs;
      if (stopped) return null;
      const side = p.side === "src" ? pair.src : pair.dst;
      if (
        !side || side.exitStatus || (p.side === "src" && pair.srcKilled) ||
        (p.side === "dst" && pair.dstExited)
      ) {
        continue;
      }
      try {
        const wrong = await probe(side, p.kind);
        sent++;
        if (wrong && !stopped) return new ControlPlaneError(`control plane: ${side.name}: ${wrong}`);
      } catch {
        // The side went away mid-probe (a kill, an exit the flow expects): nothing to judge.
      }
    }
    return null;
  };
  return {
    stop: () => {
      stopped = true;
      cancel?.();
      stop.resolve();
    },
    done: run(),
    sent: () => sent,
  };
}

type Status = { status?: string };

/** The capability that, on, makes the probe's command one that acts (then it is not sent). */
const ACTS_WITH: Partial<Record<ProbeKind, string>> = {
  "continue": "pause-before-switchover",
  "start-postcopy": "postcopy-ram",
  "pause": "postcopy-ram",
  "lost-heartbeat": "x-colo",
};

/**
 * One probe on a side: null when the answer agrees (or the probe would act, and is not sent), else what
 * differs. Throws when the side is gone.
 */
async function probe(side: Side, kind: ProbeKind): Promise<string | null> {
  const q = side.qmp;
  const caps = await q.execute<{ capability: string; state: boolean }[]>("query-migrate-capabilities");
  const on = (name: string) => caps.find((x) => x.capability === name)?.state ?? false;
  const guard = ACTS_WITH[kind];
  if (guard && on(guard)) return null;
  const events = on("events");
  const before = (await q.execute<Status>("query-migrate")).status ?? "none";
  // Not started yet (a deferred destination): this migrate-incoming would be the one that starts it.
  if (kind === "incoming-again" && before === "none") return null;
  const downtime = kind === "bad-downtime"
    ? (await q.execute<Record<string, unknown>>("query-migrate-parameters"))["downtime-limit"]
    : undefined;
  const { command, args } = probeCommand(kind, events);
  const reply = await q.tryExecute(command, args);
  const after = (await q.execute<Status>("query-migrate")).status ?? "none";
  const answer = "error" in reply ? { error: reply.error.desc } : {};
  const statuses = before === after ? [before] : [before, after];
  if (!answerAgrees(kind, statuses, answer)) {
    const got = answer.error !== undefined ? `the error "${answer.error}"` : "an answer";
    const wants = statuses.map((s) => `${describe(expectedAnswer(kind, s))} in '${s}'`).join(" or ");
    const sentText = `${command}${args ? ` ${JSON.stringify(args)}` : ""}`;
    return `${sentText} in status '${before}'${after !== before ? ` (then '${after}')` : ""} got ${got}, ` +
      `expected ${wants}`;
  }
  if (downtime !== undefined) {
    const now = (await q.execute<Record<string, unknown>>("query-migrate-parameters"))["downtime-limit"];
    if (now !== downtime) {
      return `a refused migrate-set-parameters changed downtime-limit from ${downtime} to ${now}`;
    }
  }
  return null;
}

/** The probes as the one-line form a replay carries. */
export function probesText(probes: readonly Probe[]): string {
  return probes.map((p) => `${p.side}:${p.kind}@${p.atMs}`).join(",");
}

/** Parses `probesText`'s form ("src:pause@120,dst:incoming-again@40"). */
export function parseProbes(text: string): Probe[] {
  if (text.trim() === "") return [];
  return text.split(",").map((part) => {
    const m = /^(src|dst):([a-z-]+)@(\d+(?:\.\d+)?)$/.exec(part.trim());
    const kind = PROBE_KINDS.find((k) => k === m?.[2]);
    if (!m || !kind) {
      throw new Error(
        `a probe is SIDE:KIND@MS (side src or dst, kind one of ${PROBE_KINDS.join(", ")}), not '${part}'`,
      );
    }
    return { side: m[1] === "src" ? "src" : "dst", kind, atMs: Number(m[3]) };
  });
}
