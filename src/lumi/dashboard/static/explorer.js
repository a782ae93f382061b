// The API explorer: every method with its docs, a form from its parameter schema, the call's
// result or typed error, and the trace of that call.
import { api, h, json, page, panel, store } from "/static/core.js";
import { model, typeName } from "/static/form.js";
import { followTrace, traceHeader, waterfall } from "/static/waterfall.js";

function methodList(selected) {
  const list = h("div.methods");
  for (const service of store.app.services) {
    const iface = store.interfaces[service.name];
    if (!iface) continue;
    list.append(h("div.svc", service.name));
    for (const name of Object.keys(iface.methods).sort()) {
      const info = iface.methods[name];
      const sel = selected && selected[0] === service.name && selected[1] === name;
      list.append(h(`a${sel ? ".sel" : ""}`, { href: `#/explorer/${service.name}/${name}` }, name,
        info.idempotent ? h("span.badge", { title: "idempotent: safe to retry" }, "idem") : null));
    }
  }
  return panel("Methods", list);
}

function signature(service, name, info, defs) {
  const props = info.params.properties || {};
  const required = new Set(info.params.required || []);
  const order = info.param_order.length ? info.param_order : Object.keys(props);
  const args = order.map((p) => `${p}${required.has(p) ? "" : "?"}: ${typeName(props[p], defs)}`).join(", ");
  return h("div.sig", `${service}.${name}(${args}) → ${typeName(info.returns, defs)}`);
}

function errorView(error) {
  const details = Array.isArray(error.details) ? error.details : null;
  return h("div.result.bad", { dataset: { code: error.code } },
    h("div", h("span.code", error.code), " ", h("span", error.message)),
    details && details.length && details[0].loc
      ? h("ul", details.map((d) => h("li", h("code", d.loc.join(".")), " ", d.msg)))
      : error.details ? h("pre", json(error.details)) : null);
}

function callPanel(serviceName, name) {
  const iface = store.interfaces[serviceName];
  const info = iface?.methods?.[name];
  if (!info) return panel("Call", h("div.empty", `${serviceName} has no method ${name}.`));
  const defs = iface.$defs || {};
  const form = model(info.params, defs, undefined, info.param_order);
  const rawBox = h("textarea", { rows: 8, style: "display:none", spellcheck: "false" });
  let rawMode = false;
  const toggle = h("button.small", { type: "button", onclick: () => {
    rawMode = !rawMode;
    if (rawMode) rawBox.value = json(form.get());
    rawBox.style.display = rawMode ? "" : "none";
    form.el.style.display = rawMode ? "none" : "";
    toggle.textContent = rawMode ? "form" : "edit as JSON";
  } }, "edit as JSON");
  const outcome = h("div#outcome");
  let calls = 0;
  const tracePanel = h("div#call-trace");
  const button = h("button.primary#call", { type: "submit" }, "Call");
  const submit = async (e) => {
    e.preventDefault();
    let args;
    try { args = rawMode ? JSON.parse(rawBox.value || "{}") : form.get(); }
    catch (err) { outcome.replaceChildren(h("div.result.bad", `The JSON is not valid: ${err.message}`)); return; }
    button.disabled = true;
    outcome.replaceChildren(h("div.muted", "calling…"));
    tracePanel.replaceChildren();
    try {
      const reply = await api("/api/call", { service: serviceName, method: name, arguments: args });
      const meta = h("div.muted", { style: "margin-top:8px;font-size:12px" }, `${reply.ms} ms · correlation `, h("a.mono", { href: `#/logs/${reply.correlation_id}` }, reply.correlation_id || "–"));
      outcome.replaceChildren(reply.ok
        ? h("div.result.ok", h("div", h("span.badge.ok", "OK"), " ", typeName(info.returns, defs)), h("pre#result", json(reply.result)), meta)
        : h("div", errorView(reply.error), meta));
      if (reply.trace_id) {
        tracePanel.replaceChildren(panel("Trace of this call", h("div.body", h("div.muted", "collecting spans…"))));
        const mine = ++calls;
        button.disabled = false;
        await followTrace(reply.trace_id, (trace) => {
          if (mine !== calls) return;  // a newer call owns the panel
          tracePanel.replaceChildren(panel("Trace of this call", h("div.body", traceHeader(trace), waterfall(trace),
            h("div", { style: "margin-top:10px" }, h("a", { href: `#/traces/${trace.trace_id}` }, "open in Traces →")))));
        });
      }
    } catch (err) {
      outcome.replaceChildren(h("div.result.bad", err.message));
    } finally {
      button.disabled = false;
    }
  };
  return h("div.stack",
    panel(`${serviceName}.${name}`, h("div.body",
      info.doc ? h("p.doc", info.doc) : null,
      signature(serviceName, name, info, defs),
      h("form.form", { onsubmit: submit, dataset: { method: `${serviceName}.${name}` } },
        Object.keys(info.params.properties || {}).length ? form.el : h("p.muted", "This method takes no parameters."),
        rawBox,
        h("div.actions", button, toggle, info.idempotent ? h("span.muted", "idempotent") : h("span.muted", "not idempotent: runs once per call"))),
      outcome)),
    tracePanel);
}

export function renderExplorer(main, args) {
  let [serviceName, name] = args;
  if (!serviceName) {
    const first = store.app.services.find((s) => s.methods.length);
    if (first) [serviceName, name] = [first.name, first.methods[0]];
  }
  main.append(page("API explorer", "call any method of the running app; calls are traced like any other"),
    h("div.split", methodList([serviceName, name]), serviceName ? callPanel(serviceName, name) : h("div.empty", "No methods.")));
}
