// Traces: recent requests (live), search by trace or correlation id, one request's waterfall.
import { api, colour, fmtMs, fmtTime, h, live, onLeave, page, panel, statusBadge } from "/static/core.js";
import { traceHeader, waterfall } from "/static/waterfall.js";

function table(traces, selected) {
  if (!traces.length) return h("div.empty", "No traces yet: call a method (the API explorer is one way).");
  return h("table.tbl#trace-list", h("thead", h("tr", h("th", "time"), h("th", "request"), h("th", "services"), h("th.num", "spans"), h("th.num", "duration"), h("th", "status"))),
    h("tbody", traces.map((t) => h(`tr.click${t.trace_id === selected ? ".sel" : ""}`, { dataset: { trace: t.trace_id, correlation: t.correlation_id || "" }, onclick: () => { location.hash = `#/traces/${t.trace_id}`; } },
      h("td.mono", fmtTime(t.start_ns)),
      h("td", h("div.mono", t.root), h("div.muted.mono", { style: "font-size:11px" }, t.correlation_id || "")),
      h("td", h("div.chips", t.services.filter((s) => s !== "dashboard").map((s) => h("span.badge", { style: `background:${colour(s)}1a;color:${colour(s)}` }, s)))),
      h("td.num", t.spans), h("td.num", fmtMs(t.ms)),
      h("td", t.errors ? h("span.badge.bad", `${t.errors} error${t.errors > 1 ? "s" : ""}`) : statusBadge("OK"))))));
}

export async function renderTraces(main, args) {
  const selected = args[0] || "";
  const search = h("input#trace-search", { type: "search", placeholder: "trace id or correlation id", value: "", style: "width:320px" });
  const listBody = h("div");
  const detail = h("div");
  main.append(page("Traces", "requests across services and events", search),
    h("div.stack", detail, panel("Recent requests", listBody)));
  let query = "";
  let asked = 0;
  const load = async () => {
    const mine = ++asked;  // answers can arrive out of order: only the latest question counts
    const data = await api(`/api/traces?limit=60${query ? `&q=${encodeURIComponent(query)}` : ""}`);
    if (mine === asked) listBody.replaceChildren(table(data.traces, selected));
  };
  search.addEventListener("input", () => { query = search.value.trim(); load(); });
  search.addEventListener("keydown", (e) => { if (e.key === "Enter" && query) location.hash = `#/traces/${query}`; });
  await load();
  // New spans: show the new list, or ask the search again (its request may have just arrived).
  const source = live("/api/live/traces", {
    traces: (traces) => {
      if (query) load();
      else { asked++; listBody.replaceChildren(table(traces, selected)); }
    },
  });
  onLeave(() => source.close());
  if (selected) {
    try {
      const trace = await api(`/api/traces/${encodeURIComponent(selected)}`);
      detail.replaceChildren(panel(`Request ${trace.spans[0]?.name || ""}`, h("div.body", traceHeader(trace), waterfall(trace))));
    } catch (err) {
      detail.replaceChildren(h("div.banner", err.message));
    }
  }
}
