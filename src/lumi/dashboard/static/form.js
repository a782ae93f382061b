// Forms from JSON Schema: a field per parameter, nested models, lists, enums, optionals.
// Each builder returns { el, get } where get() is the value, or undefined to leave it out.
import { h } from "/static/core.js";

let counter = 0;

export function resolve(schema, defs) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) s = { ...defs[s.$ref.split("/").pop()], ...without(s, "$ref") };
  if (s.allOf && s.allOf.length === 1) s = { ...resolve(s.allOf[0], defs), ...without(s, "allOf") };
  return s;
}

function without(obj, key) {
  const copy = { ...obj };
  delete copy[key];
  return copy;
}

const isNull = (s) => s.type === "null";

export function typeName(schema, defs, depth = 0) {
  const s = resolve(schema, defs);
  if (depth > 4) return "…";
  const arms = s.anyOf || s.oneOf;
  if (arms) return arms.map((a) => typeName(a, defs, depth + 1)).join(" | ");
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.type === "array") return `list[${typeName(s.items || {}, defs, depth + 1)}]`;
  if (s.type === "object" && s.additionalProperties && !s.properties) return `dict[str, ${typeName(s.additionalProperties, defs, depth + 1)}]`;
  if (s.title && s.properties) return s.title;
  if (s.format === "date-time") return "datetime";
  if (s.contentEncoding === "base64" || s.format === "binary") return "bytes";
  const map = { string: "str", integer: "int", number: "float", boolean: "bool", object: "object", null: "None" };
  return map[s.type] || "any";
}

export function field(schema, defs, initial) {
  const s = resolve(schema, defs);
  const arms = s.anyOf || s.oneOf;
  if (arms) {
    const real = arms.filter((a) => !isNull(resolve(a, defs)));
    const nullable = real.length < arms.length;
    const inner = real.length === 1 ? field(real[0], defs, initial ?? s.default) : union(real, defs, initial);
    return nullable ? optional(inner, initial === null || (initial === undefined && s.default === null)) : inner;
  }
  if (s.enum || s.const !== undefined) return choice(s.enum || [s.const], initial ?? s.default);
  switch (s.type) {
    case "boolean": return checkbox(initial ?? s.default ?? false);
    case "integer": case "number": return number(s, initial ?? s.default);
    case "string": return s.contentEncoding === "base64" || s.format === "binary" ? text(s, initial ?? s.default, "base64") : text(s, initial ?? s.default);
    case "array": return list(s, defs, initial ?? s.default);
    case "object": return s.properties ? model(s, defs, initial ?? s.default) : s.additionalProperties ? dict(s, defs, initial ?? s.default) : raw(initial ?? s.default);
    default: return raw(initial ?? s.default);
  }
}

function text(s, initial, hint) {
  const placeholder = s.format === "date-time" ? "2026-01-31T12:00:00Z" : hint || (s.pattern ? `pattern ${s.pattern}` : "");
  const el = h("input", { type: "text", value: initial ?? "", placeholder, maxlength: s.maxLength });
  return { el, get: () => (el.value === "" && initial === undefined ? undefined : el.value), input: el };
}

function number(s, initial) {
  const el = h("input", { type: "number", step: s.type === "integer" ? "1" : "any", value: initial ?? "", min: s.minimum, max: s.maximum });
  return { el, get: () => (el.value === "" ? undefined : Number(el.value)), input: el };
}

function checkbox(initial) {
  const el = h("input", { type: "checkbox", checked: Boolean(initial) });
  return { el, get: () => el.checked, input: el };
}

function choice(values, initial) {
  const el = h("select", values.map((v, i) => h("option", { value: String(i), selected: JSON.stringify(v) === JSON.stringify(initial) }, JSON.stringify(v))));
  if (initial === undefined) el.prepend(h("option", { value: "", selected: true }, "— choose —"));
  return { el, get: () => (el.value === "" ? undefined : values[Number(el.value)]), input: el };
}

function raw(initial) {
  const el = h("textarea", { rows: 3, placeholder: "any JSON value" }, initial === undefined ? "" : JSON.stringify(initial, null, 2));
  return {
    el,
    get: () => {
      if (el.value.trim() === "") return undefined;
      try { return JSON.parse(el.value); } catch { return el.value; }
    },
  };
}

function optional(inner, startsNull) {
  const box = h("input", { type: "checkbox", checked: !startsNull, title: "send a value (unchecked: null)" });
  const wrap = h("div.grow", inner.el);
  const sync = () => wrap.classList.toggle("off", !box.checked);
  box.addEventListener("change", sync);
  sync();
  return { el: h("div.optional", box, wrap), get: () => (box.checked ? inner.get() : null), toggle: box };
}

function union(arms, defs, initial) {
  const labels = arms.map((a) => typeName(a, defs));
  const select = h("select", labels.map((label, i) => h("option", { value: String(i) }, label)));
  const holder = h("div");
  let current = null;
  const pickArm = () => {
    current = field(arms[Number(select.value)], defs, initial);
    holder.replaceChildren(current.el);
  };
  select.addEventListener("change", pickArm);
  pickArm();
  return { el: h("div", select, holder), get: () => current.get() };
}

function list(s, defs, initial) {
  const items = [];
  const rows = h("div");
  const add = (value) => {
    const item = field(s.items || {}, defs, value);
    const row = h("div.item", h("div.grow", item.el), h("button.small", { type: "button", title: "remove", onclick: () => { rows.removeChild(row); items.splice(items.indexOf(entry), 1); } }, "×"));
    const entry = { item, row };
    items.push(entry);
    rows.append(row);
  };
  for (const value of initial || []) add(value);
  if (!initial && (s.minItems || 0) > 0) add(undefined);
  const addButton = h("button.small", { type: "button", onclick: () => add(undefined) }, `+ add ${typeName(s.items || {}, defs)}`);
  return { el: h("div", rows, addButton), get: () => items.map((e) => e.item.get()).filter((v) => v !== undefined), add };
}

function dict(s, defs, initial) {
  const rows = h("div");
  const entries = [];
  const add = (key = "", value) => {
    const k = h("input", { type: "text", placeholder: "key", value: key });
    const v = field(s.additionalProperties === true ? {} : s.additionalProperties, defs, value);
    const row = h("div.item", k, h("div.grow", v.el), h("button.small", { type: "button", onclick: () => { rows.removeChild(row); entries.splice(entries.indexOf(entry), 1); } }, "×"));
    const entry = { k, v };
    entries.push(entry);
    rows.append(row);
  };
  for (const [key, value] of Object.entries(initial || {})) add(key, value);
  return {
    el: h("div", rows, h("button.small", { type: "button", onclick: () => add() }, "+ add entry")),
    get: () => Object.fromEntries(entries.filter((e) => e.k.value !== "").map((e) => [e.k.value, e.v.get()])),
  };
}

// A model: one labelled field per property (also used for a method's parameters).
export function model(s, defs, initial, order) {
  const required = new Set(s.required || []);
  const names = order && order.length ? order : Object.keys(s.properties || {});
  const fields = {};
  const body = h("div");
  for (const name of names) {
    const prop = s.properties[name] || {};
    const f = field(prop, defs, initial?.[name]);
    const resolved = resolve(prop, defs);
    const id = `f${++counter}`;
    if (f.input) f.input.id = id;
    f.input?.setAttribute("name", name);
    fields[name] = f;
    const hints = [];
    if (resolved.description) hints.push(resolved.description);
    for (const [key, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"], ["minLength", "min length"], ["maxLength", "max length"]]) {
      if (resolved[key] !== undefined) hints.push(`${label} ${resolved[key]}`);
    }
    body.append(h("div.field", { dataset: { field: name } },
      h("label.name", { for: id }, name, h("span.type", typeName(prop, defs)), required.has(name) ? h("span.req", { title: "required" }, "*") : null),
      f.el, hints.length ? h("div.hint", hints.join(" · ")) : null));
  }
  const el = s.title && !order ? h("fieldset", h("legend", s.title), body) : body;
  return {
    el,
    get: () => {
      const out = {};
      for (const [name, f] of Object.entries(fields)) {
        const value = f.get();
        if (value !== undefined) out[name] = value;
      }
      return out;
    },
  };
}
