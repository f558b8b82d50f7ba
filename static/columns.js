// The metrics table at any width: a person picks the columns it shows (remembered in this
// browser), and a line says when what is left still scrolls sideways. The table is drawn by
// viewer.js; this module follows each drawing.

import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);
const KEY = "spheroseg-metrics-hidden";

/// The column names a person hid (the object number is always shown).
function hidden() {
  try { return new Set(JSON.parse(localStorage.getItem(KEY) || "[]")); } catch { return new Set(); }
}

function apply() {
  const table = $("metrics");
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  const off = hidden();
  for (const tr of table.querySelectorAll("tr")) {
    [...tr.children].forEach((cell, i) => {
      cell.classList.toggle("col-off", i > 0 && cell.colSpan === 1 && off.has(heads[i]));
    });
  }
  const list = $("metrics-column-list");
  list.replaceChildren(...heads.slice(1).map((h, i) => el("label", {},
    el("input", { type: "checkbox", id: `metrics-col-${i + 1}`, ...(off.has(h) ? {} : { checked: "" }),
      onchange: (e) => {
        const now = hidden();
        if (e.target.checked) now.delete(h); else now.add(h);
        localStorage.setItem(KEY, JSON.stringify([...now]));
        apply();
      } }), ` ${h}`)));
  hint();
}

/// Says so when the table is wider than its box.
function hint() {
  const table = $("metrics");
  $("metrics-scroll").hidden = table.scrollWidth <= table.clientWidth + 1;
}

export function setupColumns() {
  // Only the table's own rows changing: what apply() toggles on cells is not a new drawing.
  new MutationObserver(apply).observe($("metrics"), { childList: true });
  new ResizeObserver(hint).observe($("metrics"));
}
