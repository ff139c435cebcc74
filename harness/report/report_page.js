// The report page's own script (inlined by html.ts after uPlot): the filters, the charts, and a
// self-check a headless browser can read: <body data-rows data-rows-shown data-canvases data-painted
// data-chart-errors data-report-ready>.
// It runs in the browser, not in Deno, so it uses only the DOM and the uPlot global.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const body = document.body;

  // Filters: a row or case section shows when it matches every select that has a value.
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  function applyFilters() {
    const want = selects.map((s) => [s.dataset.filter, s.value]).filter((kv) => kv[1] !== "");
    let shown = 0;
    const rows = document.querySelectorAll("tr.case");
    for (const el of document.querySelectorAll("tr.case, section.case")) {
      const ok = want.every((kv) => el.dataset[kv[0]] === kv[1]);
      el.classList.toggle("hidden", !ok);
      if (ok && el.tagName === "TR") shown++;
    }
    const label = document.getElementById("shown");
    if (label) label.textContent = `${shown} of ${rows.length} cases shown`;
  }
  // The filters live in the URL hash too (#result=fail&family=colo): a link keeps its view.
  const fromHash = new URLSearchParams(location.hash.slice(1));
  for (const s of selects) {
    const v = fromHash.get(s.dataset.filter);
    if (v !== null && Array.from(s.options).some((o) => o.value === v)) s.value = v;
    s.addEventListener("change", () => {
      applyFilters();
      const q = new URLSearchParams();
      for (const x of selects) if (x.value) q.set(x.dataset.filter, x.value);
      history.replaceState(null, "", q.toString() ? `#${q}` : location.pathname);
    });
  }
  if (selects.length) applyFilters();

  const COLORS = {
    sent: "#3358d4",
    remaining: "#d97706",
    dirty: "#9333ea",
    mbps: "#0891b2",
    derived: "#12805c",
    latency: "#3358d4",
    hist: "#9333ea",
  };
  const plots = [];
  let errors = 0;

  // Pass boundaries and status marks as DOM lines over the plot, not on the canvas, so the canvas
  // check below sees the series alone.
  function markers(marks) {
    return (u) => {
      for (const old of u.over.querySelectorAll(".mark")) old.remove();
      for (const m of marks) {
        const x = u.valToPos(m.t, "x");
        if (!(x >= 0 && x <= u.over.clientWidth)) continue;
        const el = document.createElement("div");
        el.className = "mark";
        el.title = m.label;
        el.style.cssText = `position:absolute;top:0;bottom:0;left:${x}px;width:0;` +
          `border-left:${m.style}`;
        u.over.appendChild(el);
      }
    };
  }

  function chart(into, title, opts, values, marks) {
    const box = document.createElement("div");
    box.className = "chart";
    const head = document.createElement("div");
    head.className = "title";
    head.textContent = title;
    box.appendChild(head);
    into.appendChild(box);
    try {
      const u = new uPlot(
        Object.assign({ width: 360, height: 200, legend: { live: false } }, opts, {
          hooks: { draw: marks ? [markers(marks)] : [] },
        }),
        values,
        box,
      );
      plots.push(u);
    } catch (e) {
      errors++;
      head.textContent = `${title}: ${e}`;
    }
  }

  // Counts and sizes start at 0, so a chart does not magnify a small change.
  const fromZero = (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1];
  const xAxis = (label) => ({ label, size: 36, labelSize: 16 });
  // uPlot takes an explicit `scale: undefined` as a scale named "undefined": set it only when given.
  const yAxis = (label, scale, side) =>
    Object.assign(
      { label, side: side ?? 3, size: 58, labelSize: 16, grid: { show: side !== 1 } },
      scale ? { scale } : {},
    );
  const line = (label, color, scale, fill) =>
    Object.assign(
      { label, stroke: color, width: 2, points: { show: false }, spanGaps: true },
      scale ? { scale } : {},
      fill ? { fill: color + "18" } : {},
    );

  for (const c of data.cases ?? []) {
    const into = document.querySelector(`.charts[data-case="${c.id}"]`);
    if (!into) continue;
    const s = c.series;
    if (s) {
      const marks = s.passes.map((p) => ({
        t: p.t,
        label: `pass ${p.pass}`,
        style: "1px dashed rgba(29,35,48,.45)",
      }));
      for (const st of s.statuses) {
        if (st.status === "device") marks.push({ t: st.t, label: "switchover", style: "2px solid #c4320a" });
        if (st.status === "completed") {
          marks.push({ t: st.t, label: "completed", style: "2px solid #12805c" });
        }
      }
      const x = { x: { time: false } };
      chart(
        into,
        "bytes sent (MB)",
        {
          scales: Object.assign({ y: { range: fromZero } }, x),
          axes: [xAxis("s"), yAxis("MB")],
          series: [{ label: "s" }, line("sent", COLORS.sent, "y", true)],
        },
        [s.t, s.transferredMB],
        marks,
      );
      chart(
        into,
        "remaining (MB) and dirty pages/s",
        {
          scales: Object.assign({ rate: { auto: true } }, x),
          axes: [xAxis("s"), yAxis("MB", "y"), yAxis("pages/s", "rate", 1)],
          series: [
            { label: "s" },
            line("remaining", COLORS.remaining, "y"),
            line("dirty", COLORS.dirty, "rate"),
          ],
        },
        [s.t, s.remainingMB, s.dirtyPagesRate],
        marks,
      );
      chart(
        into,
        "bandwidth (Mbit/s)",
        {
          scales: x,
          axes: [xAxis("s"), yAxis("Mbit/s")],
          series: [
            { label: "s" },
            line("reported", COLORS.mbps, "y"),
            line("from bytes sent", COLORS.derived, "y"),
          ],
        },
        [s.t, s.mbps, s.derivedMbps],
        marks,
      );
    }
    if (c.colo) {
      const n = c.colo.latencyMs.map((_, i) => i + 1);
      chart(into, "checkpoint latency (ms, request → vmstate-loaded)", {
        scales: { x: { time: false } },
        axes: [
          Object.assign(xAxis("checkpoint"), { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }),
          yAxis("ms"),
        ],
        series: [{ label: "#" }, {
          label: "latency",
          stroke: COLORS.latency,
          width: 2,
          points: { show: true, size: 6, fill: COLORS.latency },
        }],
      }, [n, c.colo.latencyMs]);
      const h = c.colo.hist;
      const w = h.edges.length > 1 ? h.edges[1] - h.edges[0] : 1;
      const lo = h.edges.length ? h.edges[0] : 0;
      const hi = h.edges.length ? h.edges[h.edges.length - 1] + w : 1;
      chart(into, "checkpoint latency histogram", {
        scales: {
          x: { time: false, range: [lo, hi] },
          y: { range: fromZero },
        },
        axes: [
          xAxis("ms"),
          Object.assign(yAxis("checkpoints"), { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }),
        ],
        series: [{ label: "ms" }, {
          label: "count",
          stroke: COLORS.hist,
          fill: COLORS.hist + "99",
          paths: uPlot.paths.bars({ size: [0.9, 80] }),
          points: { show: false },
        }],
      }, [h.edges.map((e) => e + w / 2), h.counts]);
    }
  }

  // A canvas shows data when its plotting area has coloured pixels (grid lines and text are grey).
  function painted(u) {
    const b = u.bbox;
    if (!(b.width > 0 && b.height > 0)) return false;
    const px = u.ctx.getImageData(b.left, b.top, b.width, b.height).data;
    for (let i = 0; i < px.length; i += 4) {
      const spread = Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]);
      if (px[i + 3] > 0 && spread > 40) return true;
    }
    return false;
  }

  function selfCheck() {
    body.dataset.rows = String(document.querySelectorAll("tr.case").length);
    body.dataset.rowsShown = String(document.querySelectorAll("tr.case:not(.hidden)").length);
    body.dataset.canvases = String(document.querySelectorAll("canvas").length);
    body.dataset.painted = String(plots.filter(painted).length);
    body.dataset.chartErrors = String(errors);
    body.dataset.reportReady = "1";
  }
  // uPlot draws on the next frame: check after it.
  requestAnimationFrame(() => setTimeout(selfCheck, 0));
})();
