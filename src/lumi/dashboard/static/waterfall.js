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

// Follow a trace as its spans arrive (each process exports in batches, and an event's consumer
// may run later than the call returned): `show(trace)` on every change, until it has been quiet
// for `quiet` ms or `limit` ms have passed.
export async function followTrace(ident, show, { limit = 15000, quiet = 3000 } = {}) {
  const started = Date.now();
  let count = -1, changed = Date.now();
  while (Date.now() - started < limit && (count < 0 || Date.now() - changed < quiet)) {
    try {
      const trace = await api(`/api/traces/${encodeURIComponent(ident)}`);
      if (trace.spans.length !== count) {
        count = trace.spans.length;
        changed = Date.now();
        show(trace);
      }
    } catch (err) {
      if (err.status === 401) throw err;  // anything else may pass: keep asking
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
