// Metrics per method: call rate, error rate and latency percentiles, from each replica's /metrics.
import { colour, fmtMs, h, live, onLeave, page, panel, svg } from "/static/core.js";

const history = new Map();  // "Service.method" → recent rates, for the sparklines

function spark(values) {
  const w = 120, hgt = 26, max = Math.max(...values, 0.0001);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(" ");
  return svg("svg", { class: "spark", width: w, height: hgt }, svg("polyline", { points, fill: "none", stroke: "#4f46e5", "stroke-width": 1.6 }));
}

function table(rows) {
  if (!rows.length) return h("div.empty", "No calls yet. Metrics appear once methods are called.");
  const slowest = Math.max(...rows.map((r) => r.p99_ms || 0), 0.001);
  return h("table.tbl#metrics-table", h("thead", h("tr", h("th", "method"), h("th.num", "calls"), h("th.num", "rate/s"), h("th", "recent rate"), h("th.num", "errors"), h("th.num", "p50"), h("th.num", "p95"), h("th.num", "p99"))),
    h("tbody", rows.map((r) => {
      const key = `${r.service}.${r.method}`;
      const errorClass = r.error_share > 0.05 ? "bad" : r.error_share > 0 ? "warn" : "ok";
      return h("tr", { dataset: { method: key } },
        h("td", h("span", { style: `color:${colour(r.service)};font-weight:600` }, r.service), h("span.mono", `.${r.method}`)),
        h("td.num", r.calls), h("td.num", r.rate.toFixed(2)), h("td", spark(history.get(key) || [0])),
        h("td.num", h(`span.badge.${errorClass}`, `${(r.error_share * 100).toFixed(1)}%`), h("div.muted", { style: "font-size:11px" }, `${r.errors} of ${r.calls}`)),
        h("td.num", fmtMs(r.p50_ms)), h("td.num", fmtMs(r.p95_ms)),
        h("td.num", fmtMs(r.p99_ms), h("span.meter", h("span", { style: `width:${((r.p99_ms || 0) / slowest) * 100}%` }))));
    })));
}

export async function renderMetrics(main) {
  const body = h("div");
  const stamp = h("span.muted");
  main.append(page("Metrics", "per method, summed over replicas · latency since the replicas started", stamp),
    panel("Methods", body));
  body.append(h("div.empty", "Waiting for the first sample…"));
  const source = live("/api/live/metrics", {
    metrics: (rows) => {
      for (const r of rows) {
        const key = `${r.service}.${r.method}`;
        const values = history.get(key) || [];
        values.push(r.rate);
        if (values.length > 40) values.shift();
        history.set(key, values);
      }
      body.replaceChildren(table(rows));
      stamp.textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
    },
  });
  onLeave(() => source.close());
}
