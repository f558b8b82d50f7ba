// spheroseg status page: overview, upload, live jobs table, result viewer. Plain ES module, no build
// step. Live updates come over the WebSocket (with `since` resume); polling takes over if it fails.
// Modules: `api.js` (requests with the token), `params.js` (the segmentation parameter form, for
// upload and for "Run again with…"), `viewer.js` (a job's result), `project.js` (a project's
// pixel size, distributions and downloads), `jobs_table.js` (search, sort, empty state and live
// times of the jobs table), `uploads.js` (the upload list following its jobs), `gallery.js`
// (thumbnails with outlines), `columns.js` (the metrics table's columns), `drawer.js` (a job's
// whole story), `controls.js` (pause and resume, the configured segmenters), `dom.js`.

import { ago, el, plural, reveal, shortId } from "./dom.js";
import { TOKEN_KEY, api, authHeaders, json } from "./api.js";
import { paramForm } from "./params.js";
import { setupProject, uploadHint } from "./project.js";
import { jobChanged, openViewer, paramsLoaded, resultChanged, setupViewer, viewerJob } from "./viewer.js";
import { arrange, setupJobsTable } from "./jobs_table.js";
import { followJob, followProgress, trackUpload } from "./uploads.js";
import { galleryEvent, setupGallery } from "./gallery.js";
import { setupColumns } from "./columns.js";
import { detailsButton, drawerJobChanged, setupDrawer } from "./drawer.js";
import { renderQueueState, setupControls } from "./controls.js";

const $ = (id) => document.getElementById(id);
const state = { lastEventId: 0, jobs: new Map(), cursor: null, socketFailures: 0, pollTimer: null, paramFields: null, uploadParams: null, folders: [] };

// ---- formatting ----

const bytes = (b) => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : `${Math.round(b / (1 << 20))} MiB`);
const when = (ms) => (ms ? new Date(ms) : null);
/// The jobs on the page that run `id` again.
const rerunsOf = (id) => [...state.jobs.values()].filter((j) => j.rerun_of === id).map((j) => j.id);

// ---- overview ----

function card(value, label) {
  return el("div", { class: "card" }, el("b", {}, value), el("span", {}, label));
}

async function loadOverview() {
  try {
    const [q, sys, health, ml, watch] = await Promise.all([
      json("/api/queue"), json("/api/system"), json("/api/health"), json("/api/ml"), json("/api/watch"),
    ]);
    renderCounts(q);
    renderQueueState(q);
    const facts = $("facts");
    facts.replaceChildren(
      card(`${q.workers_busy} / ${q.workers_total}`, "workers busy"),
      card(q.completed.last_1m, "completed, last min"),
      card(q.completed.last_15m, "completed, 15 min"),
      card(q.failed.last_5m, "failed, last 5 min"),
      card(q.wait.p50_ms == null ? "–" : ago(q.wait.p50_ms), "median wait"),
      card(q.run.p50_ms == null ? "–" : ago(q.run.p50_ms), "median run"),
      card(bytes(sys.data_dir_bytes), "data directory"),
      card(bytes(sys.disk_available_bytes), `disk free of ${bytes(sys.disk_total_bytes)}`),
      card(bytes(sys.memory_available_bytes), "memory free"),
      card(health.uptime < 60 ? `${health.uptime} s` : ago(health.uptime * 1000), "uptime"),
    );
    $("version").textContent = `v${health.version}`;
    $("retention").textContent = retentionText(q.retention);
    drawSpark(q.completed_per_minute || []);
    renderMl(ml);
    state.folders = watch.folders;
    renderWatch();
    renderBanners(q, sys, ml);
  } catch (e) {
    $("connection").textContent = `error: ${e.message}`;
  }
}

/// What the retention in force keeps, in a sentence.
function retentionText(r) {
  if (!r) return "";
  const limit = (l) => {
    const parts = [];
    if (l.max_age_days != null) parts.push(`after ${plural(Math.round(l.max_age_days), "day")}`);
    if (l.max_count != null) parts.push(`beyond the newest ${l.max_count.toLocaleString()}`);
    return parts.length ? `removed ${parts.join(" or ")}` : "kept until you delete them";
  };
  const [failed, cancelled] = [limit(r.failed), limit(r.cancelled)];
  const rest = failed === cancelled
    ? `failed and cancelled jobs are ${failed}`
    : `failed jobs are ${failed}; cancelled jobs are ${cancelled}`;
  return `Completed jobs and their results are ${limit(r.completed)}; ${rest}.`;
}

function renderCounts(q) {
  const c = q.counts;
  $("counts").replaceChildren(
    card(c.queued, `queued${q.oldest_queued_ms != null ? `, oldest ${ago(q.oldest_queued_ms)}` : ""}`),
    card(c.active, "active"), card(c.delayed, "delayed (retry wait)"),
    card(c.completed, "completed"), card(c.failed, "failed"), card(c.cancelled, "cancelled"),
  );
}

function renderMl(services) {
  const box = $("ml");
  if (!services.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No ML service configured: jobs run on the builtin segmenter."));
    return;
  }
  box.replaceChildren(...services.map((s) => {
    const b = s.breaker;
    const ready = s.ready === null ? "" : s.ready ? ", ready" : ", not ready";
    let text = `${s.name} (${s.segmenter === s.name ? "" : `${s.segmenter}, `}${s.target}): ${s.in_flight}/${s.max_in_flight} calls${ready}, breaker ${b.state}`;
    if (b.state === "open" && b.nextProbe) text += `, next try in ${ago(b.nextProbe - Date.now())}`;
    if (s.wait_until) text += `, asked to wait ${ago(s.wait_until - Date.now())}`;
    const reset = el("button", { type: "button", onclick: async () => { await api(`/api/ml/${s.name}/reset`, { method: "POST" }); loadOverview(); } }, "Reset");
    return el("p", {}, text, " ", reset);
  }));
}

/// Each watched folder: its counts, how it learns of files, its last scan.
function renderWatch() {
  const box = $("watch");
  box.hidden = !state.folders.length;
  $("watch-folders").replaceChildren(...state.folders.map((f) => {
    const how = f.mode === "polling" ? `polled (${f.mode_reason})` : "notified by the system";
    const scan = f.last_scan_at
      ? `last scan ${ago(Date.now() - f.last_scan_at)} ago: ${plural(f.last_scan_files, "file")} in ${ago(f.last_scan_ms)}`
      : "first scan running";
    return el("div", { class: "folder" },
      el("p", {}, el("b", {}, f.path), ` → ${f.results}; project ${f.project}; ${how}; ${scan}`),
      el("div", { class: "cards" },
        card(f.seen, "seen"), card(f.waiting, "being written"), card(f.queued, "queued"),
        card(f.done, "done"), card(f.failed, "failed")),
      f.error ? el("p", { class: "bad" }, f.error) : "");
  }));
}

function renderBanners(q, sys, ml) {
  const banners = [];
  if (q.paused) banners.push(["The queue is paused: nothing new starts.", false]);
  for (const s of ml) {
    if (s.breaker.state !== "closed") banners.push([`${s.name} is unavailable (breaker ${s.breaker.state}): its jobs wait without spending attempts.`, true]);
  }
  const where = sys.disk_mount ? ` on ${sys.disk_mount}` : "";
  if (sys.disk_refused) {
    banners.push([`The disk is full${where} (${bytes(sys.disk_available_bytes)} free): new work is refused until there is room. ${sys.disk_refused}`, true]);
  } else if (sys.disk_low) {
    banners.push([`Disk space is low${where}: ${bytes(sys.disk_available_bytes)} free, under ${bytes(sys.disk_low_water_bytes)}; new images are refused until there is more.`, true]);
  }
  $("banners").replaceChildren(...banners.map(([t, bad]) => el("div", { class: bad ? "bad" : "" }, t)));
}

function drawSpark(series) {
  const c = $("throughput"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...series);
  const w = c.width / Math.max(1, series.length);
  g.fillStyle = "#2f6fde";
  series.forEach((v, i) => {
    const h = ((c.height - 14) * v) / max;
    g.fillRect(i * w + 1, c.height - h, Math.max(1, w - 2), h);
  });
  g.fillStyle = "#667085"; g.font = "11px system-ui";
  g.fillText(`max ${max}/min`, 4, 11);
}

// ---- jobs table ----

function jobFilterQuery() {
  const p = new URLSearchParams({ limit: "50" });
  if ($("state-filter").value) p.set("state", $("state-filter").value);
  if ($("project-filter").value.trim()) p.set("project", $("project-filter").value.trim());
  if ($("job-search").value.trim()) p.set("name", $("job-search").value.trim());
  return p;
}

async function loadJobs(append = false) {
  const p = jobFilterQuery();
  if (append && state.cursor) p.set("cursor", state.cursor);
  const page = await json(`/api/jobs?${p}`);
  if (!append) { state.jobs.clear(); $("job-rows").replaceChildren(); }
  for (const j of page.jobs) upsertJob(j, true);
  state.cursor = page.next;
  $("more").hidden = !page.next;
  arrange();
}

function jobRow(j) {
  const waited = (j.started_at || Date.now()) - j.queued_at;
  const ran = j.started_at ? (j.finished_at || Date.now()) - j.started_at : null;
  const actions = el("td", {}, detailsButton(j), " ");
  if (["queued", "delayed", "active"].includes(j.state)) {
    actions.append(el("button", { type: "button", onclick: (e) => { e.stopPropagation(); act(j.id, "DELETE", ""); } }, "Cancel"));
  }
  if (["failed", "cancelled"].includes(j.state)) {
    actions.append(el("button", { type: "button", onclick: (e) => { e.stopPropagation(); act(j.id, "POST", "/retry"); } }, "Retry"));
  }
  if (!["completed", "failed", "cancelled"].includes(j.state)) {
    const pr = el("input", { type: "number", min: "1", max: "10", value: j.priority, "aria-label": "priority",
      onclick: (e) => e.stopPropagation(),
      onchange: (e) => act(j.id, "PATCH", "", { priority: Number(e.target.value) }) });
    actions.append(" ", pr);
  }
  const created = when(j.created_at);
  const done = j.state === "completed";
  const row = el("tr", { "data-id": j.id, class: done ? "clickable" : "", tabindex: done ? "0" : undefined,
      title: done ? "Open the result" : undefined,
      onclick: () => done && openViewer(j),
      onkeydown: (e) => { if (done && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); openViewer(j); } } },
    el("td", {}, j.image.name, ...jobLinks(j)),
    el("td", { class: `state ${j.state}` }, j.state),
    el("td", {}, j.priority),
    el("td", {}, j.project || ""),
    el("td", {}, el("progress", { max: "100", value: j.progress, "aria-label": "progress" })),
    el("td", {}, j.objects ?? ""),
    el("td", {}, `${j.attempts} / ${j.max_attempts}`),
    // Counting while they last (jobs_table.js ticks `data-since`).
    el("td", { "data-since": j.started_at ? undefined : j.queued_at }, ago(waited)),
    el("td", { "data-since": j.state === "active" ? j.started_at : undefined }, ran == null ? "–" : ago(ran)),
    el("td", { title: created ? created.toLocaleString() : "", "data-since": j.created_at, "data-suffix": " ago" },
      created ? `${ago(Date.now() - j.created_at)} ago` : ""),
    el("td", { class: "err" }, j.error ? j.error.message : ""),
    actions,
  );
  return row;
}

/// "rerun of" and "rerun as" lines for a row; each shows the linked row when it is on the page.
function jobLinks(j) {
  const link = (text, id) => el("button", { type: "button", class: "link", title: id,
    onclick: (e) => { e.stopPropagation(); showRow(id); } }, `${text} ${shortId(id)}`);
  const links = [];
  if (j.rerun_of) links.push(link("rerun of", j.rerun_of));
  for (const id of rerunsOf(j.id)) links.push(link("rerun as", id));
  return links.length ? [el("div", { class: "links" }, ...links)] : [];
}

function showRow(id) {
  const row = document.querySelector(`tr[data-id="${id}"]`);
  if (!row) return;
  reveal(row, "center");
  row.classList.add("flash");
  setTimeout(() => row.classList.remove("flash"), 1200);
}

function upsertJob(j, append) {
  state.jobs.set(j.id, j);
  const row = jobRow(j);
  const old = document.querySelector(`tr[data-id="${j.id}"]`);
  if (old) old.replaceWith(row);
  else if (append) $("job-rows").append(row);
  else $("job-rows").prepend(row);
  arrange();
  redrawOriginal(j);
  jobChanged(j);
  drawerJobChanged(j);
}

/// Redraws the row of the job `j` runs again, whose "rerun as" line names `j`.
function redrawOriginal(j) {
  const original = j.rerun_of && state.jobs.get(j.rerun_of);
  const row = original && document.querySelector(`tr[data-id="${original.id}"]`);
  if (row) row.replaceWith(jobRow(original));
}

async function act(id, method, suffix, body) {
  try {
    const j = await json(`/api/jobs/${id}${suffix}`, {
      method, headers: body ? { "Content-Type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined,
    });
    upsertJob(j, false);
  } catch (e) {
    alert(`Not done: ${e.message}`);
  }
}

/// Whether a job belongs in the table under the current filter.
function matchesFilter(j) {
  const st = $("state-filter").value, pr = $("project-filter").value.trim();
  return (!st || j.state === st) && (!pr || j.project === pr);
}

/// A job as an event or an upload told it: drawn, moved out of the filter, or added.
function showJob(j) {
  if (matchesFilter(j)) upsertJob(j, false);
  else removeJob(j.id);
}

function removeJob(id) {
  const j = state.jobs.get(id);
  state.jobs.delete(id);
  document.querySelector(`tr[data-id="${id}"]`)?.remove();
  if (j) redrawOriginal(j);
  arrange();
}

async function bulk(action) {
  // A bulk action names what it acts on; with no filter on the page, that is every job.
  const filter = {};
  if ($("state-filter").value) filter.state = $("state-filter").value;
  if ($("project-filter").value.trim()) filter.project = $("project-filter").value.trim();
  if (!filter.state && !filter.project) filter.all = true;
  const what = `${filter.state || "all"} jobs${filter.project ? ` of project ${filter.project}` : ""}`;
  const verb = { retry: "Retry", cancel: "Cancel", delete: "Delete" }[action];
  const done = { retry: "retried", cancel: "cancelled", delete: "deleted" }[action];
  const call = (dry_run) => json("/api/jobs/bulk", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, filter, dry_run }),
  });
  try {
    const plan = await call(true);
    if (!plan.affected) {
      $("bulk-result").textContent = `nothing to ${action}: ${plan.matched} ${what} matched, none ${action === "delete" ? "finished" : "applicable"}`;
      return;
    }
    const jobs = plural(plan.affected, "job");
    const warning = action === "retry" ? "" : " This cannot be undone.";
    if (!confirm(`${verb} ${jobs} (${what}${action === "delete" ? ", finished ones and their results" : ""})?${warning}`)) return;
    const r = await call(false);
    $("bulk-result").textContent = `${r.affected} of ${plan.affected} ${done}`;
    loadJobs(); loadOverview();
  } catch (e) {
    alert(`Not done: ${e.message}`);
  }
}

// ---- upload ----

function upload(files) {
  const params = state.uploadParams;
  const bad = params?.invalid();
  if (bad) {
    for (const file of files) {
      $("uploads").prepend(el("li", { class: "bad" }, el("span", {}, file.name),
        el("span", {}, `not sent: ${bad.field.label}: ${bad.message}`)));
    }
    $("upload-params").open = true;
    bad.input.reportValidity();
    return;
  }
  const changes = params ? params.changes() : {};
  for (const file of files) {
    const item = el("li", {}, el("span", {}, file.name), el("progress", { max: "100", value: "0" }), el("span", {}, ""));
    $("uploads").prepend(item);
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("priority", $("priority").value || "5");
    if ($("project").value.trim()) form.append("project", $("project").value.trim());
    if ($("segmenter").value) form.append("segmenter", $("segmenter").value);
    // Only what a person changed: the server fills in the rest with its defaults.
    if (Object.keys(changes).length) form.append("params", JSON.stringify(changes));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) item.children[1].value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 202) {
        item.children[1].value = 100;
        item.children[2].textContent = "queued";
        // The queued events draw the rows; the reply only says the upload is in. The line
        // follows its job from here.
        if (body.jobs?.[0]) trackUpload(item, body.jobs[0].id);
      } else {
        item.classList.add("bad");
        item.children[2].textContent = `refused: ${body.message || xhr.status}`;
      }
    };
    xhr.onerror = () => { item.classList.add("bad"); item.children[2].textContent = "upload failed"; };
    xhr.send(form);
  }
}

// ---- live updates ----

let refreshQueued = false;
function soon(fn) {
  if (refreshQueued) return;
  refreshQueued = true;
  setTimeout(() => { refreshQueued = false; fn(); }, 300);
}

function onEvent(e) {
  if (e.id) state.lastEventId = Math.max(state.lastEventId, e.id);
  if (e.job) followJob(e.job);
  else if (e.type === "job_progress") followProgress(e.job_id, e.progress);
  galleryEvent(e);
  switch (e.type) {
    case "snapshot":
      state.lastEventId = Math.max(state.lastEventId, e.last_event_id || 0);
      if (e.queue) renderCounts(e.queue);
      break;
    case "resync":
      loadOverview(); loadJobs();
      break;
    case "queue_stats":
      soon(loadOverview);
      break;
    case "job_progress": {
      const j = state.jobs.get(e.job_id);
      if (j) { j.progress = e.progress; j.state = "active"; upsertJob(j, false); }
      break;
    }
    case "job_queued": case "job_started": case "job_completed": case "job_failed":
    case "job_retrying": case "job_cancelled": case "job_interrupted": case "job_requeued":
    case "job_priority_changed":
      // The event carries the job as the API shows it: no request per event.
      if (e.job) showJob(e.job);
      soon(loadOverview);
      break;
    case "result_corrected":
      if (e.job) showJob(e.job);
      resultChanged(e);
      break;
    case "jobs_deleted":
      for (const id of e.job_ids || []) removeJob(id);
      soon(loadOverview);
      break;
    case "breaker_changed":
      loadOverview();
      break;
    case "watch_folder": {
      const i = state.folders.findIndex((f) => f.path === e.folder.path);
      if (i >= 0) state.folders[i] = e.folder; else state.folders.push(e.folder);
      renderWatch();
      break;
    }
  }
}

function connect() {
  if (document.hidden) return;
  const t = sessionStorage.getItem(TOKEN_KEY);
  const q = new URLSearchParams({ since: String(state.lastEventId) });
  if (t) q.set("access_token", t);
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?${q}`);
  state.ws = ws;
  ws.onopen = () => { state.socketFailures = 0; stopPolling(); setConnection("live", "live"); };
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch { /* ignore a bad frame */ } };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.socketFailures += 1;
    setConnection("down", "reconnecting…");
    if (state.socketFailures >= 3) startPolling();
    setTimeout(connect, Math.min(1000 * state.socketFailures, 10000));
  };
}

function setConnection(kind, text) {
  const c = $("connection");
  c.className = `pill ${kind}`;
  c.textContent = text;
}

function startPolling() {
  if (state.pollTimer) return;
  setConnection("down", "polling");
  state.pollTimer = setInterval(() => { loadOverview(); loadJobs(); }, 3000);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    const ws = state.ws; state.ws = null; if (ws) ws.close();
    setConnection("", "paused");
  } else {
    loadOverview(); connect();
  }
});

// ---- segmentation parameters ----

/// The upload form's parameters, from the server's description of them.
async function setupParams() {
  try {
    state.paramFields = (await json("/api/segmenters/builtin/params")).fields;
  } catch (e) {
    $("upload-param-fields").replaceChildren(el("p", { class: "bad" }, `The parameters could not be loaded: ${e.message}`));
    return;
  }
  const form = paramForm(state.paramFields, "upload");
  form.onchange = () => {
    const changes = form.changes();
    const n = Object.keys(changes).length;
    $("upload-params-changed").textContent = n ? `(${n} changed)` : "(defaults)";
    uploadHint(changes.pixel_size_um ?? null);
  };
  form.onchange();
  state.uploadParams = form;
  $("upload-param-fields").replaceChildren(form.element);
  $("upload-params-reset").onclick = () => form.fill({});
  paramsLoaded();
}

// ---- start ----

function setup() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  // Handled here only: the page body takes drops too, and one file must make one job.
  drop.addEventListener("drop", (e) => { e.preventDefault(); e.stopPropagation(); drop.classList.remove("over"); upload(e.dataTransfer.files); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
  $("files").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
  $("state-filter").onchange = () => loadJobs();
  $("project-filter").onchange = () => loadJobs();
  $("more").onclick = () => loadJobs(true);
  $("bulk-retry").onclick = () => bulk("retry");
  $("bulk-cancel").onclick = () => bulk("cancel");
  $("bulk-delete").onclick = () => bulk("delete");
  // The whole page takes dropped images, not only the drop zone.
  document.body.addEventListener("dragover", (e) => e.preventDefault());
  document.body.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files.length) upload(e.dataTransfer.files); });
  setupViewer({ fields: () => state.paramFields, rerunsOf, showRow });
  setupJobsTable({ jobs: () => state.jobs, reload: () => loadJobs() });
  setupGallery({ open: openViewer });
  setupColumns();
  setupDrawer({ fields: () => state.paramFields, openViewer, showRow, viewerJob });
  setupControls({ changed: loadOverview });
  setupParams();
  setupProject();
  loadOverview();
  loadJobs();
  connect();
  setInterval(() => { if (!document.hidden) loadOverview(); }, 15000);
}

setup();
