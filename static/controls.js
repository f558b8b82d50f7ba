// The overview's queue controls and the upload form's segmenters: pause and resume (POST
// /api/queue/pause and /resume), with the paused state said in words and framed, not by colour
// alone; and the segmenter choice filled from GET /api/segmenters, so it offers only what this
// server has configured.

import { el } from "./dom.js";
import { json } from "./api.js";

const $ = (id) => document.getElementById(id);
let reload = () => {};

/// `changed()`: what to call once the queue was paused or resumed (the overview reloads).
export function setupControls({ changed }) {
  reload = changed;
  const box = $("queue-control");
  box.replaceChildren(
    el("span", { id: "queue-state", class: "queue-state", role: "status" }, "Queue: …"),
    el("button", { type: "button", id: "queue-toggle", "aria-describedby": "queue-state", disabled: "" }, "Pause the queue"),
    el("span", { id: "queue-error", class: "bad", role: "alert" }));
  setupSegmenters();
}

/// Draws the queue's state from `GET /api/queue`.
export function renderQueueState(q) {
  const state = $("queue-state"), toggle = $("queue-toggle");
  if (!state || !toggle) return;
  const paused = Boolean(q.paused);
  state.textContent = paused ? "Queue paused: nothing new starts; running jobs finish." : "Queue running";
  state.classList.toggle("paused", paused);
  toggle.textContent = paused ? "Resume the queue" : "Pause the queue";
  toggle.disabled = false;
  toggle.onclick = () => setPaused(!paused);
}

async function setPaused(paused) {
  const toggle = $("queue-toggle");
  toggle.disabled = true;
  $("queue-error").textContent = "";
  try {
    const r = await json(`/api/queue/${paused ? "pause" : "resume"}`, { method: "POST" });
    renderQueueState(r);
  } catch (e) {
    $("queue-error").textContent = `Not ${paused ? "paused" : "resumed"}: ${e.message}`;
    toggle.disabled = false;
  }
  reload();
}

/// The upload form's segmenter choice: the default, then each segmenter this server runs.
async function setupSegmenters() {
  const select = $("segmenter");
  try {
    const list = await json("/api/segmenters");
    const kinds = { builtin: "builtin", remote: "ML service", program: "local program" };
    select.replaceChildren(
      el("option", { value: "" }, `default (${list.default})`),
      ...list.segmenters.map((s) => el("option", { value: s.name },
        s.kind === "builtin" ? s.name : `${s.name} (${kinds[s.kind] || s.kind})`)));
  } catch {
    // The server's default is what an empty choice sends; nothing else is offered.
    select.replaceChildren(el("option", { value: "" }, "default"));
  }
}
