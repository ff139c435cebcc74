/**
 * How a case's outcome reads against the known bug it may hit (KnownBug), as one rule for every runner:
 *
 * | outcome                     | bug always strikes | bug intermittent           |
 * | --------------------------- | ------------------ | -------------------------- |
 * | fails with the bug's symptom | xfail (expected)   | xfail (expected)           |
 * | fails otherwise             | fail               | fail                       |
 * | passes                      | xpass (a failure)  | pass, with a note          |
 *
 * XPASS is a failure because a bug that always struck and no longer does means the table is stale (the
 * version range must narrow). An intermittent bug's pass says nothing of the sort, so failing the run
 * would make it flaky; the note keeps the bug visible in the output instead.
 */
import type { KnownBug } from "./world.ts";

export type BugVerdict =
  | { kind: "xfail"; bug: KnownBug }
  | { kind: "xpass"; bug: KnownBug; message: string }
  | { kind: "pass-with-note"; bug: KnownBug; note: string }
  | { kind: "plain" };

export function knownBugVerdict(bug: KnownBug | null, error: Error | undefined): BugVerdict {
  if (!bug) return { kind: "plain" };
  if (error) return bug.symptom.test(error.message) ? { kind: "xfail", bug } : { kind: "plain" };
  if (bug.intermittent) {
    return {
      kind: "pass-with-note",
      bug,
      note: `known intermittent bug ${bug.id} (${bug.versions}) did not strike this run: ${bug.summary}`,
    };
  }
  return {
    kind: "xpass",
    bug,
    message:
      `XPASS: known bug ${bug.id} (${bug.versions}) did not happen: ${bug.summary}. If it is fixed in ` +
      "this version, narrow the bug's versions in the world's table of known bugs",
  };
}
