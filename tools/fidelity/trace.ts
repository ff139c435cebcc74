/**
 * What one run of a case shows from outside, in either world (the model or a real QEMU), and how two
 * runs compare: pure functions over the QMP transcript and the case's result, so the comparison is
 * tested without starting anything.
 */
import type { QmpTranscriptEntry } from "../../engine/qmp/client.ts";

/** One side's observable trace. */
export interface SideTrace {
  /** The statuses of its MIGRATION events, in order, repeats folded. */
  statuses: string[];
  /** The names of the events it sent, each once, sorted. */
  events: string[];
  /** The last error-desc query-migrate answered, if any. */
  errorDesc?: string;
}

export interface Trace {
  /** The case's verdict as the matrix words it: PASS, FAIL, XFAIL, XPASS, SKIP. */
  verdict: string;
  /** The first line of the failure, when it failed. */
  error?: string;
  source: SideTrace;
  target: SideTrace;
  /** "plausible", "n/a" (no completed precopy to count), or what is implausible. */
  counters: string;
  /** The known QEMU bug the run failed by (an XFAIL): its id. */
  knownBug?: string;
}

/** A device-state save (harness/world/qemu_devices.ts) is the harness reading QEMU, not the case. */
const DEVICE_SAVE = /-devices\.mig/;

/** The trace of one side from the pair's transcript (entries of other sides are ignored). */
export function sideTrace(transcript: readonly QmpTranscriptEntry[], side: string): SideTrace {
  const statuses: string[] = [];
  const events = new Set<string>();
  let errorDesc: string | undefined;
  let inSave = false;
  for (const e of transcript) {
    if (e.side !== side || e.dir === "note") continue;
    if (e.dir === "send") {
      if (DEVICE_SAVE.test(e.text) && e.text.includes('"migrate"')) inSave = true;
      continue;
    }
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(e.text);
    } catch {
      continue;
    }
    if (typeof msg.event === "string") {
      const status = (msg.data as { status?: unknown } | undefined)?.status;
      if (inSave) {
        if (msg.event === "MIGRATION" && (status === "completed" || status === "failed")) inSave = false;
        continue;
      }
      // QEMU reports the harness's teardown (SIGTERM) as SHUTDOWN; the case has ended by then.
      if (
        msg.event === "SHUTDOWN" && (msg.data as { reason?: unknown } | undefined)?.reason === "host-signal"
      ) {
        continue;
      }
      // The model's test hooks (x-test-breakpoint's event): the harness's, with no QEMU counterpart.
      if (msg.event.startsWith("X_TEST_")) continue;
      events.add(msg.event);
      if (msg.event === "MIGRATION" && typeof status === "string" && statuses.at(-1) !== status) {
        statuses.push(status);
      }
      continue;
    }
    const ret = msg.return;
    if (inSave) {
      // Without the events capability (a destination's) the save ends where query-migrate says so.
      const st = (ret as { status?: unknown } | null | undefined)?.status;
      if (st === "completed" || st === "failed") inSave = false;
      continue;
    }
    if (typeof ret === "object" && ret !== null && "error-desc" in ret) {
      const desc = (ret as { "error-desc"?: unknown })["error-desc"];
      if (typeof desc === "string") errorDesc = desc;
    }
  }
  return { statuses, events: [...events].sort(), ...(errorDesc !== undefined ? { errorDesc } : {}) };
}

/** Whether a completed precopy's counters make sense: bytes went over, the dirty log was synced. */
export function countersVerdict(stats: { transferredBytes?: number; dirtySyncCount?: number }): string {
  if (stats.transferredBytes === undefined && stats.dirtySyncCount === undefined) return "n/a";
  const bad: string[] = [];
  if (!(Number(stats.transferredBytes) > 0)) bad.push(`transferred ${stats.transferredBytes}`);
  if (!(Number(stats.dirtySyncCount) >= 1)) bad.push(`dirty-sync-count ${stats.dirtySyncCount}`);
  return bad.length ? `implausible: ${bad.join(", ")}` : "plausible";
}

/** One aspect in which two traces differ, e.g. { aspect: "target.events", detail: "..." }. */
export interface Difference {
  aspect: string;
  detail: string;
}

const show = (v: unknown) => v === undefined ? "none" : Array.isArray(v) ? `[${v.join(",")}]` : String(v);

/** Where the model's trace and QEMU's differ, aspect by aspect (empty: they agree). */
export function compareTraces(model: Trace, qemu: Trace): Difference[] {
  const out: Difference[] = [];
  const cmp = (aspect: string, a: unknown, b: unknown) => {
    if (show(a) !== show(b)) out.push({ aspect, detail: `model ${show(a)}, qemu ${show(b)}` });
  };
  cmp("verdict", model.verdict, qemu.verdict);
  for (const side of ["source", "target"] as const) {
    cmp(`${side}.statuses`, model[side].statuses, qemu[side].statuses);
    const only = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
    const mOnly = only(model[side].events, qemu[side].events);
    const qOnly = only(qemu[side].events, model[side].events);
    if (mOnly.length || qOnly.length) {
      out.push({
        aspect: `${side}.events`,
        detail: `model only ${show(mOnly)}, qemu only ${show(qOnly)}`,
      });
    }
    cmp(`${side}.error-desc`, model[side].errorDesc, qemu[side].errorDesc);
  }
  cmp("counters", model.counters, qemu.counters);
  return out;
}

/** A difference between the model and QEMU that is understood, with why. */
export interface KnownDifference {
  /** Case names it applies to. */
  cases: RegExp;
  /** The aspect it explains (exact, e.g. "target.events"). */
  aspect: string;
  /** The QEMU versions it is seen on ("7.2", "10.0"), matched against the version's start; all if unset. */
  versions?: readonly string[];
  /** When set, only a difference whose detail matches. */
  detail?: RegExp;
  why: string;
}

export type Agreement =
  | { kind: "agree" }
  | { kind: "known"; differences: { difference: Difference; why: string }[] }
  | { kind: "disagree"; differences: Difference[] };

/** The differences classified: all explained by the known table → known; any other → disagree. */
export function classify(
  caseName: string,
  version: string,
  differences: readonly Difference[],
  known: readonly KnownDifference[],
  /** The known QEMU bug QEMU's run failed by: every difference is that bug's (qemu_bugs.ts says how). */
  qemuBug?: string,
): Agreement {
  if (!differences.length) return { kind: "agree" };
  if (qemuBug) {
    const why = `QEMU fails by known bug ${qemuBug} (harness/world/qemu_bugs.ts), the model passes`;
    return { kind: "known", differences: differences.map((difference) => ({ difference, why })) };
  }
  const explained: { difference: Difference; why: string }[] = [];
  const open: Difference[] = [];
  for (const d of differences) {
    const k = known.find((k) =>
      k.cases.test(caseName) && k.aspect === d.aspect &&
      (!k.versions || k.versions.some((v) => version === v || version.startsWith(`${v}.`))) &&
      (!k.detail || k.detail.test(d.detail))
    );
    if (k) explained.push({ difference: d, why: k.why });
    else open.push(d);
  }
  return open.length ? { kind: "disagree", differences: open } : { kind: "known", differences: explained };
}

/** One line for the table: agree, known (aspects), or disagree with the differences. */
export function agreementLine(a: Agreement): string {
  switch (a.kind) {
    case "agree":
      return "agree";
    case "known":
      return `known     ${a.differences.map((d) => d.difference.aspect).join(", ")}`;
    case "disagree":
      return `DISAGREE  ${a.differences.map((d) => `${d.aspect}: ${d.detail}`).join("; ")}`;
  }
}
