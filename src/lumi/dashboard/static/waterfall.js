// A trace as a waterfall: one row per span, indented by depth, a bar placed in time.
import { api, colour, fmtMs, h, json, statusBadge } from "/static/core.js";

const KIND = { server: "▶", client: "→", producer: "✉", consumer: "✉", internal: "·" };

export function waterfall(trace) {
  const total = Math.max(trace.ms, 0.001);
  const rows = h("div.wf");
  rows.append(h("div.row", { style: "cursor:default;border-bottom:1px solid #e2e7f0" },
    h("div.muted", "span"), h("div.muted", "service"), h("div.muted", `0 — ${fmtMs(trace.ms)}`), h("div.muted.ms", "duration")));
  for (const span of trace.spans) {
    const left = (span.offset_ms / total) * 100;
    const width = Math.max((span.ms / total) * 100, 0.4);
    const bar = h(`div.bar${span.status === "OK" ? "" : ".bad"}`, { style: `left:${left}%;width:${Math.min(width, 100 - left)}%;background:${colour(span.service)}` });
    const row = h("div.row", { dataset: { span: span.span_id, service: span.service || "" }, title: span.status },
      h("div.name", { style: `padding-left:${span.depth * 16}px` }, h("span.kind", KIND[span.kind] || "·"), span.name),
      h("div.svc", { style: `color:${colour(span.service)}` }, span.service || ""),
      h("div.track", bar),
      h("div.ms", span.status === "OK" ? fmtMs(span.ms) : h("span", statusBadge(span.status))));
    let open = null;
    row.addEventListener("click", () => {
      if (open) { open.remove(); open = null; return; }
      open = h("div.attrs", json({ status: span.status, duration: fmtMs(span.ms), kind: span.kind, ...span.attributes }));
      row.append(open);
    });
    rows.append(row);
  }
  return rows;
}

export function traceHeader(trace) {
  return h("div.chips", { style: "margin-bottom:10px" },
    h("span.chip", `trace ${trace.trace_id}`),
    trace.correlation_id ? h("a.chip", { href: `#/logs/${trace.correlation_id}`, title: "this request's logs" }, `correlation ${trace.correlation_id}`) : null,
    h("span.chip", `${trace.spans.length} spans`), h("span.chip", fmtMs(trace.ms)),
    trace.services.map((s) => h("span.badge", { style: `background:${colour(s)}1a;color:${colour(s)}` }, s)));
}

// Fetch a trace until its spans stop arriving (each process exports in batches).
export async function settledTrace(ident, { timeout = 4000, quiet = 900 } = {}) {
  const started = Date.now();
  let last = null, lastCount = -1, stableSince = Date.now();
  while (Date.now() - started < timeout) {
    try {
      last = await api(`/api/traces/${encodeURIComponent(ident)}`);
      if (last.spans.length !== lastCount) { lastCount = last.spans.length; stableSince = Date.now(); }
      else if (Date.now() - stableSince >= quiet) return last;
    } catch (err) {
      if (err.status !== 404) throw err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return last;
}
