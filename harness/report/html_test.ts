/**
 * The HTML report: its pure parts, then the page itself in a real headless Chromium — rendered from real
 * case results (a precopy, a COLO case, a failed case, a skipped one), it must have one row per case and
 * every chart must show data (the page's own self-check, read from --dump-dom), and the filters must
 * work. The screenshot is kept in artifacts/report/report.png; MIGTEST_UPDATE_FIXTURES=1 also writes
 * fixtures/report-example.png (the README's picture).
 */
import { quantile } from "./stats.ts";
import assert from "node:assert/strict";
import { ALL_CASES } from "../../cases/all.ts";
import { cannotRunIn, type MigrationCase } from "../families/mod.ts";
import type { PrecopyCase } from "../families/precopy/case.ts";
import { type CaseResult, runCase } from "../runner.ts";
import { simWorld } from "../world/sim.ts";
import {
  caseSeries,
  histogram,
  renderBenchHtml,
  renderHtmlReport,
  type ReportMeta,
  writeHtmlReport,
} from "./html.ts";
import type { Sample } from "./sampler.ts";

const META: ReportMeta = { world: "engine", tier: "smoke", seed: 7, startedAt: "2026-01-02T03:04:05.000Z" };

Deno.test("caseSeries: the source's polls as series in seconds, passes and statuses apart", () => {
  const samples: Sample[] = [
    { kind: "poll", t: 100, side: "source", status: "active", ram: { transferred: 1e6, remaining: 5e6 } },
    { kind: "poll", t: 110, side: "target", status: "active", ram: { transferred: 9e9 } },
    { kind: "pass", t: 150, side: "source", pass: 2 },
    { kind: "poll", t: 600, side: "source", status: "active", ram: { transferred: 3.5e6, mbps: 40 } },
    { kind: "status", t: 650, side: "source", status: "device" },
  ];
  const s = caseSeries(samples);
  assert.deepEqual(s.t, [0.1, 0.6]);
  assert.deepEqual(s.transferredMB, [1, 3.5]);
  assert.deepEqual(s.remainingMB, [5, null]);
  assert.deepEqual(s.mbps, [null, 40]);
  // 2.5 MB in 0.5 s = 40 Mbit/s.
  assert.equal(s.derivedMbps[0], null);
  assert.ok(Math.abs(s.derivedMbps[1]! - 40) < 1e-9);
  assert.deepEqual(s.passes, [{ t: 0.15, pass: 2 }]);
  assert.deepEqual(s.statuses, [{ t: 0.65, status: "device" }]);
});

Deno.test("histogram and quantile: every value in one bin; p99 by rank", () => {
  const xs = [1, 2, 2, 3, 10];
  const h = histogram(xs, 3);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), xs.length);
  assert.deepEqual(h.counts, [4, 0, 1]);
  assert.deepEqual(h.edges, [1, 4, 7]);
  assert.deepEqual(histogram([5, 5]), { edges: [5], counts: [2] });
  assert.deepEqual(histogram([]), { edges: [], counts: [] });
  assert.equal(quantile(xs, 0.99), 10);
  assert.equal(quantile(xs, 0.5), 2);
  assert.equal(quantile([], 0.5), undefined);
});

Deno.test("renderHtmlReport: self-contained, escaped, one row per result with its family and COLO columns", () => {
  const results: CaseResult[] = [
    { name: "/migration/precopy/x<y>", ok: true, seed: 1, timeMs: 12, stats: { transferredBytes: 2e6 } },
    {
      name: "/migration/colo/plain/z",
      ok: true,
      seed: 2,
      timeMs: 3000,
      stats: { colo: { checkpoints: 3, latencyMs: [2, 4, 6], failoverMs: 1.5 } },
    },
  ];
  const html = renderHtmlReport(results, META);
  assert.equal(html.match(/<tr class="case"/g)?.length, 2);
  assert.ok(!/(src|href)="(https?:)?\/\//.test(html), "the page loads something from the network");
  assert.ok(html.includes("uPlot"), "uPlot is not inlined");
  assert.ok(html.includes("/migration/precopy/x&lt;y&gt;") && !html.includes("x<y>"));
  assert.match(html, /data-family="colo" data-result="pass" data-world="engine"/);
  // The COLO columns: 3 checkpoints, mean 4 ms, p99 6 ms, failover 1.5 ms.
  assert.match(html, /<td class="num">3<\/td><td class="num">4\.00 ms<\/td><td class="num">6\.00 ms<\/td>/);
  assert.match(html, /1\.50 ms<\/td><\/tr>/);
});

// ---------------------------------------------------------------------------------------------------
// In a real browser

const BROWSER = Deno.env.get("MIGTEST_CHROMIUM") ?? "chromium";
const INSTALL = `the HTML report test needs Chromium ('${BROWSER}' was not found): ` +
  "apt-get install -y chromium (CI's .ci/run installs it), or set MIGTEST_CHROMIUM to a Chrome binary";
const BROWSER_TIMEOUT_MS = 60_000;

/** Runs headless Chromium on a page with a private profile; resolves to its stdout. */
async function chromium(profile: string, args: string[], what: string): Promise<string> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), BROWSER_TIMEOUT_MS);
  try {
    const out = await new Deno.Command(BROWSER, {
      args: [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        // The page's timers and its next frame run before the dump or the screenshot.
        "--virtual-time-budget=10000",
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
    if (ac.signal.aborted) throw new Error(`chromium took over ${BROWSER_TIMEOUT_MS} ms to ${what}`);
    if (!out.success) {
      const tail = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-5).join("\n  ");
      throw new Error(`chromium failed to ${what} (exit ${out.code}):\n  ${tail}`);
    }
    return new TextDecoder().decode(out.stdout);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(INSTALL);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** The page's self-check: the data- attributes of <body> in the DOM Chromium dumps. */
function selfCheck(dom: string): Record<string, string> {
  const body = dom.match(/<body([^>]*)>/)?.[1] ?? "";
  return Object.fromEntries([...body.matchAll(/data-([a-z-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

/** How many charts a result gets: three over time with samples, two more with COLO latencies. */
function chartsOf(r: CaseResult): number {
  const polls = (r.samples ?? []).some((s) => s.kind === "poll" && s.side === "source");
  return (polls ? 3 : 0) + (r.stats.colo?.latencyMs.length ? 2 : 0);
}

/** What is wrong with a dumped page of `results` (empty: nothing). */
function pageProblems(check: Record<string, string>, results: readonly CaseResult[]): string[] {
  const problems: string[] = [];
  if (check["report-ready"] !== "1") problems.push("the page's script did not finish");
  if (check.rows !== String(results.length)) problems.push(`${check.rows} rows for ${results.length} cases`);
  const charts = results.reduce((n, r) => n + chartsOf(r), 0);
  if (check.canvases !== String(charts)) problems.push(`${check.canvases} canvases for ${charts} charts`);
  if (check.painted !== check.canvases) {
    problems.push(`only ${check.painted} of ${check.canvases} charts show data`);
  }
  if (check["chart-errors"] !== "0") problems.push(`${check["chart-errors"]} charts failed`);
  return problems;
}

function caseNamed(name: string): MigrationCase {
  const c = ALL_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
}

/** A byte of page data corrupted in flight: the RAM check fails (a real failed result, with samples). */
const corrupted: PrecopyCase = {
  name: "/migration/report/corrupted-page",
  tier: "smoke",
  flow: "precopy",
  why: "a failed case in the report",
  transport: "unix",
  srcParams: { "zero-page-detection": "none" },
  fault: { kind: "corrupt", offset: 120 + 40 * (8 + 4096) + 0x64, xor: 0x5a },
};

const ROOT = new URL("../../", import.meta.url);

Deno.test("HTML report in headless Chromium: a row per case, every chart drawn with data, filters", async () => {
  const results: CaseResult[] = [];
  for (
    const c of [
      caseNamed("/migration/precopy/tcp/plain"),
      caseNamed("/migration/colo/plain/secondary_failover"),
    ]
  ) {
    const r = await runCase(c, { seed: 7, artifactsDir: null });
    assert.ok(r.ok, r.error?.message);
    results.push(r);
  }
  const failed = await runCase(corrupted, { seed: 7, artifactsDir: null });
  assert.ok(!failed.ok, "the corrupted case passed");
  results.push(failed);
  const skipped = caseNamed("/migration/precopy/unix/plain");
  results.push({
    name: skipped.name,
    ok: true,
    skipped: cannotRunIn(simWorld, skipped) ?? "",
    seed: 7,
    timeMs: 0,
    stats: {},
  });
  assert.ok(results[1].stats.colo?.latencyMs.length, "the COLO case has no checkpoint latencies");

  const dir = await Deno.makeTempDir({ prefix: "migtest-report-" });
  try {
    const page = `${dir}/report.html`;
    await writeHtmlReport(page, results, META);
    const url = new URL(`file://${page}`).href;
    const check = selfCheck(await chromium(`${dir}/profile`, ["--dump-dom", url], "render the report"));
    assert.deepEqual(pageProblems(check, results), [], JSON.stringify(check));
    assert.equal(check.canvases, "11"); // 3 + (3 + 2) + 3: the skipped case has none
    assert.equal(check["rows-shown"], "4");
    // A filter in the link shows only the matching rows.
    const fails = selfCheck(await chromium(`${dir}/profile`, ["--dump-dom", `${url}#result=fail`], "filter"));
    assert.equal(fails["rows-shown"], "1");
    const colo = selfCheck(await chromium(`${dir}/profile`, ["--dump-dom", `${url}#family=colo`], "filter"));
    assert.equal(colo["rows-shown"], "1");

    const shot = `${dir}/report.png`;
    await chromium(
      `${dir}/profile`,
      ["--hide-scrollbars", "--window-size=1280,1900", `--screenshot=${shot}`, url],
      "take a screenshot",
    );
    const png = await Deno.readFile(shot);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "the screenshot is not a PNG");
    const keep = new URL("artifacts/report/", ROOT);
    await Deno.mkdir(keep, { recursive: true });
    await Deno.writeFile(new URL("report.png", keep), png);
    await Deno.copyFile(page, new URL("report.html", keep));
    if (Deno.env.get("MIGTEST_UPDATE_FIXTURES") === "1") {
      await Deno.writeFile(new URL("fixtures/report-example.png", ROOT), png);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("HTML report in headless Chromium: the self-check fails on a blank chart and a missing row", async () => {
  // Polls without RAM counters (what a broken sampler would give): three charts with nothing in them.
  const blank: CaseResult = {
    name: "/migration/precopy/blank",
    ok: true,
    seed: 1,
    timeMs: 100,
    stats: {},
    samples: [
      { kind: "poll", t: 10, side: "source", status: "active" },
      { kind: "poll", t: 110, side: "source", status: "active" },
    ],
  };
  const drawn: CaseResult = {
    ...blank,
    name: "/migration/precopy/drawn",
    samples: [
      {
        kind: "poll",
        t: 10,
        side: "source",
        status: "active",
        ram: { transferred: 1e6, remaining: 2e6, mbps: 8 },
      },
      {
        kind: "poll",
        t: 110,
        side: "source",
        status: "active",
        ram: { transferred: 3e6, remaining: 0, mbps: 9 },
      },
    ],
  };
  const dir = await Deno.makeTempDir({ prefix: "migtest-report-" });
  try {
    await Deno.writeTextFile(`${dir}/blank.html`, renderHtmlReport([blank, drawn], META));
    const check = selfCheck(
      await chromium(`${dir}/profile`, ["--dump-dom", `file://${dir}/blank.html`], "render"),
    );
    assert.deepEqual(pageProblems(check, [blank, drawn]), ["only 3 of 6 charts show data"]);
    assert.deepEqual(pageProblems(check, [blank, drawn, drawn]), [
      "2 rows for 3 cases",
      "6 canvases for 9 charts",
      "only 3 of 6 charts show data",
    ]);
    // The bench page: a bar per ratio.
    await Deno.writeTextFile(
      `${dir}/bench.html`,
      renderBenchHtml({
        startedAt: META.startedAt,
        ratios: [
          { name: "engine precopy", baseline: "raw unix socket", ratio: 0.72, aim: 0.6 },
          { name: "QMP p99 during load", baseline: "idle", ratio: 3.1, lowerIsBetter: true },
        ],
      }),
    );
    const bench = await chromium(
      `${dir}/profile`,
      ["--dump-dom", `file://${dir}/bench.html`],
      "render the bench",
    );
    assert.equal(bench.match(/<tr class="ratio"/g)?.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
