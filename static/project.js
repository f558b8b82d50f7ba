// The project view: a project's remembered pixel size (GET/PUT /api/projects/{name}), its
// objects' distributions drawn from the objects table (in µm² once every object is calibrated),
// its downloads, and the hint in the upload form saying which pixel size new images will get.

import { el, plural } from "./dom.js";
import { api, json } from "./api.js";

const $ = (id) => document.getElementById(id);
const projects = new Map();

/// A number as a person reads it on an axis: three significant digits, grouped thousands, no
/// exponent (2010 is "2,010", 0.000123 is "0.000123").
export function readable(v) {
  if (!Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", { maximumSignificantDigits: 3 });
}

export function histogram(canvas, values, bins = 20, empty = "No completed jobs.") {
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!values.length) {
    g.fillStyle = "#667085"; g.font = "12px system-ui"; g.fillText(empty, 10, 20);
    return;
  }
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(((v - lo) / span) * bins))] += 1;
  const max = Math.max(...counts), w = canvas.width / bins, top = 16, bottom = 18;
  g.fillStyle = "#2f6fde";
  counts.forEach((n, i) => {
    const h = ((canvas.height - top - bottom) * n) / max;
    g.fillRect(i * w + 1, canvas.height - bottom - h, w - 2, h);
  });
  g.fillStyle = "#667085"; g.font = "11px system-ui";
  g.fillText(readable(lo), 2, canvas.height - 4);
  const right = readable(hi);
  g.fillText(right, canvas.width - g.measureText(right).width - 2, canvas.height - 4);
  if (hi > lo) {
    const mid = readable((lo + hi) / 2);
    g.fillText(mid, (canvas.width - g.measureText(mid).width) / 2, canvas.height - 4);
  }
  g.fillText(`max ${max} per bin`, 2, 12);
}

/// RFC 4180 lines to fields (quotes, doubled quotes, commas inside quotes).
function csvRows(text) {
  const rows = []; let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(field); field = ""; }
    else if (ch === "\n") { row.push(field); rows.push(row); row = []; field = ""; }
    else if (ch !== "\r") field += ch;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

/// A download of `path` under the server's file name (fetched, so a token goes with it).
async function save(path, fallback) {
  const resp = await api(path);
  if (!resp.ok) throw new Error(`${resp.status}`);
  const named = /filename="([^"]+)"/.exec(resp.headers.get("content-disposition") || "");
  const a = el("a", { href: URL.createObjectURL(await resp.blob()), download: named ? named[1] : fallback });
  document.body.append(a); a.click(); a.remove();
}

/// What a project's pixel size reads as: "0.65 µm/px (10× objective)".
const pixelText = (p) => `${p.pixel_size_um} µm/px${p.objective ? ` (${p.objective})` : ""}`;

async function loadProjects() {
  try {
    const list = await json("/api/projects");
    projects.clear();
    for (const p of list.projects) projects.set(p.name, p);
    $("project-names").replaceChildren(...list.projects.map((p) => el("option", { value: p.name })));
  } catch { /* the names are a convenience; typing one still works */ }
  uploadHint();
}

/// The upload form's line saying which pixel size the next images get.
export function uploadHint(given) {
  const hint = $("upload-pixel");
  if (given !== undefined) hint.dataset.given = given ?? "";
  const own = hint.dataset.given;
  const name = $("project").value.trim();
  const p = projects.get(name);
  if (own) hint.textContent = `Pixel size: ${own} µm/px, given in the parameters.`;
  else if (p && p.pixel_size_um != null) hint.textContent = `Pixel size: ${pixelText(p)}, remembered for project ${name}.`;
  else hint.textContent = "Pixel size: read from each file when it states one (ImageJ, OME-TIFF, TIFF resolution, PNG pHYs); set it in the parameters or for the project.";
}

export async function showProject(name) {
  if (!name) return;
  const p = await json(`/api/projects/${encodeURIComponent(name)}`).catch(() => ({ pixel_size_um: null, objective: null }));
  projects.set(name, { name, ...p });
  $("project-settings").hidden = false;
  $("project-px").value = p.pixel_size_um ?? "";
  $("project-objective").value = p.objective ?? "";
  $("project-saved").textContent = p.pixel_size_um != null ? `Remembered: ${pixelText(p)}.` : "No pixel size remembered: each file's own is used.";
  const q = `project=${encodeURIComponent(name)}&state=completed`;
  const text = await api(`/api/export?${q}&format=csv&table=objects`).then((r) => r.text());
  const [head, ...rows] = csvRows(text);
  const col = (n) => head.indexOf(n);
  const column = (n) => rows.map((r) => r[col(n)]).filter((v) => v !== "" && v !== undefined).map(Number).filter(Number.isFinite);
  const um = column("Area (µm²)"), px = column("Area (px²)");
  const calibrated = rows.length > 0 && um.length === rows.length;
  const images = new Set(rows.map((r) => r[col("Job ID")])).size;
  const some = um.length && !calibrated ? `; ${um.length} calibrated, so the areas are shown in px²` : "";
  const fixed = new Set(rows.filter((r) => r[col("Corrected")] === "TRUE").map((r) => r[col("Job ID")])).size;
  const byHand = fixed ? `; ${plural(fixed, "image")} corrected by hand` : "";
  $("project-summary").textContent = `${plural(rows.length, "object")} in ${plural(images, "image")}${some}${byHand}`;
  $("hist-area-caption").textContent = calibrated ? "Area (µm²)" : "Area (px²)";
  histogram($("hist-area"), calibrated ? um : px);
  histogram($("hist-circ"), column("Circularity"));
  for (const [id, format, ext] of [["project-csv", "csv", "csv"], ["project-xlsx", "xlsx", "xlsx"], ["project-zip", "zip", "zip"]]) {
    const b = $(id);
    b.disabled = !rows.length;
    b.onclick = () => save(`/api/export?${q}&format=${format}`, `${name}.${ext}`).catch((e) => { $("project-saved").textContent = `Download failed: ${e.message}`; });
  }
}

async function remember(e) {
  e.preventDefault();
  const name = $("project-name").value.trim();
  const raw = $("project-px").value.trim();
  const body = { pixel_size_um: raw === "" ? null : Number(raw), objective: $("project-objective").value.trim() || null };
  try {
    const p = await json(`/api/projects/${encodeURIComponent(name)}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    projects.set(name, p);
    $("project-saved").textContent = p.pixel_size_um != null
      ? `Remembered: ${pixelText(p)}. New images of ${name} are measured with it; finished ones keep theirs (run them again to change).`
      : "Forgotten: each file's own pixel size is used.";
    loadProjects();
  } catch (err) {
    $("project-saved").textContent = `Not saved: ${err.message}`;
  }
}

export function setupProject() {
  $("project-form").addEventListener("submit", (e) => { e.preventDefault(); showProject($("project-name").value.trim()); });
  $("project-settings").addEventListener("submit", remember);
  $("project").addEventListener("input", () => uploadHint());
  for (const id of ["hist-area", "hist-circ"]) histogram($(id), [], 20, "Enter a project name to see its distribution.");
  loadProjects();
}
