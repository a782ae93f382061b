// Logs: every service's logs merged by time, filtered by service, level and correlation id, live.
import { api, colour, h, live, onLeave, page, store } from "/static/core.js";

const SHOWN = new Set(["ts", "level", "service", "replica", "msg", "logger", "exception", "trace_id", "span_id", "correlation_id"]);

function line(record, setCorrelation) {
  const level = String(record.level || "info").toLowerCase();
  const ts = String(record.ts || "");
  const extras = Object.entries(record).filter(([k]) => !SHOWN.has(k));
  const source = `${record.service || "-"}${record.replica ? `[${record.replica}]` : ""}`;
  return h("div.log", { dataset: { correlation: record.correlation_id || "", service: record.service || "", level } },
    h("span.ts", ts.length >= 23 ? ts.slice(11, 23) : ts),
    h("span.src", { style: `color:${colour(record.service)}` }, source),
    h(`span.lvl.${level}`, level),
    h("span.msg", record.msg || "",
      extras.length ? h("span.extra", " ", extras.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")) : null,
      record.correlation_id ? h("span.extra", " ", h("a", { href: "#", title: "only this request", onclick: (e) => { e.preventDefault(); setCorrelation(record.correlation_id); } }, `⟲ ${record.correlation_id.slice(0, 10)}…`)) : null,
      record.exception ? h("pre", record.exception) : null));
}

export async function renderLogs(main, args) {
  const services = store.app.services.map((s) => s.name);
  const chosen = new Set();
  const level = h("select#log-level", ["debug", "info", "warning", "error"].map((l) => h("option", { value: l, selected: l === "info" }, l)));
  const correlation = h("input#log-correlation", { type: "search", placeholder: "correlation id", value: args[0] || "", style: "width:300px" });
  const text = h("input#log-text", { type: "search", placeholder: "text in message" });
  const pause = h("button.small", { type: "button" }, "pause");
  const count = h("span.muted");
  const chips = services.map((name) => {
    const box = h("input", { type: "checkbox", value: name });
    box.addEventListener("change", () => { if (box.checked) chosen.add(name); else chosen.delete(name); reload(); });
    return h("label.chk", { style: `color:${colour(name)}` }, box, name);
  });
  const rows = h("div.logs#log-lines");
  main.append(page("Logs", "every service, merged by time", count),
    h("section.panel", h("div.filters", chips, level, correlation, text, pause), rows));
  let source = null, paused = false, timer = null;
  const query = () => {
    const q = new URLSearchParams();
    for (const s of chosen) q.append("service", s);
    q.set("level", level.value);
    if (correlation.value.trim()) q.set("correlation", correlation.value.trim());
    if (text.value.trim()) q.set("q", text.value.trim());
    return q.toString();
  };
  const setCorrelation = (id) => { correlation.value = id; reload(); };
  const show = () => { count.textContent = `${rows.children.length} lines`; };
  const add = (record) => {
    if (paused) return;
    const atBottom = rows.scrollHeight - rows.scrollTop - rows.clientHeight < 40;
    rows.append(line(record, setCorrelation));
    while (rows.children.length > 2000) rows.firstChild.remove();
    if (atBottom) rows.scrollTop = rows.scrollHeight;
    show();
  };
  let asked = 0;
  async function reload() {
    source?.close();
    const q = query();
    const mine = ++asked;
    const data = await api(`/api/logs?limit=500&${q}`);
    if (mine !== asked) return;  // a newer filter was asked for meanwhile
    rows.replaceChildren(...data.logs.map((r) => line(r, setCorrelation)));
    if (!data.logs.length) rows.append(h("div.empty#no-logs", "No log lines match."));
    rows.scrollTop = rows.scrollHeight;
    show();
    source = live(`/api/live/logs?${q}`, { log: (r) => { rows.querySelector("#no-logs")?.remove(); add(r); } });
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(reload, 250); };
  level.addEventListener("change", reload);
  correlation.addEventListener("input", later);
  text.addEventListener("input", later);
  pause.addEventListener("click", () => { paused = !paused; pause.textContent = paused ? "resume" : "pause"; });
  onLeave(() => { source?.close(); clearTimeout(timer); });
  await reload();
}
