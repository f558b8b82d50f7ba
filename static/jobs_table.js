// The jobs table's arrangement: search by file name, sort by any column (a header button or the
// "Sort" menu), the empty state that says whether filters hid everything, cards on a narrow
// screen (each cell labelled with its column), and times that keep counting. app.js draws one
// row per job; this module orders, hides and labels the rows, and asks app.js to list again when
// the search changes (the server searches every job, not only the pages loaded).

import { ago } from "./dom.js";

const $ = (id) => document.getElementById(id);
/// The jobs on the page by id, from app.js.
let jobs = () => new Map();
const sort = { key: "", dir: 1 };
let queued = false;

/// How each column sorts: a job to a comparable value.
const KEYS = {
  image: (j) => j.image.name.toLowerCase(),
  state: (j) => j.state,
  priority: (j) => j.priority,
  project: (j) => (j.project || "").toLowerCase(),
  progress: (j) => j.progress,
  objects: (j) => j.objects ?? -1,
  attempts: (j) => j.attempts,
  waited: (j) => (j.started_at || Date.now()) - j.queued_at,
  ran: (j) => (j.started_at ? (j.finished_at || Date.now()) - j.started_at : -1),
  created: (j) => j.created_at,
  error: (j) => (j.error ? j.error.message : ""),
};

/// The rows change soon: arranged once after the current burst of changes.
export function arrange() {
  if (queued) return;
  queued = true;
  queueMicrotask(() => { queued = false; run(); });
}

function run() {
  const body = $("job-rows");
  const q = $("job-search").value.trim().toLowerCase();
  const heads = [...document.querySelectorAll("#jobs thead th")].map((th) => th.dataset.label ?? th.textContent.trim());
  const rows = [...body.children];
  let shown = 0;
  for (const tr of rows) {
    const j = jobs().get(tr.dataset.id);
    tr.hidden = Boolean(q) && !(j && j.image.name.toLowerCase().includes(q));
    if (!tr.hidden) shown += 1;
    if (!tr.dataset.labelled) {
      [...tr.children].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
      tr.dataset.labelled = "1";
    }
  }
  if (sort.key) {
    const key = KEYS[sort.key];
    const value = (tr) => { const j = jobs().get(tr.dataset.id); return j ? key(j) : ""; };
    const sorted = rows.map((tr) => [value(tr), tr]).sort(([a], [b]) => (a < b ? -sort.dir : a > b ? sort.dir : 0)).map(([, tr]) => tr);
    // Moved only when the order changed, so a focused row keeps its focus.
    if (sorted.some((tr, i) => tr !== rows[i])) body.append(...sorted);
  }
  const filtered = Boolean($("state-filter").value || $("project-filter").value.trim() || q);
  const empty = $("no-jobs");
  empty.hidden = shown > 0;
  empty.textContent = filtered ? "No jobs match these filters." : "No jobs yet: drop images here or above.";
}

function setSort(key, dir) {
  sort.key = key; sort.dir = dir;
  $("job-sort").value = key ? `${key}:${dir}` : "";
  for (const th of document.querySelectorAll("#jobs thead th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === key ? (dir > 0 ? "ascending" : "descending") : "none");
  }
  arrange();
}

/// Counts every `[data-since]` cell up from its time (`data-suffix` after it), every few seconds.
function tick() {
  const now = Date.now();
  for (const e of document.querySelectorAll("#job-rows [data-since]")) {
    e.textContent = `${ago(now - Number(e.dataset.since))}${e.dataset.suffix || ""}`;
  }
}

/// `hooks`: `jobs()` (the page's jobs by id), `reload()` (the listing again, with the search).
export function setupJobsTable(hooks) {
  jobs = hooks.jobs;
  const menu = $("job-sort");
  for (const th of document.querySelectorAll("#jobs thead th[data-sort]")) {
    const label = th.textContent.trim();
    th.dataset.label = label;
    const button = document.createElement("button");
    button.type = "button"; button.className = "sort"; button.textContent = label;
    button.title = `Sort by ${label.toLowerCase()}`;
    // Ascending first, then descending, then the server's order.
    button.onclick = () => {
      if (sort.key !== th.dataset.sort) setSort(th.dataset.sort, 1);
      else if (sort.dir > 0) setSort(th.dataset.sort, -1);
      else setSort("", 1);
    };
    th.replaceChildren(button);
    for (const dir of [1, -1]) {
      menu.append(new Option(`${label} ${dir > 0 ? "↑" : "↓"}`, `${th.dataset.sort}:${dir}`));
    }
  }
  menu.onchange = () => { const [k, d] = menu.value.split(":"); setSort(k || "", Number(d) || 1); };
  // The rows loaded are narrowed at once; the server then searches every job (a pause in typing).
  let searching = null;
  $("job-search").addEventListener("input", () => {
    arrange();
    clearTimeout(searching);
    searching = setTimeout(hooks.reload, 300);
  });
  setSort("", 1);
  setInterval(() => { if (!document.hidden) tick(); }, 5000);
}
