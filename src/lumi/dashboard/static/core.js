// Shared helpers: the token, API calls, server-sent events, DOM building, formatting.

const params = new URLSearchParams(location.search);
export const token = params.get("token") || sessionStorage.getItem("lumi-token") || "";
if (token) sessionStorage.setItem("lumi-token", token);

// What every view reads: the app snapshot, the interfaces, and who wants state updates.
export const store = { app: null, interfaces: {}, listeners: new Set() };
export const leaving = [];

// Run `fn` when the current view is left (close streams, stop timers).
export function onLeave(fn) { leaving.push(fn); }

// Call `fn(snapshot)` on every replica-state change while this view is shown.
export function onState(fn) {
  store.listeners.add(fn);
  onLeave(() => store.listeners.delete(fn));
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(path, body) {
  const init = { headers: { "X-Lumi-Token": token } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data.error || resp.statusText);
  return data;
}

// One EventSource per live view; closed when the view is left (see app.js `onLeave`).
export function live(path, handlers) {
  const sep = path.includes("?") ? "&" : "?";
  const source = new EventSource(`${path}${sep}token=${encodeURIComponent(token)}`);
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  }
  return source;
}

// h("div.cls#id", {attrs}, ...children): a tiny element builder.
export function h(spec, attrs, ...children) {
  const [, tag = "div", rest = ""] = spec.match(/^([a-z0-9]*)(.*)$/i);
  const el = document.createElement(tag || "div");
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

export function page(title, sub, ...right) {
  return h("div.head", h("h1", title), sub ? h("span.sub", sub) : null, h("div.right", right));
}

export function panel(title, ...children) {
  return h("section.panel", title ? h("h2", title) : null, children);
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 10000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

export function fmtTime(value) {
  const date = typeof value === "number" ? new Date(value / 1e6) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value || "");
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

export function json(value) { return JSON.stringify(value, null, 2); }

const PALETTE = ["#4f46e5", "#0891b2", "#16a34a", "#c026d3", "#ea580c", "#0d9488", "#db2777", "#65a30d", "#7c3aed", "#2563eb"];
// A service keeps its colour in every view: the colour of its place in the app's start order.
export function colour(name) {
  if (!name) return "#94a3b8";
  if (name === "dashboard") return "#64748b";
  const index = (store.app?.services || []).findIndex((s) => s.name === name);
  if (index >= 0) return PALETTE[index % PALETTE.length];
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

export function toast(text) {
  const el = h("div.toast", text);
  document.body.append(el);
  setTimeout(() => el.remove(), 2600);
}

export function statusBadge(code) {
  return h(`span.badge.${code === "OK" ? "ok" : "bad"}`, code || "OK");
}
