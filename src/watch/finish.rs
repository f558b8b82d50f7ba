//! Files whose jobs have all ended: their results (or the reason they failed) are written beside
//! the folder (`watch/results.rs`), the file moves to `done/` if the entry says so, and the
//! ledger records it as done, a batch at a time. Writing comes before the record, so a crash in
//! between writes the results again at the next start (replacing the CSV rows, not adding to
//! them); a write that fails (a locked CSV, a full disk) is tried again on a later tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::folder::Folder;
use super::ledger::{self, Entry, State};
use super::results::{Finished, Part, move_done};
use crate::config::After;
use crate::images::ImageStore;
use crate::queue::{Job, JobId, JobState, Queue};
use crate::segment::SegmentResult;
use crate::segment::decode::decode_page;

/// The most files whose results one tick writes.
const BATCH: usize = 32;
/// How long after a failed write its results are tried again.
const RETRY: Duration = Duration::from_secs(5);

impl Folder {
    pub(super) async fn write_finished(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .write_later
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in due {
            self.write_later.remove(&rel);
            self.finished.insert(rel);
        }
        if self.finished.is_empty() {
            return;
        }
        let rels: Vec<String> = self.finished.iter().take(BATCH).cloned().collect();
        let work: Vec<(String, Entry, bool)> = rels
            .iter()
            .filter_map(|rel| {
                let e = self.ledger.get(rel)?;
                let replace = e.record.written || self.recovered.contains(rel);
                Some((rel.clone(), e.clone(), replace))
            })
            .collect();
        let shape = Arc::clone(&self.shape);
        let (queue, images) = (self.service.queue.clone(), self.service.images.clone());
        let written = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .map(|(rel, entry, replace)| {
                    let outcome = write_one(&shape, &queue, &images, &rel, &entry, replace);
                    (rel, entry, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(written) = written else { return };
        for rel in &rels {
            self.finished.remove(rel);
        }
        let mut marks = Vec::new();
        let mut updated = Vec::new();
        for (rel, mut entry, outcome) in written {
            match outcome {
                Ok(failed) => {
                    entry.record.state = State::Done { failed };
                    entry.record.written = true;
                    marks.push(ledger::mark(
                        &self.prefix,
                        &rel,
                        &entry.record,
                        &entry.jobs,
                        vec![],
                    ));
                    updated.push((rel, entry, failed));
                }
                Err(e) => {
                    tracing::warn!(file = %rel, error = %e, "cannot write the results; trying again");
                    self.write_later.insert(rel.clone(), Instant::now() + RETRY);
                    self.status.lock().expect("status lock").error =
                        Some(format!("cannot write the results of {rel}: {e}"));
                }
            }
        }
        if marks.is_empty() {
            return;
        }
        if let Err(e) = self.service.enqueue_marked(Vec::new(), marks).await {
            // The results are written; the next start writes them again in place.
            tracing::warn!(error = %e, "cannot record written results");
        }
        let folder = self.shape.cfg.path.display().to_string();
        for (rel, entry, failed) in updated {
            let outcome = if failed { "failed" } else { "done" };
            metrics::counter!("spheroseg_watch_files_total", "folder" => folder.clone(), "outcome" => outcome).increment(1);
            tracing::info!(folder = %folder, file = %rel, failed, "results written");
            self.recovered.remove(&rel);
            self.ledger.insert(rel, entry);
        }
        self.touched();
    }
}

/// The path below the folder of a ledger key's `/`-separated one.
pub(super) fn rel_path(rel: &str) -> PathBuf {
    rel.split('/').collect()
}

/// Writes one file's results on a blocking thread; `Ok(true)` when a job of it failed.
fn write_one(
    shape: &super::folder::Shape,
    queue: &Queue,
    images: &ImageStore,
    rel: &str,
    entry: &Entry,
    replace: bool,
) -> std::io::Result<bool> {
    let path = rel_path(rel);
    let mut parts = Vec::with_capacity(entry.jobs.len());
    for (i, id) in entry.jobs.iter().enumerate() {
        let page = entry.record.pages.get(i).copied().flatten();
        let job = queue.get(*id).map_err(std::io::Error::other)?;
        parts.push(part(queue, images, *id, page, job.as_ref())?);
    }
    // From this file's name: a copy of another file's image shares its job, not its name.
    let metadata = shape
        .metadata
        .as_ref()
        .map(|m| m.extract(&path))
        .unwrap_or_default();
    let failed = shape.layout.write(&Finished {
        rel: &path,
        parts,
        metadata: &metadata,
        replace,
    })?;
    if !failed && shape.cfg.after == After::Move {
        match move_done(&shape.root, &shape.cfg.done_root(), &path) {
            Ok(()) => {}
            // Moved already (a restart writing the results again).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %rel, error = %e, "cannot move the file to done/"),
        }
    }
    Ok(failed)
}

/// One job's part of the results: its result and the pixels of its page, or why it failed.
fn part(
    queue: &Queue,
    images: &ImageStore,
    id: JobId,
    page: Option<u32>,
    job: Option<&Job>,
) -> std::io::Result<Part> {
    let failed = |reason: String| {
        Ok(Part::Failed {
            job: id,
            page,
            reason,
        })
    };
    let Some(job) = job else {
        return failed("the job was deleted".into());
    };
    match job.state {
        JobState::Completed => {}
        JobState::Cancelled => return failed("the job was cancelled".into()),
        _ => {
            let reason = job.last_error.as_ref().map_or_else(
                || "unknown".to_owned(),
                |e| format!("{} ({})", e.message, e.code),
            );
            return failed(reason);
        }
    }
    let bytes = queue.result(id).map_err(std::io::Error::other)?;
    let Some(result) = bytes.as_deref().and_then(SegmentResult::from_bytes) else {
        return failed("its result cannot be read".into());
    };
    // The overlay is for a quick look: without the original (collected), it is left out.
    let image = images
        .read(&job.image.hash)
        .ok()
        .and_then(|b| decode_page(&b, page.unwrap_or(0), &images.limits()).ok())
        .map(|d| d.gray);
    Ok(Part::Completed {
        job: id,
        page,
        result: Box::new(result),
        image,
    })
}
