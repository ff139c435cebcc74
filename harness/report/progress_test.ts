import assert from "node:assert/strict";
import { CLEAR_LINE, ProgressLine, progressText } from "./progress.ts";
import type { Sample } from "./sampler.ts";

const precopy: Sample[] = [
  { kind: "poll", t: 100, side: "source", status: "setup" },
  { kind: "pass", t: 150, side: "source", pass: 1 },
  {
    kind: "poll",
    t: 200,
    side: "source",
    status: "active",
    ram: {
      transferred: 52_400_000,
      remaining: 12_000_000,
      dirtySyncCount: 3,
      dirtyPagesRate: 1520,
      mbps: 812.4,
    },
  },
  { kind: "poll", t: 210, side: "target", status: "active" },
];

Deno.test("progressText: status, pass, MB sent, remaining, dirty rate and bandwidth of the latest sample", () => {
  assert.equal(
    progressText("/migration/precopy/tcp/plain", precopy, 3250),
    "/migration/precopy/tcp/plain  3.3 s  active  pass 3  sent 52.4 MB  remaining 12.0 MB  " +
      "dirty 1520 pages/s  812 Mbps",
  );
});

Deno.test("progressText: before any sample; the target's status when it differs; COLO checkpoints", () => {
  assert.equal(progressText("/a", [], 2100), "/a  2.1 s  starting");
  const colo: Sample[] = [
    {
      kind: "poll",
      t: 1,
      side: "source",
      status: "colo",
      ram: { transferred: 2e6, remaining: 0 },
      checkpoints: 7,
    },
    { kind: "poll", t: 2, side: "target", status: "colo" },
  ];
  assert.equal(progressText("/c", colo, 5000), "/c  5.0 s  colo  sent 2.0 MB  checkpoints 7");
  const behind: Sample[] = [...precopy, { kind: "poll", t: 300, side: "target", status: "completed" }];
  assert.match(progressText("/p", behind, 4000), /active {2}\(target completed\) {2}pass 3/);
  // Only the target answered so far: its status is the line's.
  assert.equal(
    progressText("/t", [{ kind: "poll", t: 1, side: "target", status: "active" }], 3000),
    "/t  3.0 s  active",
  );
});

Deno.test("ProgressLine: nothing before 2 s, redrawn in place at most every 250 ms, erased by done()", () => {
  const out: string[] = [];
  const line = new ProgressLine((s) => out.push(s), true);
  line.update("/a", precopy, 1999);
  assert.equal(out.length, 0);
  line.update("/a", precopy, 2000);
  line.update("/a", precopy, 2100); // too soon
  line.update("/a", precopy, 2250);
  assert.equal(out.length, 2);
  assert.ok(out.every((s) => s.startsWith(CLEAR_LINE) && !s.includes("\n")));
  assert.match(out[1], /2\.3 s {2}active/);
  line.done();
  assert.equal(out.at(-1), CLEAR_LINE);
  // A new case draws at once (its own 2 s permitting); done() with nothing shown writes nothing.
  line.update("/b", precopy, 2010);
  assert.ok(out.at(-1)!.startsWith(CLEAR_LINE + "/b "));
  line.done();
  const n = out.length;
  line.done();
  assert.equal(out.length, n);
});

Deno.test("ProgressLine: not a terminal (CI) prints nothing; a narrow terminal gets a cut line", () => {
  const out: string[] = [];
  const ci = new ProgressLine((s) => out.push(s), false);
  ci.update("/a", precopy, 10_000);
  ci.done();
  assert.equal(out.length, 0);
  const narrow = new ProgressLine((s) => out.push(s), true, { columns: () => 20 });
  narrow.update("/migration/precopy/tcp/plain", precopy, 3000);
  assert.equal(out[0], CLEAR_LINE + "/migration/precopy…");
  assert.equal(out[0].length - CLEAR_LINE.length, 19);
});
