// A job's whole story in a drawer (a modal <dialog> at the side): its image, parameters and
// segmenter, timings per stage (from its result), every attempt with its error and every event of
// its life (GET /api/jobs/{id}/history), its result versions (a completed job's), and a
// re-run. Opened from a row of the jobs table and from the viewer; Escape closes it, Tab stays
// inside it while it is open, and focus goes back to what opened it.

import { el, shortId } from "./dom.js";
import { api, json } from "./api.js";
import { summary } from "./params.js";

const $ = (id) => document.getElementById(id);
/// What the drawer asks of the page (`setupDrawer`): `fields()` (the parameters' description, or
/// null), `openViewer(job)`, `showRow(id)`, `viewerJob()` (the job the viewer shows).
let page = null;
const open = { id: null, opener: null, preview: null, refresh: null };

const time = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
function span(ms) {
  if (ms == null) return "–";
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

/// A "Details" button for a row of the jobs table.
export function detailsButton(job) {
  return el("button", { type: "button", class: "details", "aria-label": `Details of ${job.image.name}`,
    onclick: (e) => { e.stopPropagation(); openDrawer(job.id, e.currentTarget); } }, "Details");
}

export function setupDrawer(p) {
  page = p;
  const dialog = el("dialog", { id: "drawer", class: "drawer", "aria-labelledby": "drawer-title" },
    el("div", { class: "drawer-head" },
      el("h2", { id: "drawer-title" }, "Job"),
      el("button", { type: "button", id: "drawer-close", "aria-label": "Close the job's details" }, "Close")),
    el("div", { id: "drawer-body" }));
  document.body.append(dialog);
  $("drawer-close").onclick = closeDrawer;
  // Escape: the dialog's own cancel, so focus goes back the same way as with Close.
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); closeDrawer(); });
  dialog.addEventListener("keydown", trapTab);
  // A click on the backdrop (outside the drawer's box) closes it.
  dialog.addEventListener("click", (e) => {
    const r = dialog.getBoundingClientRect();
    if (e.target === dialog && (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom)) closeDrawer();
  });
  $("viewer-details").onclick = (e) => { const j = page.viewerJob(); if (j) openDrawer(j.id, e.currentTarget); };
}

/// Keeps Tab and Shift+Tab on the drawer's own controls while it is open.
function trapTab(e) {
  if (e.key !== "Tab") return;
  const items = [...$("drawer").querySelectorAll("button, a[href], input, select, textarea, [tabindex]:not([tabindex='-1'])")]
    .filter((x) => !x.disabled && x.offsetParent !== null);
  if (!items.length) return;
  const first = items[0], last = items[items.length - 1];
  if (e.shiftKey && (document.activeElement === first || !$("drawer").contains(document.activeElement))) {
    e.preventDefault(); last.focus();
  } else if (!e.shiftKey && document.activeElement === last) {
    e.preventDefault(); first.focus();
  }
}

export function closeDrawer() {
  const d = $("drawer");
  if (!d?.open) return;
  d.close();
  if (open.preview) URL.revokeObjectURL(open.preview);
  const { id, opener } = open;
  Object.assign(open, { id: null, opener: null, preview: null });
  // The row may have been drawn again while the drawer was open: its new button then.
  const back = opener?.isConnected ? opener : document.querySelector(`tr[data-id="${id}"] button.details`);
  back?.focus();
}

export async function openDrawer(id, opener = document.activeElement) {
  const d = $("drawer");
  if (open.id !== id && open.preview) { URL.revokeObjectURL(open.preview); open.preview = null; }
  open.id = id;
  if (!d.open) { open.opener = opener; d.showModal(); }
  $("drawer-close").focus();
  await render(id);
}

/// The open drawer follows its job's changes (the page calls this for every job it draws).
export function drawerJobChanged(j) {
  if (open.id !== j.id || !$("drawer").open) return;
  clearTimeout(open.refresh);
  open.refresh = setTimeout(() => { if (open.id === j.id) render(j.id); }, 300);
}

async function render(id) {
  const body = $("drawer-body");
  let job, history;
  try {
    [job, history] = await Promise.all([json(`/api/jobs/${id}`), json(`/api/jobs/${id}/history`)]);
  } catch (e) {
    body.replaceChildren(el("p", { class: "bad" }, `The job could not be loaded: ${e.message}`));
    return;
  }
  // Only a completed job has a result and its versions.
  const done = job.state === "completed";
  const [result, versions] = await Promise.all([
    done ? json(`/api/jobs/${id}/result`).catch(() => null) : null,
    done ? json(`/api/jobs/${id}/result/versions`).catch(() => null) : null,
  ]);
  if (open.id !== id) return;
  $("drawer-title").textContent = `Job: ${job.image.name}`;
  const img = el("img", { class: "drawer-image", alt: `The image of job ${shortId(job.id)}` });
  if (!open.preview) {
    api(`/api/jobs/${id}/preview.png`).then((r) => (r.ok ? r.blob() : null)).then((b) => {
      if (!b || open.id !== id) return;
      open.preview = URL.createObjectURL(b);
      img.src = open.preview;
    }).catch(() => {});
  } else {
    img.src = open.preview;
  }
  body.replaceChildren(
    el("div", { class: "drawer-top" }, img, facts(job, result)),
    actions(job),
    section("Parameters", el("p", {}, parameters(job))),
    timings(job, result),
    attempts(history),
    events(history),
    resultVersions(job, versions),
  );
}

function section(title, ...content) {
  return el("section", { class: "drawer-part", "aria-label": title }, el("h3", {}, title), ...content);
}

function facts(j, result) {
  const rows = [
    ["Job", el("code", {}, j.id)],
    ["State", el("span", { class: `state ${j.state}` }, j.state)],
    ["Segmenter", result && result.segmenter !== j.segmenter ? `${j.segmenter} (ran on ${result.segmenter})` : j.segmenter],
    ["Priority", j.priority],
    ["Attempts", `${j.attempts} of ${j.max_attempts}`],
    ["Project", j.project || "–"],
    ["Image", `${j.image.width} × ${j.image.height} px, ${Math.max(1, Math.round(j.image.bytes / 1024))} KiB`],
    ["Created", time(j.created_at)],
    ["Started", time(j.started_at)],
    ["Finished", time(j.finished_at)],
  ];
  if (j.objects != null) rows.push(["Objects", j.objects]);
  if (j.rerun_of) rows.push(["Rerun of", el("button", { type: "button", class: "link", onclick: () => openDrawer(j.rerun_of) }, shortId(j.rerun_of))]);
  for (const [k, v] of j.metadata || []) rows.push([k, v]);
  if (j.error) rows.push(["Last error", el("span", { class: "err" }, `${j.error.code}: ${j.error.message}`)]);
  return el("dl", { class: "drawer-facts" }, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function parameters(j) {
  const fields = page.fields();
  if (fields) return summary(fields, j.params);
  return JSON.stringify(j.params);
}

function actions(j) {
  const status = el("span", { id: "drawer-status", role: "status" });
  const rerun = el("button", { type: "button", id: "drawer-rerun", onclick: async () => {
    try {
      const r = await json(`/api/jobs/${j.id}/rerun`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      const id = r.jobs[0].id;
      status.replaceChildren("Queued as ", el("button", { type: "button", class: "link", onclick: () => openDrawer(id) }, shortId(id)));
    } catch (e) {
      status.textContent = `Not run again: ${e.message}`;
    }
  } }, "Run again");
  const row = el("div", { class: "row" }, rerun);
  if (j.state === "completed") {
    row.prepend(el("button", { type: "button", onclick: () => { closeDrawer(); page.openViewer(j); } }, "Open the result"));
  }
  row.append(el("button", { type: "button", onclick: () => { closeDrawer(); page.showRow(j.id); } }, "Show in the table"), status);
  return row;
}

function timings(j, result) {
  const rows = [["waited in the queue (last time)", j.started_at ? j.started_at - j.queued_at : null],
    ["ran (last attempt)", j.started_at && j.finished_at ? j.finished_at - j.started_at : null]];
  for (const [stage, ms] of result?.timings_ms || []) rows.push([stage, ms]);
  const note = result ? "" : j.state === "completed" ? "The result's stage timings could not be loaded." : "Stage timings come with the result.";
  return section("Timings",
    el("table", { class: "drawer-table drawer-timings" }, el("tbody", {}, ...rows.map(([k, ms]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, span(ms)))))),
    note ? el("p", { class: "muted" }, note) : "");
}

const OUTCOMES = { completed: "completed", retrying: "failed, retried later", failed: "failed", held: "handed back (service unavailable)",
  interrupted: "stopped by a shutdown", requeued: "lease lost", cancelled: "cancelled" };

function attempts(h) {
  if (!h.attempts.length) return section("Attempts", el("p", { class: "muted" }, "Not run yet."));
  const head = el("tr", {}, ...["#", "Segmenter", "Started", "Ran", "Outcome", "Error"].map((t) => el("th", { scope: "col" }, t)));
  // Each cell names its column too, for the narrow layout that shows an attempt as a card.
  const cell = (label, text, cls = "") => el("td", { class: cls, "data-label": label }, text);
  const rows = h.attempts.map((a) => el("tr", { class: "attempt" },
    cell("#", a.number),
    cell("Segmenter", a.segmenter || "–"),
    cell("Started", time(a.started_at)),
    cell("Ran", a.ended_at ? span(a.ended_at - a.started_at) : "running"),
    cell("Outcome", a.outcome ? (OUTCOMES[a.outcome] || a.outcome) + (a.reason ? ` (${a.reason})` : "") : "running", a.outcome === "completed" ? "" : "err"),
    cell("Error", a.error ? `${a.error.code}: ${a.error.message}` : "–", a.error ? "err" : "")));
  return section(`Attempts (${h.attempts.length})`,
    el("table", { class: "drawer-table drawer-attempts" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function eventText(e) {
  const parts = [e.kind.replace("_", " ")];
  if (e.kind === "priority_changed") parts.push(`${e.from_priority} → ${e.priority}`);
  if (e.kind === "cancelled" && e.was) parts.push(`(was ${e.was})`);
  if (e.reason) parts.push(`(${e.reason})`);
  if (e.kind === "started") parts.push(`attempt ${e.attempts}${e.segmenter ? ` on ${e.segmenter}` : ""}`);
  return parts.join(" ") + (e.error ? `: ${e.error.message}` : "");
}

function events(h) {
  const items = h.events.map((e) => el("li", { "data-kind": e.kind }, el("time", { datetime: new Date(e.at).toISOString() }, time(e.at)), " ", eventText(e)));
  const dropped = h.dropped ? el("p", { class: "muted" }, `${h.dropped} older events are not kept.`) : "";
  return section("Events", items.length ? el("ol", { class: "drawer-events" }, ...items) : el("p", { class: "muted" }, "No events kept for this job."), dropped);
}

function resultVersions(j, versions) {
  const list = Array.isArray(versions) ? versions : versions?.versions;
  if (!Array.isArray(list) || !list.length) return "";
  return section("Result versions", el("ul", {}, ...list.map((v) => el("li", {},
    el("a", { href: `/api/jobs/${j.id}/result?version=${v.version}`, target: "_blank", rel: "noopener" }, `version ${v.version}`),
    ` ${v.corrected ? "corrected by hand" : "automatic"}, ${plural(v.objects, "object")}, ${time(v.created_at)}`))));
}

const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;
