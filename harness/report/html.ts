/**
 * The HTML report of a run: one self-contained file (uPlot and its CSS inlined, no network needed) with
 * the results table, filterable by family, result and world, and per case with samples the bytes sent,
 * remaining/dirty and bandwidth over time, the passes and the switchover marked; for COLO the latency
 * of each checkpoint and their histogram. The page's own script draws the charts from the JSON embedded
 * here and then says, in `data-` attributes of <body>, how many canvases it drew and how many show data
 * (the browser test reads them). `renderBenchHtml` does the bench's ratios as bars.
 */
import { mean, quantile } from "./stats.ts";
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import type { CaseResult } from "../runner.ts";
import { familyOf } from "../select.ts";
import pageJs from "./report_page.js" with { type: "text" };
import type { Sample } from "./sampler.ts";

/** The run a report is about (the matrix's JSON `run` record, plus when it started). */
export interface ReportMeta {
  /** The run's world (engine, qemu, sim): every result's unless it names its own. */
  world: string;
  /** The tier run, or null when cases were selected by name. */
  tier?: string | null;
  seed: number;
  /** When the run started (a Date or an ISO string). */
  startedAt: Date | string;
  /** The run's wall time. */
  wallMs?: number;
  /** The page's title (default "migtest report"). */
  title?: string;
}

/** A case result, optionally naming the world it ran in (a report may merge runs of several worlds). */
export type ReportResult = CaseResult & { world?: string };

/** xfail: a known bug happened (expected); xpass: a known bug did not (a failure to look at). */
export type ResultKind = "pass" | "fail" | "skip" | "xfail" | "xpass";

export function resultOf(r: CaseResult): ResultKind {
  return r.skipped !== undefined ? "skip" : r.xfail ? "xfail" : r.xpass ? "xpass" : r.ok ? "pass" : "fail";
}

/** The time series of one case as the page plots them (seconds; null where a sample lacks a value). */
export interface CaseSeries {
  t: number[];
  transferredMB: (number | null)[];
  remainingMB: (number | null)[];
  dirtyPagesRate: (number | null)[];
  mbps: (number | null)[];
  /** Bandwidth from the growth of `transferred` between two samples (Mbit/s). */
  derivedMbps: (number | null)[];
  /** Pass boundaries (MIGRATION_PASS on the source), seconds. */
  passes: { t: number; pass: number }[];
  /** Status changes of the source: `device` is the switchover. */
  statuses: { t: number; status: string }[];
}

/** The source's polls as series (the source is where QEMU reports the RAM counters). */
export function caseSeries(samples: readonly Sample[]): CaseSeries {
  const out: CaseSeries = {
    t: [],
    transferredMB: [],
    remainingMB: [],
    dirtyPagesRate: [],
    mbps: [],
    derivedMbps: [],
    passes: [],
    statuses: [],
  };
  let prev: { t: number; bytes: number } | undefined;
  for (const s of samples) {
    if (s.side !== "source") continue;
    const t = s.t / 1000;
    if (s.kind === "pass") out.passes.push({ t, pass: s.pass });
    else if (s.kind === "status") out.statuses.push({ t, status: s.status });
    else {
      const ram = s.ram;
      out.t.push(t);
      out.transferredMB.push(ram?.transferred !== undefined ? ram.transferred / 1e6 : null);
      out.remainingMB.push(ram?.remaining !== undefined ? ram.remaining / 1e6 : null);
      out.dirtyPagesRate.push(ram?.dirtyPagesRate ?? null);
      out.mbps.push(ram?.mbps ?? null);
      const bytes = ram?.transferred;
      out.derivedMbps.push(
        bytes !== undefined && prev && t > prev.t && bytes >= prev.bytes
          ? (bytes - prev.bytes) * 8 / 1e6 / (t - prev.t)
          : null,
      );
      if (bytes !== undefined) prev = { t, bytes };
    }
  }
  return out;
}

/** Equal-width bins over [min, max] (at least one): each bin's lower edge and its count. */
export function histogram(xs: readonly number[], bins = 12): { edges: number[]; counts: number[] } {
  if (!xs.length) return { edges: [], counts: [] };
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const n = hi > lo ? Math.min(bins, xs.length) : 1;
  const width = hi > lo ? (hi - lo) / n : 1;
  const counts = new Array<number>(n).fill(0);
  for (const x of xs) counts[Math.min(n - 1, Math.floor((x - lo) / width))]++;
  return { edges: counts.map((_, i) => lo + i * width), counts };
}

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** JSON safe inside a <script> element (no `</script>`, no `<!--`). */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, "\\u003c");

const fmtMs = (t?: number) =>
  t === undefined ? "–" : t >= 10_000 ? `${(t / 1000).toFixed(1)} s` : `${Math.round(t)} ms`;
const fmtMsFine = (t?: number) => t === undefined ? "–" : `${t.toFixed(t < 10 ? 2 : 1)} ms`;
const fmtMB = (b?: number) => b === undefined ? "–" : `${(b / 1e6).toFixed(1)} MB`;
const slug = (name: string, i: number) =>
  `case-${i}-${name.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}`;

/** A table row per result; the COLO columns are filled for COLO cases only. */
function row(r: ReportResult, i: number, world: string, charted: boolean): string {
  const kind = resultOf(r);
  const s = r.stats;
  const colo = s.colo;
  const family = familyOf(r.name);
  const why = kind === "skip"
    ? `<div class="why">${esc(r.skipped ?? "")}</div>`
    : kind === "fail" && r.error
    ? `<details class="why"><summary>${esc(r.error.message.split("\n")[0])}</summary><pre>${
      esc(r.error.message)
    }</pre></details>`
    : "";
  const name = charted ? `<a href="#${slug(r.name, i)}">${esc(r.name)}</a>` : esc(r.name);
  const cells = [
    `<td class="name">${name}${why}</td>`,
    `<td>${esc(family)}</td>`,
    `<td><span class="badge ${kind}">${kind}</span></td>`,
    `<td>${esc(world)}</td>`,
    `<td class="num">${r.seed}</td>`,
    `<td class="num">${kind === "skip" ? "–" : fmtMs(r.timeMs)}</td>`,
    `<td class="num">${fmtMs(s.downtimeMs)}</td>`,
    `<td class="num">${fmtMB(s.transferredBytes)}</td>`,
    `<td class="num">${s.dirtySyncCount ?? "–"}</td>`,
    `<td class="num">${colo ? colo.checkpoints : "–"}</td>`,
    `<td class="num">${fmtMsFine(colo ? mean(colo.latencyMs) : undefined)}</td>`,
    `<td class="num">${fmtMsFine(colo ? quantile(colo.latencyMs, 0.99) : undefined)}</td>`,
    `<td class="num">${fmtMsFine(colo?.failoverMs)}</td>`,
  ];
  return `<tr class="case" data-family="${esc(family)}" data-result="${kind}" data-world="${esc(world)}">${
    cells.join("")
  }</tr>`;
}

function options(label: string, key: string, values: string[]): string {
  const opts = values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
  return `<label>${label} <select data-filter="${key}"><option value="">all</option>${opts}</select></label>`;
}

/** The CSS of both pages (uPlot's own is inlined beside it). */
const CSS = `
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f6f7f9; --card:#fff; --pass:#12805c;
  --fail:#c4320a; --skip:#98a2b3; --accent:#3358d4; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:20px 28px 12px; background:var(--card); border-bottom:1px solid var(--line); }
h1 { margin:0 0 4px; font-size:20px; } h2 { font-size:16px; margin:28px 0 10px; } h3 { font-size:14px; margin:0 0 8px; }
.meta { color:var(--muted); } .meta b { color:var(--fg); font-weight:600; }
.tally { display:flex; gap:10px; margin-top:10px; }
.tally span { padding:3px 10px; border-radius:12px; font-weight:600; color:#fff; }
main { padding:8px 28px 40px; }
.filters { display:flex; gap:16px; align-items:center; margin:16px 0 8px; color:var(--muted); }
select { font:inherit; padding:2px 6px; }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line); }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f2f5; font-weight:600; font-size:12px; color:var(--muted); white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.name { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12px; overflow-wrap:anywhere; }
td.name a { color:var(--accent); text-decoration:none; }
.why { color:var(--muted); font-family:system-ui,sans-serif; font-size:12px; margin-top:2px; }
.why pre { white-space:pre-wrap; font-size:11.5px; color:var(--fail); }
.badge { display:inline-block; min-width:40px; text-align:center; padding:1px 8px; border-radius:10px; color:#fff; font-size:12px; font-weight:600; }
.badge.pass, .tally .pass { background:var(--pass); } .badge.fail, .tally .fail { background:var(--fail); }
.badge.skip, .tally .skip { background:var(--skip); }
.badge.xfail, .tally .xfail { background:#8a6d1a; } .badge.xpass, .tally .xpass { background:var(--fail); }
tr.hidden, section.hidden { display:none; }
section.case { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:14px 0; }
section.case h3 { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; }
.charts { display:flex; flex-wrap:wrap; gap:14px; }
.chart { flex:0 0 auto; } .chart .title { font-size:12px; color:var(--muted); margin-bottom:2px; }
.legend-note { font-size:12px; color:var(--muted); margin-top:6px; }
.u-legend { font-size:11px; margin-top:-4px; } .u-legend .u-marker { width:10px; height:10px; }
.bars td.bar { width:55%; } .bar .track { position:relative; height:18px; background:#eef1f6; border-radius:4px; }
.bar .fill { position:absolute; left:0; top:0; bottom:0; border-radius:4px; background:var(--accent); }
.bar .aim { position:absolute; top:-3px; bottom:-3px; width:2px; background:var(--fail); }
.bar .full { position:absolute; top:-3px; bottom:-3px; width:1px; background:var(--fg); opacity:.5; }
`;

function page(title: string, body: string, data: unknown): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${uplotCss}</style><style>${CSS}</style>
</head><body>
${body}
<script type="application/json" id="report-data">${scriptJson(data)}</script>
<script>${uplotJs}</script>
<script>${pageJs}</script>
</body></html>
`;
}

/** What the page's script needs to draw one case's charts. */
interface ChartCase {
  id: string;
  name: string;
  series?: CaseSeries;
  colo?: { latencyMs: number[]; hist: { edges: number[]; counts: number[] } };
}

export function renderHtmlReport(results: readonly ReportResult[], meta: ReportMeta): string {
  const title = meta.title ?? "migtest report";
  const started = typeof meta.startedAt === "string" ? meta.startedAt : meta.startedAt.toISOString();
  const worldOf = (r: ReportResult) => r.world ?? meta.world;
  const charts: ChartCase[] = [];
  const rows = results.map((r, i) => {
    const polls = (r.samples ?? []).some((s) => s.kind === "poll" && s.side === "source");
    const latency = r.stats.colo?.latencyMs ?? [];
    const c: ChartCase = { id: slug(r.name, i), name: r.name };
    if (polls) c.series = caseSeries(r.samples ?? []);
    if (latency.length) c.colo = { latencyMs: latency, hist: histogram(latency) };
    if (c.series || c.colo) charts.push(c);
    return row(r, i, worldOf(r), !!(c.series || c.colo));
  });
  const tally = (k: ResultKind) => results.filter((r) => resultOf(r) === k).length;
  const uniq = (xs: string[]) => [...new Set(xs)].sort();
  const head = [
    "case",
    "family",
    "result",
    "world",
    "seed",
    "time",
    "downtime",
    "transferred",
    "syncs",
    "checkpoints",
    "ckpt mean",
    "ckpt p99",
    "failover",
  ].map((h, i) => `<th class="${i >= 4 ? "num" : ""}">${h}</th>`).join("");
  const sections = charts.map((c) => {
    const r = results.find((x, i) => slug(x.name, i) === c.id);
    const kind = r ? resultOf(r) : "pass";
    return `<section class="case" id="${c.id}" data-family="${
      esc(familyOf(c.name))
    }" data-result="${kind}" ` +
      `data-world="${esc(r ? worldOf(r) : meta.world)}"><h3>${
        esc(c.name)
      } <span class="badge ${kind}">${kind}</span></h3>` +
      `<div class="charts" data-case="${c.id}"></div></section>`;
  }).join("\n");
  const body = `<header><h1>${esc(title)}</h1><div class="meta">world <b>${esc(meta.world)}</b> · tier <b>${
    esc(meta.tier ?? "selected")
  }</b> · seed <b>${meta.seed}</b> · started <b>${esc(started)}</b>${
    meta.wallMs !== undefined ? ` · wall <b>${(meta.wallMs / 1000).toFixed(1)} s</b>` : ""
  } · ${results.length} cases</div>
<div class="tally"><span class="pass">${tally("pass")} passed</span><span class="fail">${
    tally("fail")
  } failed</span><span class="skip">${tally("skip")} skipped</span>${
    tally("xfail") ? `<span class="xfail">${tally("xfail")} xfailed</span>` : ""
  }${tally("xpass") ? `<span class="xpass">${tally("xpass")} xpassed</span>` : ""}</div></header>
<main>
<div class="filters">${options("family", "family", uniq(results.map((r) => familyOf(r.name))))}${
    options("result", "result", ["pass", "fail", "skip", "xfail", "xpass"])
  }${options("world", "world", uniq(results.map(worldOf)))}<span id="shown"></span></div>
<table class="results"><thead><tr>${head}</tr></thead><tbody>
${rows.join("\n")}
</tbody></table>
<h2>Over time</h2>
<div class="legend-note">Source side, from query-migrate every ~100 ms. Dashed lines: dirty-bitmap passes
(MIGRATION_PASS); red: the switchover (status <code>device</code>); green: <code>completed</code>.</div>
${sections || '<p class="legend-note">No case has samples.</p>'}
</main>`;
  return page(title, body, { kind: "report", cases: charts });
}

/** Writes the report of `results` to `path` (the matrix's `--html FILE`). */
export async function writeHtmlReport(
  path: string,
  results: readonly ReportResult[],
  meta: ReportMeta,
): Promise<void> {
  await Deno.writeTextFile(path, renderHtmlReport(results, meta));
}

/** One bench measurement against its baseline from the same run. */
export interface BenchRatio {
  /** What was measured, e.g. "multifd nocomp, 4 channels". */
  name: string;
  /** What it is compared with, e.g. "raw unix socket". */
  baseline: string;
  /** measured / baseline (1 = as fast as the baseline). */
  ratio: number;
  /** The ratio aimed at, when there is one (drawn as a mark). */
  aim?: number;
  /** True when a smaller ratio is better (a latency). */
  lowerIsBetter?: boolean;
  /** The two values as printed, e.g. "2.10 GB/s of 3.50 GB/s". */
  detail?: string;
}

export interface BenchResults {
  startedAt: Date | string;
  ratios: BenchRatio[];
  /** Further printed lines worth keeping (the smoke tier's wall time, COLO latencies). */
  notes?: string[];
}

export function renderBenchHtml(bench: BenchResults): string {
  const started = typeof bench.startedAt === "string" ? bench.startedAt : bench.startedAt.toISOString();
  // One scale for every bar: up to the largest ratio or aim, at least 100 %.
  const top = Math.max(1, ...bench.ratios.map((r) => Math.max(r.ratio, r.aim ?? 0))) * 1.05;
  const pct = (x: number) => `${(x / top * 100).toFixed(2)}%`;
  const rows = bench.ratios.map((r) => {
    const ok = r.aim === undefined || (r.lowerIsBetter ? r.ratio <= r.aim : r.ratio >= r.aim);
    const aim = r.aim !== undefined ? `<div class="aim" style="left:${pct(r.aim)}" title="aim"></div>` : "";
    const value = r.lowerIsBetter ? `${r.ratio.toFixed(1)}×` : `${(r.ratio * 100).toFixed(0)} %`;
    return `<tr class="ratio"><td>${esc(r.name)}<div class="why">vs ${esc(r.baseline)}${
      r.detail ? ` · ${esc(r.detail)}` : ""
    }</div></td><td class="bar"><div class="track"><div class="fill" style="width:${
      pct(r.ratio)
    };background:${ok ? "var(--accent)" : "var(--fail)"}"></div><div class="full" style="left:${
      pct(1)
    }"></div>${aim}</div></td><td class="num">${value}${
      r.aim !== undefined
        ? ` <span class="why">(aim ${r.lowerIsBetter ? "≤" : "≥"} ${
          r.lowerIsBetter ? `${r.aim}×` : `${(r.aim * 100).toFixed(0)} %`
        })</span>`
        : ""
    }</td></tr>`;
  }).join("\n");
  const notes = (bench.notes ?? []).map((n) => `<li>${esc(n)}</li>`).join("");
  const body = `<header><h1>migtest bench</h1><div class="meta">started <b>${
    esc(started)
  }</b> · ${bench.ratios.length} ratios against baselines measured in the same run (thin line: 100 %, red mark: the aim)</div></header>
<main><table class="bars"><thead><tr><th>measurement</th><th>ratio to its baseline</th><th class="num">ratio</th></tr></thead>
<tbody>${rows}</tbody></table>${notes ? `<h2>Notes</h2><ul>${notes}</ul>` : ""}</main>`;
  return page("migtest bench", body, { kind: "bench" });
}
