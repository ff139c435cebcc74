/**
 * JUnit XML for CI from case results: one testsuite per family (precopy, multifd, colo, ...), one testcase
 * per case run; a skipped case carries <skipped> with its reason, so CI never counts it as a pass.
 */
import type { CaseResult } from "./runner.ts";
import { familyOf } from "./select.ts";

function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
    // XML 1.0 forbids most control characters, which engine stderr can contain.
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");
}

function testcase(classname: string, r: CaseResult): string {
  const head = `    <testcase classname="${esc(classname)}" name="${esc(r.name)}" time="${
    (r.timeMs / 1000).toFixed(3)
  }">`;
  const out = `\n      <system-out>seed=${r.seed}${
    r.artifacts ? ` artifacts=${esc(r.artifacts)}` : ""
  }</system-out>`;
  if (r.skipped !== undefined) {
    return `${head}\n      <skipped message="${esc(r.skipped)}"/>${out}\n    </testcase>`;
  }
  // An expected failure is reported as pytest does: skipped, with the bug it hit.
  if (r.xfail) {
    const why = `XFAIL: known bug ${r.xfail.id} (${r.xfail.versions}): ${r.xfail.summary}`;
    return `${head}\n      <skipped type="xfail" message="${esc(why)}"/>${out}\n    </testcase>`;
  }
  if (r.ok) return `${head}${out}\n    </testcase>`;
  const msg = r.error?.message ?? "failed";
  return `${head}\n      <failure message="${esc(msg.split("\n")[0])}">${
    esc(msg)
  }</failure>${out}\n    </testcase>`;
}

/** `run` names the run (e.g. migtest.engine.full); each suite is `run.family`. */
export function junitXml(run: string, results: readonly CaseResult[]): string {
  const families = new Map<string, CaseResult[]>();
  for (const r of results) {
    const f = familyOf(r.name) || "other";
    families.set(f, [...(families.get(f) ?? []), r]);
  }
  const count = (rs: readonly CaseResult[]) => ({
    tests: rs.length,
    failures: rs.filter((r) => !r.ok && r.skipped === undefined).length,
    skipped: rs.filter((r) => r.skipped !== undefined || r.xfail).length,
    time: (rs.reduce((t, r) => t + r.timeMs, 0) / 1000).toFixed(3),
  });
  const attrs = (c: ReturnType<typeof count>) =>
    `tests="${c.tests}" failures="${c.failures}" skipped="${c.skipped}" time="${c.time}"`;
  const suites = [...families].map(([family, rs]) => {
    const suite = `${run}.${family}`;
    return `  <testsuite name="${esc(suite)}" ${attrs(count(rs))}>\n${
      rs.map((r) => testcase(suite, r)).join("\n")
    }\n  </testsuite>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="${esc(run)}" ${attrs(count(results))}>\n${
    suites.join("\n")
  }\n</testsuites>\n`;
}
