// The shell: loads the app, keeps live replica state, routes #/view/... to a view module.
import { api, h, leaving, live, store, token } from "/static/core.js";
import { renderGraph } from "/static/graph.js";

const views = {
  graph: async (main, args) => renderGraph(main, args),
  explorer: async (main, args) => (await import("/static/explorer.js")).renderExplorer(main, args),
  traces: async (main, args) => (await import("/static/traces.js")).renderTraces(main, args),
  events: async (main, args) => (await import("/static/events.js")).renderEvents(main, args),
  logs: async (main, args) => (await import("/static/logs.js")).renderLogs(main, args),
  metrics: async (main, args) => (await import("/static/metrics.js")).renderMetrics(main, args),
};

function setStatus(kind, label) {
  const el = document.getElementById("status");
  el.className = `status ${kind}`;
  el.querySelector(".label").textContent = label;
}

function applyState(snapshot) {
  store.app = { ...store.app, ...snapshot };
  document.getElementById("appname").textContent = snapshot.app + (snapshot.env ? ` · ${snapshot.env}` : "");
  const replicas = snapshot.services.flatMap((s) => s.replicas);
  const ready = replicas.filter((r) => r.state === "ready").length;
  if (!snapshot.running) setStatus("down", "not running");
  else setStatus("live", `${ready}/${replicas.length} replicas ready`);
  for (const fn of store.listeners) fn(snapshot);
}

async function route() {
  for (const fn of leaving.splice(0)) fn();
  const [name = "graph", ...args] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = views[name] ? name : "graph";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.view = view;
  try {
    await views[view](main, args.filter(Boolean));
  } catch (err) {
    main.replaceChildren(h("div.banner", `This view failed: ${err.message}`));
  }
}

async function boot() {
  const main = document.getElementById("main");
  if (!token) {
    main.append(h("div.banner", "This dashboard needs its token: open the URL that `lumi run` printed (it ends in ?token=…)."));
    setStatus("down", "no token");
    return;
  }
  let data;
  try {
    data = await api("/api/app");
  } catch (err) {
    main.append(h("div.banner", err.status === 401 ? "The token in this URL is not this run's: open the URL that `lumi run` printed." : `Cannot reach the dashboard: ${err.message}`));
    setStatus("down", err.status === 401 ? "wrong token" : "offline");
    return;
  }
  store.interfaces = data.interfaces;
  applyState(data);
  const source = live("/api/live/state", {
    state: async (snapshot) => {
      const before = new Map((store.app.services || []).map((s) => [s.name, s.fingerprint]));
      if (snapshot.services.some((s) => before.get(s.name) !== s.fingerprint)) {
        store.interfaces = (await api("/api/app")).interfaces;  // an interface changed (reload)
      }
      applyState(snapshot);
    },
  });
  source.onerror = () => setStatus("down", "reconnecting");
  source.onopen = () => store.app && applyState(store.app);
  window.addEventListener("hashchange", route);
  await route();
}

boot();
