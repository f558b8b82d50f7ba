// Small helpers shared by the page's modules: elements, scrolling, and job ids for people.

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
