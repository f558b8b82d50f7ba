// The upload list follows its jobs: each line says its job's state live (queued, running with
// its progress, retrying, done with its object count, failed with the reason, cancelled), from
// the job events app.js passes on, so a person sees what became of each file without the table.

import { plural } from "./dom.js";
import { json } from "./api.js";

/// A line of the list per job id, with the last update it shows.
const lines = new Map();

function says(j) {
  switch (j.state) {
    case "queued": return "queued";
    case "active": return `running ${j.progress}%`;
    case "delayed": return "waiting to retry";
    case "completed": return `done: ${plural(j.objects ?? 0, "object")}`;
    case "failed": return `failed: ${j.error ? j.error.message : "no reason given"}`;
    default: return j.state;
  }
}

/// The line `item` (its third child says the state) is the upload that made job `id`.
export function trackUpload(item, id) {
  lines.set(id, { item, at: 0 });
  // The job's events may have gone by before the upload's answer came: ask once.
  json(`/api/jobs/${id}`).then(followJob).catch(() => {});
}

/// A job as an event told it: its upload line, if it has one, follows it.
export function followJob(j) {
  const line = lines.get(j.id);
  if (!line || j.updated_at < line.at) return;
  line.at = j.updated_at;
  line.item.children[2].textContent = says(j);
  line.item.dataset.state = j.state;
  line.item.classList.toggle("bad", j.state === "failed");
}

/// A running job's progress (not durable, so no update time).
export function followProgress(id, progress) {
  const line = lines.get(id);
  if (line && line.item.dataset.state === "active") line.item.children[2].textContent = `running ${progress}%`;
}
