/** JUnit XML for CI from case results (one testsuite, one testcase per case). */
import type { CaseResult } from "./runner.ts";

function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
    // XML 1.0 forbids most control characters, which engine stderr can contain.
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");
}

export function junitXml(suite: string, results: readonly CaseResult[]): string {
  const failures = results.filter((r) => !r.ok).length;
  const time = results.reduce((t, r) => t + r.timeMs, 0) / 1000;
  const cases = results.map((r) => {
    const head = `  <testcase classname="${esc(suite)}" name="${esc(r.name)}" time="${
      (r.timeMs / 1000).toFixed(3)
    }">`;
    const props = `\n    <system-out>seed=${r.seed}${
      r.artifacts ? ` artifacts=${esc(r.artifacts)}` : ""
    }</system-out>`;
    if (r.ok) return `${head}${props}\n  </testcase>`;
    const msg = r.error?.message ?? "failed";
    return `${head}\n    <failure message="${esc(msg.split("\n")[0])}">${
      esc(msg)
    }</failure>${props}\n  </testcase>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<testsuites tests="${results.length}" failures="${failures}" time="${time.toFixed(3)}">\n` +
    `<testsuite name="${esc(suite)}" tests="${results.length}" failures="${failures}" time="${
      time.toFixed(3)
    }">\n` +
    `${cases.join("\n")}\n</testsuite>\n</testsuites>\n`;
}
