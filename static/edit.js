// Correcting outlines by hand in the viewer: select and delete objects, draw a missing outline,
// split an object along a drawn line, merge two touching objects, undo and redo, and save, which
// sends every polygon to PUT /api/jobs/{id}/result. The server checks them, measures them again
// and stores a new version; the automatic one is kept. Works with a mouse, touch (pointer events)
// and the keys listed in the help popover. Coordinates here are original-image pixels.

const $ = (id) => document.getElementById(id);

/// What the editor asks of the viewer (`setupEditor`): `result()` (the result shown), `job()`,
/// `toImage(event)` (a pointer's position in image pixels), `pixel()` (one screen pixel in image
/// pixels), `redraw()`, `saved(result)` (the new latest version, to show).
let host = null;

const ed = {
  on: false, mode: "select", objects: [], selected: new Set(), draft: [],
  undo: [], redo: [], base: 1, dirty: false, press: null,
};

/// Whether the viewer is in edit mode.
export const editing = () => ed.on;

/// The objects being edited as the polygon list the server takes (and the viewer draws).
export function editedPolygons() {
  const out = [];
  ed.objects.forEach((o, i) => {
    const id = `polygon-${i + 1}`;
    out.push({ id, type: "external", class: "spheroid", points: o.outer });
    o.holes.forEach((h, j) => out.push({ id: `hole-${i + 1}-${j + 1}`, type: "internal", class: "hole", parentId: id, points: h }));
  });
  return out;
}

/// Objects (outer ring and holes) from a result's flat polygon list.
function objectsOf(polygons) {
  const byId = new Map(), out = [];
  for (const p of polygons.filter((p) => p.type === "external")) {
    const o = { outer: p.points.map(pt), holes: [] };
    byId.set(p.id, o); out.push(o);
  }
  for (const p of polygons.filter((p) => p.type === "internal")) byId.get(p.parentId)?.holes.push(p.points.map(pt));
  return out;
}
const pt = (p) => (Array.isArray(p) ? { x: p[0], y: p[1] } : { x: p.x, y: p.y });

// ---- geometry ----

function area(ring) {
  let s = 0;
  for (let i = 0; i < ring.length; i++) { const a = ring[i], b = ring[(i + 1) % ring.length]; s += a.x * b.y - b.x * a.y; }
  return Math.abs(s) / 2;
}

function inside(p, ring) {
  let hit = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const a = ring[i], b = ring[j];
    if ((a.y > p.y) !== (b.y > p.y) && p.x < ((b.x - a.x) * (p.y - a.y)) / (b.y - a.y) + a.x) hit = !hit;
  }
  return hit;
}

/// Where segments p→q and r→s cross: the fractions along each, or null.
function cross(p, q, r, s) {
  const d = (q.x - p.x) * (s.y - r.y) - (q.y - p.y) * (s.x - r.x);
  if (d === 0) return null;
  const t = ((r.x - p.x) * (s.y - r.y) - (r.y - p.y) * (s.x - r.x)) / d;
  const u = ((r.x - p.x) * (q.y - p.y) - (r.y - p.y) * (q.x - p.x)) / d;
  return t >= 0 && t <= 1 && u >= 0 && u <= 1 ? { t, u } : null;
}

/// The object under image point `p`: the smallest whose outline holds it outside its holes.
function objectAt(p) {
  let best = -1, bestArea = Infinity;
  ed.objects.forEach((o, i) => {
    if (!inside(p, o.outer) || o.holes.some((h) => inside(p, h))) return;
    const a = area(o.outer);
    if (a < bestArea) { best = i; bestArea = a; }
  });
  return best;
}

/// `o` cut in two along `line` (its first two crossings of the outline); null when the line does
/// not cross it twice, "hole" when the cut goes through one of its holes.
function splitObject(o, line) {
  const ring = o.outer, n = ring.length, hits = [];
  for (let s = 0; s + 1 < line.length && hits.length < 2; s++) {
    const found = [];
    for (let e = 0; e < n; e++) {
      const c = cross(line[s], line[s + 1], ring[e], ring[(e + 1) % n]);
      if (c) found.push({ s, e, t: c.t, u: c.u, p: { x: line[s].x + c.t * (line[s + 1].x - line[s].x), y: line[s].y + c.t * (line[s + 1].y - line[s].y) } });
    }
    found.sort((a, b) => a.t - b.t);
    hits.push(...found.slice(0, 2 - hits.length));
  }
  if (hits.length < 2) return null;
  const [a, b] = hits;
  const cut = line.slice(a.s + 1, b.s + 1);
  const path = [a.p, ...cut, b.p];
  const crossesHole = o.holes.some((h) => path.some((p, i) => i > 0 && h.some((q, j) => cross(path[i - 1], p, q, h[(j + 1) % h.length]))));
  if (crossesHole) return "hole";
  const walk = (from, to) => {
    let k = (to.e - from.e + n) % n;
    if (k === 0 && from.u > to.u) k = n;
    const pts = [from.p];
    for (let i = 1; i <= k; i++) pts.push(ring[(from.e + i) % n]);
    pts.push(to.p);
    return pts;
  };
  const one = [...walk(a, b), ...cut.slice().reverse()], two = [...walk(b, a), ...cut];
  if (area(one) < 1 || area(two) < 1) return null;
  const holes = (r) => o.holes.filter((h) => inside(h[0], r));
  return [{ outer: one, holes: holes(one) }, { outer: two, holes: holes(two) }];
}

/// `a` and `b` as one object: both drawn into a mask, gaps of up to two pixels closed, and the
/// outline traced along pixel edges and simplified; null when they do not touch.
function mergeObjects(a, b) {
  const all = [...a.outer, ...b.outer];
  const x0 = Math.floor(Math.min(...all.map((p) => p.x))) - 4, y0 = Math.floor(Math.min(...all.map((p) => p.y))) - 4;
  const w = Math.ceil(Math.max(...all.map((p) => p.x))) + 4 - x0, h = Math.ceil(Math.max(...all.map((p) => p.y))) + 4 - y0;
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const g = c.getContext("2d");
  const ring = (r) => r.forEach((q, i) => (i ? g.lineTo(q.x - x0, q.y - y0) : g.moveTo(q.x - x0, q.y - y0)));
  for (const o of [a, b]) { g.beginPath(); ring(o.outer); g.closePath(); g.fill(); }
  const px = g.getImageData(0, 0, w, h).data;
  let m = new Uint8Array(w * h);
  for (let i = 0; i < m.length; i++) m[i] = px[i * 4 + 3] > 127 ? 1 : 0;
  m = morph(morph(m, w, h, 2, 1), w, h, 2, 0);
  const start = m.indexOf(1);
  if (start < 0 || components(m, w, h, start) !== m.reduce((s, v) => s + v, 0)) return null;
  const outer = simplify(trace(m, w, h, start), 0.75).map((p) => ({ x: p.x + x0, y: p.y + y0 }));
  return { outer, holes: [...a.holes, ...b.holes].filter((hole) => inside(hole[0], outer)) };
}

/// A square dilation (`grow`) or erosion of mask `m` by `r` pixels.
function morph(m, w, h, r, grow) {
  const pass = (src, dx, dy) => {
    const out = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      let v = grow ? 0 : 1;
      for (let k = -r; k <= r; k++) {
        const xx = x + k * dx, yy = y + k * dy;
        const s = xx >= 0 && yy >= 0 && xx < w && yy < h ? src[yy * w + xx] : 0;
        v = grow ? v | s : v & s;
      }
      out[y * w + x] = v;
    }
    return out;
  };
  return pass(pass(m, 1, 0), 0, 1);
}

/// The size of the 4-connected component of `m` holding pixel `start`.
function components(m, w, h, start) {
  const seen = new Uint8Array(w * h), stack = [start];
  let n = 0;
  seen[start] = 1;
  while (stack.length) {
    const i = stack.pop(), x = i % w;
    n += 1;
    for (const j of [x > 0 ? i - 1 : -1, x + 1 < w ? i + 1 : -1, i - w, i + w]) {
      if (j >= 0 && j < w * h && m[j] && !seen[j]) { seen[j] = 1; stack.push(j); }
    }
  }
  return n;
}

/// The outer boundary of the component at `start` (its first pixel in reading order), along pixel
/// edges, with the component on the right: the corners where it turns.
function trace(m, w, h, start) {
  const at = (x, y) => x >= 0 && y >= 0 && x < w && y < h && m[y * w + x] === 1;
  const sx = start % w, sy = Math.floor(start / w);
  // The start pixel's top-left corner is a corner of the outline that it passes once: the pixels
  // above and to the left of the start are background.
  const out = [{ x: sx, y: sy }];
  let x = sx + 1, y = sy, dx = 1, dy = 0;
  while (!(x === sx && y === sy) && out.length < 4 * w * h) {
    // The pixels ahead of corner (x, y), to the right and to the left of the direction.
    const rx = -dy, ry = dx;
    const pix = (ox, oy) => at(Math.floor(x + 0.5 * dx + 0.5 * ox), Math.floor(y + 0.5 * dy + 0.5 * oy));
    let nx = dx, ny = dy;
    if (!pix(rx, ry)) { nx = rx; ny = ry; } else if (pix(-rx, -ry)) { nx = -rx; ny = -ry; }
    if (nx !== dx || ny !== dy) out.push({ x, y });
    dx = nx; dy = ny;
    x += dx; y += dy;
  }
  return out;
}

/// Douglas-Peucker on a closed ring.
function simplify(ring, eps) {
  if (ring.length < 4) return ring;
  const keep = new Uint8Array(ring.length);
  const far = (i, j) => {
    const a = ring[i], b = ring[j], L = Math.hypot(b.x - a.x, b.y - a.y) || 1;
    let best = -1, d = 0;
    for (let k = i + 1; k < j; k++) {
      const e = Math.abs((b.x - a.x) * (a.y - ring[k].y) - (a.x - ring[k].x) * (b.y - a.y)) / L;
      if (e > d) { d = e; best = k; }
    }
    if (d > eps) { keep[best] = 1; far(i, best); far(best, j); }
  };
  const mid = Math.floor(ring.length / 2);
  keep[0] = keep[mid] = 1;
  far(0, mid);
  far(mid, ring.length - 1);
  keep[ring.length - 1] = 1;
  return ring.filter((_, i) => keep[i]);
}

// ---- editing ----

function remember() {
  ed.undo.push(JSON.stringify(ed.objects));
  if (ed.undo.length > 200) ed.undo.shift();
  ed.redo = [];
  ed.dirty = true;
}

function step(from, to) {
  if (!from.length) return;
  to.push(JSON.stringify(ed.objects));
  ed.objects = JSON.parse(from.pop());
  ed.selected.clear(); ed.draft = []; ed.dirty = true;
  changed("");
}

function setMode(mode) {
  ed.mode = mode; ed.draft = [];
  for (const m of ["select", "draw", "split"]) $(`edit-${m}`).setAttribute("aria-pressed", String(m === mode));
  const hint = { select: "Click an object to select it; Shift-click adds a second (for merging). The metrics are measured again when you save.",
    draw: "Click the points of the outline; click the first point, double-click or press Enter to close it.",
    split: "Draw a line across the selected object (click points); double-click or press Enter to cut." };
  changed(hint[mode]);
}

function changed(message) {
  const n = ed.selected.size;
  $("edit-delete").disabled = n === 0;
  $("edit-merge").disabled = n !== 2;
  $("edit-undo").disabled = !ed.undo.length;
  $("edit-redo").disabled = !ed.redo.length;
  $("edit-save").disabled = !ed.dirty;
  const count = `${ed.objects.length} object${ed.objects.length === 1 ? "" : "s"}${n ? `, ${n} selected` : ""}`;
  $("edit-status").textContent = message ? `${count}. ${message}` : `${count}.`;
  host.redraw();
}

function deleteSelected() {
  if (!ed.selected.size) return;
  remember();
  ed.objects = ed.objects.filter((_, i) => !ed.selected.has(i));
  const n = ed.selected.size;
  ed.selected.clear();
  changed(`Deleted ${n}.`);
}

function mergeSelected() {
  if (ed.selected.size !== 2) { changed("Select two objects to merge (Shift-click the second)."); return; }
  const [i, j] = [...ed.selected];
  const merged = mergeObjects(ed.objects[i], ed.objects[j]);
  if (!merged) { changed("These two do not touch: only touching objects can be merged."); return; }
  remember();
  ed.objects = ed.objects.filter((_, k) => k !== i && k !== j);
  ed.objects.push(merged);
  ed.selected = new Set([ed.objects.length - 1]);
  changed("Merged.");
}

function finishDraft() {
  const d = ed.draft;
  if (ed.mode === "draw") {
    if (d.length < 3 || area(d) < 1) { changed("An outline needs at least three points around some area."); return; }
    remember();
    ed.objects.push({ outer: d, holes: [] });
    ed.draft = [];
    ed.selected = new Set([ed.objects.length - 1]);
    changed("Outline added.");
  } else if (ed.mode === "split") {
    if (d.length < 2) { changed("Draw a line of at least two points across an object."); return; }
    const order = ed.selected.size === 1 ? [...ed.selected] : ed.objects.map((_, i) => i);
    for (const i of order) {
      const parts = splitObject(ed.objects[i], d);
      if (parts === "hole") { changed("The cut goes through a hole: draw it beside the hole."); return; }
      if (!parts) continue;
      remember();
      ed.objects.splice(i, 1, ...parts);
      ed.draft = [];
      ed.selected = new Set([i, i + 1]);
      changed("Split in two.");
      return;
    }
    changed("The line must cross the object's outline twice.");
  }
}

function tap(p, add) {
  if (ed.mode === "select") {
    const i = objectAt(p);
    if (!add) ed.selected.clear();
    if (i >= 0) { if (ed.selected.has(i)) ed.selected.delete(i); else ed.selected.add(i); }
    changed("");
    return;
  }
  const close = 10 * host.pixel();
  const first = ed.draft[0];
  if (ed.mode === "draw" && ed.draft.length >= 3 && Math.hypot(p.x - first.x, p.y - first.y) <= close) { finishDraft(); return; }
  ed.draft.push(p);
  changed(`${ed.draft.length} point${ed.draft.length === 1 ? "" : "s"}.`);
}

/// Selects the next (`+1`) or previous object, for keyboards.
function cycle(k) {
  const n = ed.objects.length;
  if (!n) return;
  const cur = ed.selected.size ? Math.max(...ed.selected) : -1;
  ed.selected = new Set([(cur + k + n) % n]);
  changed("");
}

async function save() {
  const job = host.job();
  $("edit-save").disabled = true;
  $("edit-status").textContent = "Saving…";
  try {
    const resp = await host.put(`/api/jobs/${job.id}/result`, { base_version: ed.base, polygons: editedPolygons() });
    const body = await resp.json().catch(() => ({}));
    if (resp.status === 409) throw new Error(`${body.message || "a newer version exists"}. Close the editor to load it.`);
    if (!resp.ok) throw new Error(body.message || `${resp.status}`);
    ed.dirty = false;
    stopEdit();
    host.saved(body);
  } catch (e) {
    $("edit-save").disabled = false;
    const m = /polygon-(\d+)/.exec(e.message);
    if (m) ed.selected = new Set([Number(m[1]) - 1]);
    changed(`Not saved: ${e.message}`);
  }
}

export function startEdit() {
  const r = host.result();
  ed.on = true; ed.objects = objectsOf(r.polygons); ed.base = r.version ?? 1;
  ed.selected.clear(); ed.undo = []; ed.redo = []; ed.dirty = false;
  $("edit-tools").hidden = false;
  $("edit-open").setAttribute("aria-expanded", "true");
  $("canvas").classList.add("editing");
  setMode("select");
  $("canvas").focus();
}

export function stopEdit() {
  if (ed.dirty && !confirm("Discard the changes to the outlines?")) return false;
  ed.on = false; ed.draft = []; ed.dirty = false;
  $("edit-tools").hidden = true;
  $("edit-open").setAttribute("aria-expanded", "false");
  $("canvas").classList.remove("editing");
  host.redraw();
  return true;
}

/// Draws the selection and the line being drawn over the outlines (image pixels times `f`).
export function drawEdit(g, f, scale) {
  if (!ed.on) return;
  const path = (r, closed) => { g.beginPath(); r.forEach((q, i) => (i ? g.lineTo(q.x * f, q.y * f) : g.moveTo(q.x * f, q.y * f))); if (closed) g.closePath(); };
  g.lineWidth = 4 / scale;
  for (const i of ed.selected) {
    const o = ed.objects[i];
    if (!o) continue;
    g.fillStyle = "rgba(255, 214, 10, 0.25)"; g.strokeStyle = "#ffd60a";
    path(o.outer, true); g.fill(); g.stroke();
  }
  if (ed.draft.length) {
    g.strokeStyle = ed.mode === "split" ? "#ff4d6d" : "#7CFC00"; g.lineWidth = 2 / scale;
    path(ed.draft, false); g.stroke();
    g.fillStyle = g.strokeStyle;
    for (const q of ed.draft) { g.beginPath(); g.arc(q.x * f, q.y * f, 4 / scale, 0, 2 * Math.PI); g.fill(); }
  }
}

export function setupEditor(hooks) {
  host = hooks;
  const c = $("canvas");
  $("edit-open").onclick = () => (ed.on ? stopEdit() : startEdit());
  $("edit-select").onclick = () => setMode("select");
  $("edit-draw").onclick = () => setMode("draw");
  $("edit-split").onclick = () => setMode("split");
  $("edit-delete").onclick = deleteSelected;
  $("edit-merge").onclick = mergeSelected;
  $("edit-undo").onclick = () => step(ed.undo, ed.redo);
  $("edit-redo").onclick = () => step(ed.redo, ed.undo);
  $("edit-save").onclick = save;
  $("edit-cancel").onclick = stopEdit;
  // A press that does not move is a tap (mouse, pen or finger); one that moves pans the view.
  c.addEventListener("pointerdown", (e) => { if (ed.on) ed.press = { x: e.clientX, y: e.clientY }; });
  c.addEventListener("pointerup", (e) => {
    const p = ed.press;
    ed.press = null;
    if (!ed.on || !p || Math.hypot(e.clientX - p.x, e.clientY - p.y) > 6) return;
    tap(host.toImage(e), e.shiftKey || e.ctrlKey || e.metaKey);
  });
  c.addEventListener("dblclick", (e) => { if (ed.on && ed.mode !== "select") { e.preventDefault(); ed.draft.pop(); finishDraft(); } });
  $("viewer").addEventListener("keydown", (e) => {
    // Keys typed into a field, or meant for the open help (Escape closes it), are not edits.
    if (!ed.on || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) || $("edit-help").matches(":popover-open")) return;
    const k = e.key.toLowerCase(), mod = e.ctrlKey || e.metaKey;
    const act = {
      z: () => (e.shiftKey ? step(ed.redo, ed.undo) : step(ed.undo, ed.redo)), y: () => step(ed.redo, ed.undo), s: save,
    };
    const plain = {
      v: () => setMode("select"), d: () => setMode("draw"), s: () => setMode("split"), m: mergeSelected,
      delete: deleteSelected, backspace: () => (ed.draft.length ? (ed.draft.pop(), changed("")) : deleteSelected()),
      enter: finishDraft, "]": () => cycle(1), "[": () => cycle(-1),
      escape: () => { if (ed.draft.length) ed.draft = []; else ed.selected.clear(); changed(""); },
    };
    const f = mod ? act[k] : plain[k];
    if (!f) return;
    e.preventDefault();
    f();
  });
}
