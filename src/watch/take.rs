//! Taking complete files: a batch of the files that have settled is looked at once more, read,
//! hashed, checked and stored by the image store (which decodes it: a file that does not decode
//! is refused here, before any job exists), and then every job and ledger record of the batch is
//! committed at once (`Service::enqueue_marked`): one durable commit per batch, however many
//! files a weekend left in the folder.
//!
//! Exactly once: a file whose content is what the ledger recorded for its path (touched, copied
//! over with the same bytes, renamed back) makes no job; the same content at another path makes
//! no second job either, because every job carries the dedupe key (content hash, segmenter,
//! parameters, page) and the queue hands back the job that holds it. The ledger record and the
//! jobs are one commit, so a crash leaves both or neither.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::folder::{Folder, Shape, pages_of};
use super::ledger::{self, Entry, Record, State};
use super::scan::{Seen, look};
use crate::config::Pages;
use crate::images::{ImageStore, ImageStoreError, Pin, content_hash};
use crate::queue::{ImageRef, JobId, Mark, NewJob, Priority};
use crate::segment::PixelSizeGiven;
use crate::segment::decode::{DecodeLimits, page_count};

/// The most files taken in one commit.
const BATCH: usize = 128;
/// How long a file waits after a failure that may pass (a busy decode budget, a locked file).
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// How long after a failure of the queue or the disk.
const FAULT_WAIT: Duration = Duration::from_secs(5);

/// What looking at a settled file found.
enum Looked {
    /// Its size or time changed after all: it waits again.
    Changed(Seen),
    Gone,
    /// It cannot be read now (a writer holds it on Windows, the decode budget is full): later.
    Busy {
        reason: String,
        wait: Duration,
    },
    /// The content the ledger has for this path: the new size and time are recorded, no job.
    Same(Seen),
    /// It does not decode.
    Refused {
        seen: Seen,
        hash: String,
        reason: String,
    },
    Ready {
        seen: Seen,
        image: ImageRef,
        pin: Pin,
        pages: Vec<Option<u32>>,
        metadata: Vec<(String, String)>,
    },
}

impl Folder {
    /// Takes the files that have settled, a batch per commit.
    pub(super) async fn take_settled(&mut self) {
        loop {
            let now = Instant::now();
            let settle = self.shape.cfg.settle;
            let due: Vec<(String, Seen, Option<String>)> = self
                .waiting
                .iter()
                .filter(|(_, w)| now >= w.since + settle && now >= w.not_before)
                .take(BATCH)
                .map(|(rel, w)| {
                    let known = self.ledger.get(rel).map(|e| e.record.hash.clone());
                    let seen = Seen {
                        rel: w.rel.clone(),
                        size: w.size,
                        mtime: w.mtime,
                    };
                    (rel.clone(), seen, known)
                })
                .collect();
            if due.is_empty() {
                return;
            }
            let full = due.len() == BATCH;
            let shape = std::sync::Arc::clone(&self.shape);
            let images = self.service.images.requiring(min_side(&shape));
            let limits = self.service.images.limits();
            let looked = tokio::task::spawn_blocking(move || {
                due.into_iter()
                    .map(|(rel, seen, known)| {
                        let l = look_at(&shape, &images, &limits, seen, known.as_deref());
                        (rel, l)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let Ok(looked) = looked else { return };
            self.commit(looked).await;
            if !full {
                return;
            }
        }
    }

    /// Commits what a batch found: the jobs and ledger records in one commit, then the error
    /// files of refused files.
    async fn commit(&mut self, looked: Vec<(String, Looked)>) {
        let shape = std::sync::Arc::clone(&self.shape);
        let cfg = &shape.cfg;
        // The folder's pixel size, else the one its project remembers (read once per batch).
        let params = self
            .service
            .with_project_pixel_size(
                Some(&cfg.project),
                cfg.params.clone(),
                PixelSizeGiven::Watch,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, project = %cfg.project, "cannot read the project's settings");
                cfg.params.clone()
            });
        let mut jobs: Vec<NewJob> = Vec::new();
        let mut marks: Vec<Mark> = Vec::new();
        let mut pins: Vec<Pin> = Vec::new();
        let mut taken: Vec<(String, Record, Vec<usize>)> = Vec::new();
        let mut kept: Vec<(String, Record)> = Vec::new();
        let mut refused: Vec<(String, PathBuf, String, bool)> = Vec::new();
        let now = Instant::now();
        let rels: Vec<String> = looked.iter().map(|(r, _)| r.clone()).collect();
        for (rel, l) in looked {
            let old = self.ledger.get(&rel);
            let written = old.is_some_and(|e| e.record.written);
            match l {
                Looked::Changed(seen) => self.see(seen),
                Looked::Gone => {
                    self.waiting.remove(&rel);
                    self.touched();
                }
                Looked::Busy { reason, wait } => {
                    tracing::debug!(file = %rel, %reason, "not taken yet");
                    if let Some(w) = self.waiting.get_mut(&rel) {
                        w.not_before = now + wait;
                    }
                }
                Looked::Same(seen) => {
                    let Some(old) = old else { continue };
                    let record = Record {
                        size: seen.size,
                        mtime: seen.mtime,
                        ..old.record.clone()
                    };
                    marks.push(ledger::mark(&self.prefix, &rel, &record, &old.jobs, vec![]));
                    kept.push((rel, record));
                }
                Looked::Refused { seen, hash, reason } => {
                    let record = Record {
                        size: seen.size,
                        mtime: seen.mtime,
                        hash,
                        state: State::Refused {
                            reason: reason.clone(),
                        },
                        written: false,
                        pages: Vec::new(),
                    };
                    marks.push(ledger::mark(&self.prefix, &rel, &record, &[], vec![]));
                    refused.push((rel.clone(), seen.rel.clone(), reason, written));
                    kept.push((rel, record));
                }
                Looked::Ready {
                    seen,
                    image,
                    pin,
                    pages,
                    metadata,
                } => {
                    let mut indices = Vec::new();
                    for page in &pages {
                        indices.push(jobs.len());
                        jobs.push(NewJob {
                            priority: Priority::new(i64::from(cfg.priority)).unwrap_or_default(),
                            project: Some(cfg.project.clone()),
                            dedupe_key: Some(crate::service::content_key(
                                &image.hash,
                                &cfg.segmenter,
                                &params,
                                *page,
                            )),
                            image: image.clone(),
                            segmenter: cfg.segmenter.clone(),
                            params: params.clone(),
                            metadata: with_page(&metadata, *page),
                            page: *page,
                            ..NewJob::default()
                        });
                    }
                    let record = Record {
                        size: seen.size,
                        mtime: seen.mtime,
                        hash: image.hash.clone(),
                        state: State::Queued,
                        written,
                        pages,
                    };
                    marks.push(ledger::mark(
                        &self.prefix,
                        &rel,
                        &record,
                        &[],
                        indices.clone(),
                    ));
                    pins.push(pin);
                    taken.push((rel, record, indices));
                }
            }
        }
        if marks.is_empty() {
            return;
        }
        let done = match self.service.enqueue_marked(jobs, marks).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(folder = %cfg.path.display(), error = %e, "cannot take files now; trying again shortly");
                for rel in &rels {
                    if let Some(w) = self.waiting.get_mut(rel) {
                        w.not_before = now + FAULT_WAIT;
                    }
                }
                self.status.lock().expect("status lock").error = Some(e.to_string());
                return;
            }
        };
        drop(pins);
        self.status.lock().expect("status lock").error = None;
        let folder = cfg.path.display().to_string();
        for (rel, record) in kept {
            self.waiting.remove(&rel);
            let jobs = self
                .ledger
                .get(&rel)
                .map(|e| e.jobs.clone())
                .unwrap_or_default();
            let outcome = if matches!(record.state, State::Refused { .. }) {
                "refused"
            } else {
                "unchanged"
            };
            metrics::counter!("spheroseg_watch_files_total", "folder" => folder.clone(), "outcome" => outcome).increment(1);
            self.replace(rel, Entry { record, jobs });
        }
        let mut now_finished = Vec::new();
        for (rel, record, indices) in taken {
            self.waiting.remove(&rel);
            let ids: Vec<JobId> = indices.iter().map(|i| done[*i].job.id).collect();
            let dup = indices.iter().all(|i| done[*i].deduplicated);
            let outcome = if dup { "duplicate" } else { "queued" };
            metrics::counter!("spheroseg_watch_files_total", "folder" => folder.clone(), "outcome" => outcome).increment(1);
            tracing::info!(folder = %folder, file = %rel, jobs = ids.len(), deduplicated = dup, "file taken");
            if indices.iter().any(|i| done[*i].job.state.is_finished()) {
                now_finished.push(rel.clone());
            }
            self.replace(rel, Entry { record, jobs: ids });
        }
        for rel in now_finished {
            self.check_finished(&rel);
        }
        if !refused.is_empty() {
            let shape = std::sync::Arc::clone(&self.shape);
            let written = tokio::task::spawn_blocking(move || {
                for (rel, path, reason, written) in &refused {
                    tracing::info!(file = %rel, %reason, "file does not decode; no job");
                    if let Err(e) = shape.layout.refused(path, reason, *written) {
                        tracing::warn!(file = %rel, error = %e, "cannot write the error file");
                    }
                }
            })
            .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "error file task failed");
            }
        }
        self.touched();
    }

    /// Puts `entry` in the ledger for `rel`, the jobs of the one it replaces forgotten.
    fn replace(&mut self, rel: String, entry: Entry) {
        if let Some(old) = self.ledger.get(&rel) {
            for id in &old.jobs {
                if !entry.jobs.contains(id) {
                    self.by_job.remove(id);
                }
            }
        }
        for id in &entry.jobs {
            self.by_job.insert(*id, rel.clone());
        }
        self.finished.remove(&rel);
        self.ledger.insert(rel, entry);
    }

    /// Commits the ledger records changed in memory (a job a person ran again is out again).
    pub(super) async fn save_unsaved(&mut self) {
        if self.unsaved.is_empty() {
            return;
        }
        let rels: Vec<String> = self.unsaved.drain().collect();
        let marks: Vec<Mark> = rels
            .iter()
            .filter_map(|rel| {
                let e = self.ledger.get(rel)?;
                Some(ledger::mark(&self.prefix, rel, &e.record, &e.jobs, vec![]))
            })
            .collect();
        if let Err(e) = self.service.enqueue_marked(Vec::new(), marks).await {
            tracing::warn!(error = %e, "cannot record the change of taken files; trying again");
            self.unsaved.extend(rels);
        }
    }
}

/// A job's metadata: the file's, and the page (1-based) when it segments one of several.
fn with_page(metadata: &[(String, String)], page: Option<u32>) -> Vec<(String, String)> {
    let mut m = metadata.to_vec();
    if let Some(p) = page {
        m.push(("page".into(), (p + 1).to_string()));
    }
    m
}

/// The smallest side the entry's segmenter works on.
fn min_side(shape: &Shape) -> u32 {
    if shape.cfg.segmenter.is_builtin() {
        crate::segment::builtin::MIN_SIDE
    } else {
        1
    }
}

/// Looks at a settled file on a blocking thread: once more its size and time, then its bytes.
fn look_at(
    shape: &Shape,
    images: &ImageStore,
    limits: &DecodeLimits,
    seen: Seen,
    known_hash: Option<&str>,
) -> Looked {
    let path = shape.root.join(&seen.rel);
    let Some(now) = look(&path, &seen.rel) else {
        return Looked::Gone;
    };
    if (now.size, now.mtime) != (seen.size, seen.mtime) {
        return Looked::Changed(now);
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Looked::Gone,
        Err(e) => {
            return Looked::Busy {
                reason: format!("cannot read it: {e}"),
                wait: BUSY_WAIT,
            };
        }
    };
    if bytes.len() as u64 != seen.size {
        // Written to between the look and the read.
        return match look(&path, &seen.rel) {
            Some(s) => Looked::Changed(s),
            None => Looked::Gone,
        };
    }
    // A path taken before is compared by content first: a touched file makes no job.
    if let Some(known) = known_hash
        && content_hash(&bytes) == known
    {
        return Looked::Same(seen);
    }
    let name = seen
        .rel
        .file_name()
        .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
    let stored = match images.put(&bytes, &name) {
        Ok(s) => s,
        Err(e @ ImageStoreError::Busy { .. }) => {
            return Looked::Busy {
                reason: e.to_string(),
                wait: BUSY_WAIT,
            };
        }
        Err(e @ (ImageStoreError::DiskFull { .. } | ImageStoreError::Io { .. })) => {
            return Looked::Busy {
                reason: e.to_string(),
                wait: FAULT_WAIT,
            };
        }
        Err(e) => {
            return Looked::Refused {
                seen,
                hash: content_hash(&bytes),
                reason: e.to_string(),
            };
        }
    };
    let hash = stored.image.hash.clone();
    let count = match shape.cfg.pages {
        Pages::First => 1,
        _ => page_count(&bytes),
    };
    let best = if shape.cfg.pages == Pages::BestFocus && count > 1 {
        match super::pages::best_focus(&bytes, count, limits, images.budget()) {
            Ok(p) => Some(p),
            Err(e) => {
                return Looked::Refused {
                    seen,
                    hash,
                    reason: format!("{name}: {e}"),
                };
            }
        }
    } else {
        None
    };
    let metadata = shape
        .metadata
        .as_ref()
        .map(|m| m.extract(&seen.rel))
        .unwrap_or_default();
    Looked::Ready {
        pages: pages_of(shape.cfg.pages, count, best),
        seen,
        image: stored.image,
        pin: stored.pin,
        metadata,
    }
}
