// The segmentation parameter form, built from what the server says about each parameter
// (GET /api/segmenters/builtin/params: type, default, range or choices, help), so no default or
// range is written here. The upload form fills it with the defaults, the viewer's "Run again
// with…" with a job's parameters; `changes()` gives only the fields that differ from what it was
// filled with. An empty number input means the field's default.

import { el } from "./dom.js";

/// A value as a person reads it: `null` as what it means, booleans as on/off, units after numbers.
export function describe(field, value) {
  if (value === null || value === undefined) return field.null_means || "none";
  if (field.type === "boolean") return value ? "on" : "off";
  return field.unit ? `${value} ${field.unit}` : String(value);
}

/// The parameters of `params` that are not their defaults, as "Label value" text.
export function summary(fields, params) {
  const changed = fields.filter((f) => params[f.name] !== undefined && params[f.name] !== f.default);
  if (!changed.length) return "defaults";
  return changed.map((f) => `${f.label} ${describe(f, params[f.name])}`).join(", ");
}

function read(field, input) {
  if (field.type === "boolean") return input.checked;
  if (field.type === "choice") return input.value;
  if (input.value.trim() === "") return field.default;
  return Number(input.value);
}

function write(field, input, value) {
  if (field.type === "boolean") input.checked = Boolean(value);
  else if (field.type === "choice") input.value = value;
  else input.value = value === null || value === undefined ? "" : String(value);
}

function control(field, id) {
  if (field.type === "boolean") return el("input", { id, type: "checkbox" });
  if (field.type === "choice") {
    return el("select", { id }, ...field.choices.map((c) => el("option", { value: c.value, title: c.help }, c.value)));
  }
  const input = el("input", {
    id, type: "number", inputmode: "decimal",
    min: field.minimum ?? field.exclusive_minimum ?? undefined,
    max: field.maximum ?? undefined,
    step: field.step ?? "any",
    placeholder: field.nullable ? "default" : String(field.default),
  });
  if (field.exclusive_minimum !== null) {
    // A number input's `min` admits the bound itself; this field must be above it.
    input.addEventListener("input", () => {
      const v = input.value.trim();
      input.setCustomValidity(v !== "" && Number(v) <= field.exclusive_minimum ? `Must be above ${field.exclusive_minimum}.` : "");
    });
  }
  return input;
}

/// The form for `fields`, filled with `base` (a job's params, or the defaults when absent). Input
/// ids are `${prefix}-${name}`. Returns the element and what a caller needs: `changes()` (fields
/// that differ from `base`), `invalid()` (the first input a browser would refuse, or null),
/// `fill(base)` and an `onchange` hook.
export function paramForm(fields, prefix, base = {}) {
  const rows = new Map();
  const form = { element: el("div", { class: "param-grid" }), onchange: null, base };
  for (const f of fields) {
    const id = `${prefix}-${f.name}`;
    const input = control(f, id);
    const help = el("small", { class: "muted" }, `Default: ${describe(f, f.default)}. ${f.help}`);
    const label = el("label", { for: id }, f.label);
    const row = f.type === "boolean"
      ? el("div", { class: "param", "data-name": f.name }, el("span", { class: "param-input" }, input, label), help)
      : el("div", { class: "param", "data-name": f.name }, label,
        el("span", { class: "param-input" }, input, f.unit ? el("span", { class: "muted" }, f.unit) : ""), help);
    const changed = () => {
      row.classList.toggle("changed", read(f, input) !== valueOf(f));
      form.onchange?.();
    };
    input.addEventListener("input", changed);
    input.addEventListener("change", changed);
    rows.set(f.name, { f, input, row });
    form.element.append(row);
  }
  const valueOf = (f) => (form.base[f.name] === undefined ? f.default : form.base[f.name]);
  form.fill = (next = {}) => {
    form.base = next;
    for (const { f, input, row } of rows.values()) {
      write(f, input, valueOf(f));
      input.setCustomValidity("");
      row.classList.remove("changed");
    }
    form.onchange?.();
  };
  form.changes = () => {
    const out = {};
    for (const { f, input } of rows.values()) {
      const v = read(f, input);
      if (v !== valueOf(f)) out[f.name] = v;
    }
    return out;
  };
  form.invalid = () => {
    for (const { f, input } of rows.values()) {
      if (!input.checkValidity()) return { field: f, input, message: input.validationMessage };
    }
    return null;
  };
  form.fill(base);
  return form;
}
