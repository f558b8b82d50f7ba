// The result viewer: the image with its outlines (zoom and pan), the metrics table, downloads,
// the job's parameters and rerun links, and "Run again with…", which fills the parameter form
// (`params.js`) with the job's parameters and posts the changes to /api/jobs/{id}/rerun. The
// result's versions are listed with view and restore; editing the outlines is in `edit.js`.

import { el, reveal, shortId } from "./dom.js";
import { api, json } from "./api.js";
import { paramForm, summary } from "./params.js";
import { drawEdit, editedPolygons, editing, setupEditor, stopEdit } from "./edit.js";

const $ = (id) => document.getElementById(id);
/// What the viewer asks of the page (`setupViewer`): `fields()` (the parameters' description, or
/// null until loaded), `rerunsOf(id)` (jobs on the page that run `id` again), `showRow(id)`.
let page = null;

// `reruns`: the jobs this page made by "Run again with…", by original, in case the table's filter
// hides them.
const view = { scale: 1, x: 0, y: 0, img: null, result: null, factor: 1, job: null, rerunForm: null, reruns: new Map() };

/// Shows `job`'s result: its latest version, or `version`.
export async function openViewer(job, version) {
  if (editing() && !stopEdit()) return;
  const same = view.job?.id === job.id && view.img;
  view.job = job;
  $("viewer").hidden = false;
  $("viewer-title").textContent = `Result: ${job.image.name}`;
  $("rerun-form").hidden = true;
  $("rerun-open").setAttribute("aria-expanded", "false");
  $("rerun-result").textContent = "";
  renderViewerLinks();
  const at = version ? `?version=${version}` : "";
  const [result, blob] = await Promise.all([
    json(`/api/jobs/${job.id}/result${at}`),
    same ? null : api(`/api/jobs/${job.id}/preview.png`).then((r) => r.blob()),
  ]);
  showResult(result);
  if (blob) {
    const img = new Image();
    img.onload = () => {
      view.img = img;
      view.factor = img.width / result.image.width;
      const c = $("canvas");
      c.width = img.width; c.height = img.height;
      view.scale = 1; view.x = 0; view.y = 0;
      draw();
    };
    img.src = URL.createObjectURL(blob);
  }
  renderVersions();
  if (!same) reveal($("viewer"));
}

/// Shows a result that arrived (opened, saved or restored): outlines, metrics, version.
function showResult(result) {
  view.result = result;
  view.latest = !view.versions || result.version === view.versions.at(-1)?.version;
  const v = result.version ?? 1;
  $("viewer-version").textContent = `Version ${v}${result.corrected ? ", corrected by hand" : ", as segmented"}${view.latest ? "" : " (an older version: restore it to make it the latest)"}.`;
  $("edit-open").disabled = !view.latest;
  renderMetrics(result);
  draw();
}

/// The result's versions, each with view and restore.
async function renderVersions() {
  const job = view.job;
  const list = await json(`/api/jobs/${job.id}/result/versions`).catch(() => []);
  if (view.job !== job) return;
  view.versions = list;
  const latest = list.at(-1)?.version;
  view.latest = view.result?.version === latest;
  $("edit-open").disabled = !view.latest;
  const when = (ms) => new Date(ms).toLocaleString();
  $("versions-list").replaceChildren(...list.map((v) => el("li", {},
    el("span", {}, `Version ${v.version}${v.latest ? " (latest)" : ""}: ${v.corrected ? "corrected by hand" : "as segmented"}`,
      v.restored_from ? `, restored from ${v.restored_from}` : "", `, ${v.objects} object${v.objects === 1 ? "" : "s"}, ${when(v.created_at)}`),
    el("button", { type: "button", "aria-label": `View version ${v.version}`, onclick: () => openViewer(job, v.version) }, "View"),
    v.version === latest ? "" : el("button", { type: "button", "aria-label": `Restore version ${v.version}`, onclick: () => restore(v.version, latest) }, "Restore"),
  )));
  $("versions").querySelector("summary").textContent = `Versions of this result (${list.length})`;
}

async function restore(version, base) {
  try {
    const r = await json(`/api/jobs/${view.job.id}/result/versions/${version}/restore`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ base_version: base }),
    });
    view.versions = null;
    showResult(r);
    renderVersions();
  } catch (e) {
    $("viewer-version").textContent = `Not restored: ${e.message}`;
  }
}

/// Another page (or this one) stored a new version of a job's result.
export function resultChanged(e) {
  if (view.job?.id !== e.job_id || $("viewer").hidden) return;
  if (editing()) {
    $("edit-status").textContent = `Version ${e.version} was saved elsewhere: saving these changes will be refused.`;
  } else if (view.result?.version !== e.version) {
    view.versions = null;
    openViewer(e.job);
  }
}

/// The job's id, its parameters, and the jobs it is linked to by reruns.
function renderViewerLinks() {
  const j = view.job;
  if (!j) return;
  const open = (id) => el("button", { type: "button", class: "link", onclick: () => openJob(id) }, id);
  const parts = [el("span", {}, "Job ", el("code", {}, j.id))];
  if (page.fields()) parts.push(el("span", {}, `Parameters: ${summary(page.fields(), j.params)}`));
  if (j.rerun_of) parts.push(el("span", {}, "rerun of ", open(j.rerun_of)));
  const reruns = [...new Set([...page.rerunsOf(j.id), ...(view.reruns.get(j.id) || [])])];
  if (reruns.length) parts.push(el("span", {}, "rerun as ", ...reruns.flatMap((id, i) => (i ? [", ", open(id)] : [open(id)]))));
  $("viewer-links").replaceChildren(...parts);
}

/// Opens a linked job: its result if it has one, else its row.
async function openJob(id) {
  try {
    const j = await json(`/api/jobs/${id}`);
    if (j.state === "completed") openViewer(j);
    else { $("rerun-result").textContent = `${shortId(id)} is ${j.state}.`; page.showRow(id); }
  } catch (e) {
    alert(`Not found: ${e.message}`);
  }
}

function openRerun() {
  const form = $("rerun-form");
  if (!page.fields()) { $("rerun-result").textContent = "The parameters could not be loaded."; return; }
  if (!view.rerunForm) {
    view.rerunForm = paramForm(page.fields(), "rerun");
    view.rerunForm.onchange = () => {
      const n = Object.keys(view.rerunForm.changes()).length;
      $("rerun-changed").textContent = n ? `${n} changed` : "nothing changed yet";
    };
    $("rerun-fields").replaceChildren(view.rerunForm.element);
  }
  view.rerunForm.fill(view.job.params);
  $("rerun-priority").value = view.job.priority;
  $("rerun-result").textContent = "";
  form.hidden = false;
  $("rerun-open").setAttribute("aria-expanded", "true");
  reveal(form, "nearest");
}

async function submitRerun(e) {
  e.preventDefault();
  const job = view.job, params = view.rerunForm;
  const bad = params.invalid();
  if (bad) { bad.input.reportValidity(); return; }
  const body = { params: params.changes() };
  const priority = Number($("rerun-priority").value);
  if (priority !== job.priority) body.priority = priority;
  try {
    const r = await json(`/api/jobs/${job.id}/rerun`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const id = r.jobs[0].id;
    view.reruns.set(job.id, [...(view.reruns.get(job.id) || []), id]);
    $("rerun-form").hidden = true;
    $("rerun-open").setAttribute("aria-expanded", "false");
    $("rerun-result").textContent = `Queued as ${shortId(id)}.`;
    renderViewerLinks();
  } catch (err) {
    $("rerun-result").textContent = `Not done: ${err.message}`;
  }
}

function draw() {
  const c = $("canvas"), g = c.getContext("2d");
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.fillStyle = "#111"; g.fillRect(0, 0, c.width, c.height);
  if (!view.img) return;
  g.setTransform(view.scale, 0, 0, view.scale, view.x, view.y);
  g.drawImage(view.img, 0, 0);
  const f = view.factor, polys = editing() ? editedPolygons() : view.result.polygons;
  const path = (p) => { g.beginPath(); p.points.forEach((q, i) => (i ? g.lineTo(q.x * f, q.y * f) : g.moveTo(q.x * f, q.y * f))); g.closePath(); };
  if ($("show-mask").checked) {
    g.fillStyle = "rgba(47, 111, 222, 0.35)";
    for (const p of polys.filter((p) => p.type === "external")) { path(p); g.fill(); }
    g.globalCompositeOperation = "destination-out";
    for (const p of polys.filter((p) => p.type === "internal")) { path(p); g.fill(); }
    g.globalCompositeOperation = "source-over";
    g.drawImage(view.img, 0, 0);
    g.fillStyle = "rgba(47, 111, 222, 0.35)";
    for (const p of polys.filter((p) => p.type === "external")) { path(p); g.fill(); }
  }
  if ($("show-outlines").checked) {
    g.lineWidth = 2 / view.scale;
    let n = 0;
    for (const p of polys) {
      g.strokeStyle = p.type === "external" ? "#38d0ff" : "#ffab2e";
      path(p); g.stroke();
      if (p.type === "external") {
        n += 1;
        g.fillStyle = "#38d0ff"; g.font = `${14 / view.scale}px system-ui`;
        g.fillText(String(n), p.points[0].x * f + 4 / view.scale, p.points[0].y * f - 4 / view.scale);
      }
    }
  }
  drawEdit(g, f, view.scale);
}

function renderMetrics(result) {
  // Micrometres once the pixel size is known (`result.pixel_size` says from where), pixels else.
  const px = result.pixel_size;
  const um = px != null && result.metrics.every((m) => m.calibrated);
  const n = (v, d) => readable(v, d);
  const len = (m, p, c) => (um ? `${n(m.calibrated[c], 1)} µm` : `${n(m[p], 1)} px`);
  const head = ["#", um ? "Area (µm²)" : "Area (px²)", "Perimeter", "Circularity", "Solidity", "Feret max", "Feret min", "Eq. diameter"];
  if (um) head.push("Area (px²)");
  const rows = result.metrics.map((m, i) => {
    const cells = [i + 1, um ? n(m.calibrated.area_um2, 0) : n(m.area, 0), len(m, "perimeter", "perimeter_um"),
      m.circularity.toFixed(3), m.solidity.toFixed(3), len(m, "feret_max", "feret_max_um"),
      len(m, "feret_min", "feret_min_um"), len(m, "equivalent_diameter", "equivalent_diameter_um")];
    if (um) cells.push(n(m.area, 0));
    return el("tr", {}, ...cells.map((c) => el("td", {}, c)));
  });
  $("metrics-pixel").textContent = px
    ? `Pixel size ${readable(px.um, 4)} µm, ${SOURCES[px.source] || px.source}.`
    : "Pixel size unknown: metrics in pixels. Set it in the parameters or for the project.";
  $("metrics").replaceChildren(
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: String(head.length) }, "No objects found."))])),
  );
}

/// Where a pixel size came from, in words.
const SOURCES = {
  job: "given with the job", watch: "the watch folder's", project: "remembered for the project",
  imagej: "from the ImageJ TIFF", ome: "from the OME-TIFF", "tiff-resolution": "from the TIFF resolution", "png-phys": "from the PNG pHYs",
};

/// A number with grouped thousands and `d` decimals at most (2010.4 is "2,010").
const readable = (v, d) => v.toLocaleString("en-US", { maximumFractionDigits: d });

/// Downloads one of the job's files under the name the server gives it (the image's name).
async function download(suffix, fallback) {
  const resp = await api(suffix.startsWith("/") ? suffix : `/api/jobs/${view.job.id}/${suffix}`);
  const named = /filename="([^"]+)"/.exec(resp.headers.get("content-disposition") || "");
  const blob = await resp.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: named ? named[1] : fallback });
  document.body.append(a); a.click(); a.remove();
}

export function setupViewer(hooks) {
  page = hooks;
  const c = $("canvas");
  c.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = c.getBoundingClientRect();
    const mx = ((e.clientX - r.left) * c.width) / r.width, my = ((e.clientY - r.top) * c.height) / r.height;
    const k = e.deltaY < 0 ? 1.2 : 1 / 1.2;
    view.x = mx - (mx - view.x) * k; view.y = my - (my - view.y) * k; view.scale *= k;
    draw();
  }, { passive: false });
  let drag = null;
  c.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY }; });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const r = c.getBoundingClientRect(), k = c.width / r.width;
    view.x += (e.clientX - drag.x) * k; view.y += (e.clientY - drag.y) * k;
    drag = { x: e.clientX, y: e.clientY };
    draw();
  });
  $("show-outlines").onchange = draw;
  $("show-mask").onchange = draw;
  $("zoom-reset").onclick = () => { view.scale = 1; view.x = 0; view.y = 0; draw(); };
  $("close-viewer").onclick = () => { if (!editing() || stopEdit()) $("viewer").hidden = true; };
  setupEditor({
    result: () => view.result, job: () => view.job, redraw: draw,
    toImage: (e) => {
      const r = c.getBoundingClientRect();
      const x = ((e.clientX - r.left) * c.width) / r.width, y = ((e.clientY - r.top) * c.height) / r.height;
      return { x: (x - view.x) / view.scale / view.factor, y: (y - view.y) / view.scale / view.factor };
    },
    pixel: () => c.width / c.getBoundingClientRect().width / view.scale / view.factor,
    put: (path, body) => api(path, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }),
    saved: (result) => { view.versions = null; showResult(result); renderVersions(); },
  });
  const stem = () => view.job.image.name.replace(/\.[^.]+$/, "");
  $("dl-json").onclick = () => download("result", `${stem()}.json`);
  $("dl-csv").onclick = () => download("result.csv", `${stem()}.csv`);
  $("dl-xlsx").onclick = () => download(`/api/export?format=xlsx&state=completed&ids=${view.job.id}`, `${stem()}.xlsx`);
  $("dl-rois").onclick = () => download("rois.zip", `${stem()}_rois.zip`);
  $("dl-mask").onclick = () => download("mask.png", `${stem()}_mask.png`);
  $("dl-labels").onclick = () => download("labels.png", `${stem()}_labels.png`);
  $("dl-overlay").onclick = () => download("overlay.png", `${stem()}_overlay.png`);
  $("rerun-open").onclick = () => ($("rerun-form").hidden ? openRerun() : ($("rerun-form").hidden = true));
  $("rerun-form").addEventListener("submit", submitRerun);
  $("rerun-cancel").onclick = () => { $("rerun-form").hidden = true; $("rerun-open").setAttribute("aria-expanded", "false"); };
}

/// A job changed: the links redrawn if it is linked to the open one.
export function jobChanged(j) {
  if (view.job && (j.id === view.job.rerun_of || j.rerun_of === view.job.id)) renderViewerLinks();
}

/// The parameters' description arrived: the open job's parameters can be shown.
export const paramsLoaded = () => renderViewerLinks();

/// The id of the job the viewer shows, if it is open.
export const openedJob = () => ($("viewer").hidden ? null : view.job?.id);
