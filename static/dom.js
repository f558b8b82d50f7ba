// Small helpers shared by the page's modules: elements, scrolling, job ids and durations for
// people.

/// An element with attributes (`class`, `on*` listeners, others as attributes; null and undefined
/// left out) and children (nodes, or anything else as text).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/// The end of a job id, enough to tell jobs apart in a row (the start of a UUIDv7 is its time).
export const shortId = (id) => `…${id.slice(-8)}`;

/// Scrolls `e` into view: smoothly, unless the person asked for less motion.
export function reveal(e, block = "start") {
  const motion = matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth";
  e.scrollIntoView({ behavior: motion, block });
}

/// A duration for people: "850 ms", "12 s", "4 min", "2.5 h", "1.2 d"; "–" when unknown.
export function ago(ms) {
  if (ms == null) return "–";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

/// `n` and the word, plural unless `n` is 1.
export const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;
