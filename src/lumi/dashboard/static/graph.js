// The service graph: services as cards, calls and event flows as edges, live replica state.
import { colour, h, onState, page, store, svg } from "/static/core.js";

const W = 220, H = 112, GAP_X = 96, GAP_Y = 30, PAD = 24;
let painted = false;

// Columns by the longest path from a service nothing points at, so edges run left to right.
// Calls always count (capabilities never form a cycle); an event flow counts unless it would
// close a cycle (a subscriber that also calls its publisher), and is then drawn underneath.
function layout(services, edges) {
  const names = services.map((s) => s.name);
  const next = Object.fromEntries(names.map((n) => [n, new Set()]));
  const reaches = (from, to, seen = new Set()) => from === to || [...next[from]].some((n) => !seen.has(n) && (seen.add(n), reaches(n, to, seen)));
  const ordered = [...edges.filter((e) => e.kind === "calls"), ...edges.filter((e) => e.kind !== "calls")];
  for (const e of ordered) {
    if (e.from in next && e.to in next && e.from !== e.to && !reaches(e.to, e.from)) next[e.from].add(e.to);
  }
  const column = Object.fromEntries(names.map((n) => [n, 0]));
  for (let round = 0; round < names.length; round++) {
    let moved = false;
    for (const from of names) {
      for (const to of next[from]) {
        if (column[to] < column[from] + 1) { column[to] = column[from] + 1; moved = true; }
      }
    }
    if (!moved) break;
  }
  const columns = [];
  for (const name of names) (columns[column[name]] ||= []).push(name);
  const filled = columns.filter(Boolean);
  const pos = {};
  const tallest = Math.max(...filled.map((c) => c.length));
  filled.forEach((members, x) => {
    const offset = ((tallest - members.length) * (H + GAP_Y)) / 2;
    members.forEach((name, y) => {
      pos[name] = { x: PAD + x * (W + GAP_X), y: PAD + offset + y * (H + GAP_Y) };
    });
  });
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  return { pos, width: PAD * 2 + filled.length * W + (filled.length - 1) * GAP_X, height };
}

function replicaSummary(replicas) {
  if (!replicas.length) return "not started";
  const counts = {};
  for (const r of replicas) counts[r.state] = (counts[r.state] || 0) + 1;
  return Object.entries(counts).map(([state, n]) => (state === "ready" ? `${n}/${replicas.length} ready` : `${n} ${state}`)).join(" · ");
}

function node(service, p, selected, onPick) {
  const g = svg("g", { class: `node${selected ? " sel" : ""}`, transform: `translate(${p.x},${p.y})`, "data-service": service.name, onclick: () => onPick(service.name) });
  g.append(svg("rect", { class: "card", width: W, height: H, rx: 12 }));
  g.append(svg("rect", { x: 0, y: 14, width: 4, height: H - 28, rx: 2, fill: colour(service.name) }));
  g.append(svg("text", { class: "title", x: 18, y: 28 }, service.name));
  g.append(svg("text", { class: "meta", x: W - 14, y: 28, "text-anchor": "end" }, `v${service.version}`));
  service.replicas.forEach((r, i) => {
    g.append(svg("circle", { class: `rep rep-${r.state || "unknown"}`, cx: 23 + i * 16, cy: 50, r: 5.5, "data-state": r.state },
      svg("title", {}, `${service.name}[${r.index}] ${r.state} · pid ${r.pid ?? "–"} · ${r.restarts} restart(s)`)));
  });
  const repX = 23 + Math.max(service.replicas.length, 1) * 16;
  g.append(svg("text", { class: "meta replica-state", x: repX - 4, y: 54 }, replicaSummary(service.replicas)));
  const parts = [`${service.methods.length} method${service.methods.length === 1 ? "" : "s"}`];
  if (service.events.length) parts.push(`publishes ${service.events.join(", ")}`);
  g.append(svg("text", { class: "meta", x: 18, y: 78 }, parts.join(" · ")));
  const subs = service.subscriptions.length ? `subscribes ${service.subscriptions.join(", ")}` : service.requires.length ? `calls ${service.requires.join(", ")}` : service.doc.split("\n")[0].slice(0, 34);
  g.append(svg("text", { class: "meta", x: 18, y: 97 }, subs));
  return g;
}

function edgePath(a, b, bend, floor) {
  if (b.x > a.x) {  // forward: right side to left side
    const x1 = a.x + W, y1 = a.y + H / 2 + bend, x2 = b.x - 8, y2 = b.y + H / 2 + bend;
    const dx = Math.max(40, (x2 - x1) / 2);
    return { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, mx: (x1 + x2) / 2, my: (y1 + y2) / 2 - 7 };
  }
  // backward or within a column: out of the bottom, under the cards, into the bottom
  const x1 = a.x + W / 2 + 20, y1 = a.y + H, x2 = b.x + W / 2 - 20, y2 = b.y + H + 8, low = floor + 34 + bend;
  return { d: `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`, mx: (x1 + x2) / 2, my: low + 8 };
}

function drawGraph(snapshot, selected, onPick) {
  const { pos, width, height: base } = layout(snapshot.services, snapshot.edges);
  const floor = base - PAD;
  const back = snapshot.edges.some((e) => pos[e.from] && pos[e.to] && pos[e.to].x <= pos[e.from].x);
  const height = base + (back ? 56 : 0);
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, style: `max-width:${width}px`, role: "img", "aria-label": "service graph" });
  root.append(svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" })),
    svg("marker", { id: "arrow-ev", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#ea580c" }))));
  const seen = {};
  for (const e of snapshot.edges) {
    if (!pos[e.from] || !pos[e.to]) continue;
    const key = `${e.from}>${e.to}`;
    const bend = (seen[key] = (seen[key] ?? -1) + 1) * 14;
    const { d, mx, my } = edgePath(pos[e.from], pos[e.to], bend, floor);
    root.append(svg("path", { class: `edge ${e.kind}`, d, "marker-end": `url(#${e.kind === "event" ? "arrow-ev" : "arrow"})` }, svg("title", {}, e.kind === "event" ? `${e.from} publishes ${e.label} → ${e.to}` : `${e.from} calls ${e.to}`)));
    if (e.label) root.append(svg("text", { class: "edge-label", x: mx, y: my, "text-anchor": "middle" }, `✉ ${e.label}`));
  }
  for (const s of snapshot.services) root.append(node(s, pos[s.name], s.name === selected, onPick));
  return root;
}

function details(service) {
  if (!service) {
    const app = store.app;
    const replicas = app.services.flatMap((s) => s.replicas);
    return h("section.panel", h("h2", "App"), h("div.body",
      h("dl.kv",
        h("dt", "services"), h("dd", app.services.length),
        h("dt", "replicas"), h("dd", replicas.length),
        h("dt", "runtime"), h("dd", app.mode || "–"),
        h("dt", "methods"), h("dd", app.services.reduce((n, s) => n + s.methods.length, 0)),
        h("dt", "event flows"), h("dd", app.edges.filter((e) => e.kind === "event").length)),
      h("p.muted", "Click a service to see its replicas, methods and events.")));
  }
  const iface = store.interfaces[service.name] || {};
  return h("section.panel", h("h2", service.name, h("span.badge.accent", `v${service.version}`)), h("div.body.stack",
    service.doc ? h("p.doc", service.doc) : null,
    h("table.tbl", h("thead", h("tr", h("th", "replica"), h("th", "state"), h("th", "pid"), h("th.num", "restarts"))),
      h("tbody", service.replicas.map((r) => h("tr", h("td.mono", { title: r.endpoints.join(" ") }, `[${r.index}] ${r.endpoints.map((e) => `${e.split("://")[0]} :${e.split(":").pop()}`).join(", ")}`),
        h("td", h(`span.badge.${r.state === "ready" ? "ok" : r.state === "stopped" ? "" : "warn"}`, r.state)), h("td.mono", r.pid ?? "–"), h("td.num", r.restarts))))),
    h("div", h("div.muted", "methods"), h("div.chips", service.methods.map((m) => h("a.chip", { href: `#/explorer/${service.name}/${m}`, title: iface.methods?.[m]?.doc || "" }, m)))),
    service.events.length ? h("div", h("div.muted", "publishes"), h("div.chips", service.events.map((e) => h("a.chip", { href: `#/events/${service.name}.${e}` }, `${service.name}.${e}`)))) : null,
    service.subscriptions.length ? h("div", h("div.muted", "subscribes to"), h("div.chips", service.subscriptions.map((t) => h("a.chip", { href: `#/events/${t}` }, t)))) : null,
    service.requires.length ? h("div", h("div.muted", "calls"), h("div.chips", service.requires.map((r) => h("span.chip", r)))) : null));
}

export function renderGraph(main, args) {
  let selected = args[0] || null;
  const canvas = h("div.graph-wrap");
  const side = h("div");
  const legend = h("div.legend", h("span", h("i"), "calls"), h("span", h("i.ev"), "event flow"),
    h("span", h("b", { style: "background:#16a34a" }), "ready", h("b", { style: "background:#d97706" }), "starting / restarting", h("b", { style: "background:#94a3b8" }), "stopped"));
  main.append(page("Services", `${store.app.services.length} services · live replica state`),
    h("div.grid2", h("section.panel", h("h2", "Service graph"), canvas, legend), side));
  const pick = (name) => { selected = selected === name ? null : name; draw(); };
  const draw = () => {
    if (!store.app.running) canvas.replaceChildren(h("div.empty", store.app.problem || "The app is not running."));
    canvas.replaceChildren(...(store.app.running ? [] : [h("div.banner", store.app.problem || "The app is not running.")]), drawGraph(store.app, selected, pick));
    side.replaceChildren(details(store.app.services.find((s) => s.name === selected)));
  };
  draw();
  onState(draw);
  if (!painted) {
    painted = true;
    requestAnimationFrame(() => setTimeout(() => performance.mark("lumi-graph-painted"), 0));
  }
}
