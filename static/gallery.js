// The gallery: a thumbnail per completed job with its outlines (GET /api/jobs/{id}/thumbnail,
// fetched as it scrolls into view), grouped by project and by plate (from the job's metadata, or
// from a file name such as `P1_B03.tif`), ordered by well, with the object count and a flag on
// what is worth a look. Clicking a tile opens the viewer; the arrow keys move between tiles, and
// in the viewer (or its Previous and Next buttons) step to the neighbouring image.

import { el, plural } from "./dom.js";
import { api, json } from "./api.js";
import { openedJob } from "./viewer.js";

const $ = (id) => document.getElementById(id);
let open = () => {};
/// `items` as the server gave them, `order` the jobs as the tiles show them, `urls` the fetched
/// thumbnails by job id and version.
const g = { items: [], next: null, order: [], urls: new Map(), observer: null, timer: null };

/// What each flag says, in words (never a colour alone).
const FLAGS = {
  "no-objects": "no object", "several-objects": "several objects", "touches-border": "touches the border",
  "low-contrast": "low contrast", corrected: "corrected by hand", unreadable: "result unreadable",
};

/// The plate and well of a job: its metadata, else the last well-like part of its file name
/// (`B03`, `h12`) and what comes before it as the plate.
export function place(job) {
  const md = Object.fromEntries((job.metadata || []).map(([k, v]) => [k.toLowerCase(), v]));
  let plate = md.plate || null;
  let well = md.well || null;
  const col = md.column ?? md.col;
  if (!well && md.row && col) well = `${md.row.toUpperCase()}${String(col).padStart(2, "0")}`;
  if (!well) {
    const stem = job.image.name.replace(/\.[^.]+$/, "");
    const all = [...stem.matchAll(/(?:^|[^A-Za-z0-9])([A-Pa-p])(\d{1,2})(?=[^A-Za-z0-9]|$)/g)];
    const m = all[all.length - 1];
    if (m) {
      well = `${m[1].toUpperCase()}${m[2].padStart(2, "0")}`;
      plate ??= stem.slice(0, m.index).replace(/[^A-Za-z0-9]+$/, "") || null;
    }
  }
  return { plate, well };
}

/// Groups of items: by project, then plate; each ordered by well, then name.
function groups(items) {
  const out = new Map();
  for (const it of items) {
    const p = place(it.job);
    const key = `${it.job.project || ""}\u0000${p.plate || ""}`;
    if (!out.has(key)) out.set(key, { project: it.job.project, plate: p.plate, items: [] });
    out.get(key).items.push({ ...it, ...p });
  }
  const well = (w) => (w ? `${w[0]}${w.slice(1).padStart(3, "0")}` : "\uffff");
  for (const grp of out.values()) {
    grp.items.sort((a, b) => well(a.well).localeCompare(well(b.well)) || a.job.image.name.localeCompare(b.job.image.name));
    // Several objects are worth a look where one is usual: what most of the group has, or one
    // spheroid per image in a group too small to tell.
    const counts = grp.items.map((i) => i.review.objects);
    const usual = counts.length >= 3 ? mode(counts) : 1;
    for (const i of grp.items) {
      i.flags = [...i.review.flags];
      if (usual === 1 && i.review.objects > 1) i.flags.push("several-objects");
      if (i.job.corrected === true) i.flags.push("corrected");
    }
  }
  return [...out.values()].sort((a, b) => (a.project || "\uffff").localeCompare(b.project || "\uffff")
    || (a.plate || "\uffff").localeCompare(b.plate || "\uffff"));
}

function mode(xs) {
  const n = new Map();
  for (const x of xs) n.set(x, (n.get(x) || 0) + 1);
  return [...n.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
}

/// The cache key of a job's thumbnail: a corrected result is another picture.
const version = (job) => `${job.id}:${job.version ?? ""}:${job.updated_at}`;

function tile(it, index) {
  const { job } = it;
  const flagged = it.flags.length > 0;
  const words = it.flags.map((f) => FLAGS[f] || f);
  const img = el("img", { alt: "", width: "256", height: "256", "data-key": version(job), "data-id": job.id });
  const scale = 256 / Math.max(job.image.width, job.image.height, 1);
  img.width = Math.max(1, Math.round(job.image.width * Math.min(1, scale)));
  img.height = Math.max(1, Math.round(job.image.height * Math.min(1, scale)));
  const cached = g.urls.get(version(job));
  if (cached) img.src = cached; else g.observer?.observe(img);
  const count = plural(job.objects ?? it.review.objects, "object");
  const label = `${job.image.name}${it.well ? `, well ${it.well}` : ""}: ${count}${flagged ? `; worth a look: ${words.join(", ")}` : ""}`;
  return el("li", { class: `tile${flagged ? " flagged" : ""}`, "data-id": job.id },
    el("button", { type: "button", class: "thumb", "aria-label": `Open ${label}`, title: label, "data-index": String(index),
      onclick: () => openAt(index) }, img),
    el("div", { class: "caption" },
      el("span", { class: "name" }, it.well ? `${it.well} · ${job.image.name}` : job.image.name),
      el("span", { class: "count" }, count),
      flagged ? el("span", { class: "flags" }, `⚑ ${words.join(", ")}`) : ""));
}

function render() {
  const onlyFlagged = $("gallery-flagged").checked;
  const grouped = groups(g.items)
    .map((grp) => ({ ...grp, items: onlyFlagged ? grp.items.filter((i) => i.flags.length) : grp.items }))
    .filter((grp) => grp.items.length);
  g.order = grouped.flatMap((grp) => grp.items.map((i) => i.job));
  let index = 0;
  const sections = grouped.map((grp) => {
    const title = [grp.project ? `Project ${grp.project}` : "No project", grp.plate ? `plate ${grp.plate}` : ""].filter(Boolean).join(", ");
    const flagged = grp.items.filter((i) => i.flags.length).length;
    return el("section", { class: "gallery-group", "aria-label": title },
      el("h3", {}, title, el("span", { class: "muted" }, ` ${plural(grp.items.length, "image")}${flagged ? `, ${flagged} worth a look` : ""}`)),
      el("ul", { class: "tiles" }, ...grp.items.map((i) => tile(i, index++))));
  });
  const total = g.items.length;
  // A person moving through the tiles keeps their place while the gallery updates.
  const focused = document.activeElement?.closest?.("#gallery-grid li.tile")?.dataset.id;
  $("gallery-grid").replaceChildren(...sections);
  if (focused) document.querySelector(`#gallery-grid li.tile[data-id="${focused}"] button.thumb`)?.focus({ preventScroll: true });
  $("gallery-empty").hidden = g.order.length > 0;
  $("gallery-empty").textContent = total ? "No image matches these filters." : "No completed jobs yet: their thumbnails appear here.";
  $("gallery-summary").textContent = total ? `${plural(total, "image")}${g.next ? " (the newest; more below)" : ""}` : "";
  $("gallery-more").hidden = !g.next;
  // Thumbnails of jobs no longer shown are let go.
  const keep = new Set(g.items.map((i) => version(i.job)));
  for (const [k, url] of g.urls) if (!keep.has(k)) { URL.revokeObjectURL(url); g.urls.delete(k); }
  stepper();
}

async function fetchThumbnail(img) {
  const key = img.dataset.key;
  try {
    const resp = await api(`/api/jobs/${img.dataset.id}/thumbnail`);
    if (!resp.ok) { img.alt = `no thumbnail (${resp.status})`; return; }
    const url = URL.createObjectURL(await resp.blob());
    g.urls.set(key, url);
    img.src = url;
  } catch {
    img.alt = "no thumbnail";
  }
}

export async function loadGallery(append = false) {
  // A reload keeps as many as were shown (the pages "More images" added too).
  const p = new URLSearchParams({ limit: String(append ? 100 : Math.min(500, Math.max(100, g.items.length))) });
  const project = $("gallery-project").value.trim();
  if (project) p.set("project", project);
  if (append && g.next) p.set("cursor", g.next);
  try {
    const page = await json(`/api/gallery?${p}`);
    g.items = append ? [...g.items, ...page.items] : page.items;
    g.next = page.next;
    render();
  } catch (e) {
    $("gallery-summary").textContent = `The gallery could not be loaded: ${e.message}`;
  }
}

/// Opens the viewer on the `i`th tile's job.
function openAt(i) {
  const job = g.order[i];
  if (!job) return;
  open(job);
  // The keys now step through the viewer, not the tiles.
  const title = $("viewer-title");
  title.tabIndex = -1;
  title.focus({ preventScroll: true });
}

/// The viewer's Previous and Next, shown while it shows a job of the gallery.
function stepper() {
  const id = openedJob();
  const i = g.order.findIndex((j) => j.id === id);
  const bar = $("gallery-step");
  bar.hidden = i < 0 || $("viewer").hidden;
  if (i < 0) return;
  $("gallery-prev").disabled = i === 0;
  $("gallery-next").disabled = i === g.order.length - 1;
  $("gallery-position").textContent = `Image ${i + 1} of ${g.order.length} in the gallery (← →)`;
}

function step(by) {
  const i = g.order.findIndex((j) => j.id === openedJob());
  if (i >= 0 && g.order[i + by]) openAt(i + by);
}

/// Moves the focus between tiles: left and right by one, up and down by a row.
function moveFocus(e) {
  const b = e.target.closest("button.thumb");
  if (!b || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
  const all = [...document.querySelectorAll("#gallery-grid button.thumb")];
  const i = all.indexOf(b);
  const row = all.filter((x) => x.closest("ul") === b.closest("ul") && x.offsetTop === b.offsetTop).length || 1;
  const by = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -row, ArrowDown: row }[e.key];
  const next = all[Math.min(all.length - 1, Math.max(0, i + by))];
  e.preventDefault();
  next.focus();
}

/// A page event: a completed or deleted job changes the gallery soon after.
export function galleryEvent(e) {
  if (!["job_completed", "jobs_deleted", "resync"].includes(e.type) && !(e.job && g.items.some((i) => i.job.id === e.job.id))) return;
  // At most one reload a second, however fast a batch completes.
  if (g.timer) return;
  g.timer = setTimeout(() => { g.timer = null; loadGallery(); }, 1000);
}

export function setupGallery(hooks) {
  open = hooks.open;
  g.observer = new IntersectionObserver((entries) => {
    for (const en of entries) {
      if (!en.isIntersecting) continue;
      g.observer.unobserve(en.target);
      fetchThumbnail(en.target);
    }
  }, { rootMargin: "200px" });
  $("gallery-project").addEventListener("change", () => loadGallery());
  $("gallery-flagged").addEventListener("change", render);
  $("gallery-more").onclick = () => loadGallery(true);
  $("gallery-grid").addEventListener("keydown", moveFocus);
  $("gallery-prev").onclick = () => step(-1);
  $("gallery-next").onclick = () => step(1);
  // The viewer opened, stepped or closed (from here or from the jobs table): Previous and Next follow.
  const follow = new MutationObserver(() => stepper());
  follow.observe($("viewer-title"), { childList: true, characterData: true, subtree: true });
  follow.observe($("viewer"), { attributes: true, attributeFilter: ["hidden"] });
  document.addEventListener("keydown", (e) => {
    if ($("viewer").hidden || e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest("input, select, textarea, [contenteditable], #gallery-grid")) return;
    if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
    if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
  });
  loadGallery();
}
