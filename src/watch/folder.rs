//! One watched folder's task: it learns of files (a scan at start, then notifications or
//! polling), waits until each is complete, takes it (`watch/take.rs`), hears when its jobs end
//! and writes their results (`watch/finish.rs`). All its state is its own; the blocking work
//! (walking, reading, decoding, writing results) runs on blocking threads in batches, so the
//! runtime and the HTTP server never wait on a disk or a share.
//!
//! A file is waiting from the moment it is seen until its size and modification time have not
//! changed for the settle time since spheroseg last saw them change: the clock starts when
//! spheroseg sees a file, not at its modification time, so a file renamed into place (which keeps
//! the writer's time) or copied with an old time still waits a settle time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::filter::{Filter, slashed};
use super::ledger::{self, Entry};
use super::metadata::Metadata;
use super::results::Layout;
use super::scan::{Seen, Walk, look};
use super::{FolderStatus, Mode};
use crate::clock::{Clock, SystemClock};
use crate::config::{Pages, WatchConfig};
use crate::events::EventKind;
use crate::queue::JobId;
use crate::service::Service;

/// A notified folder is scanned in full this often as well, in case a notification was lost.
const NATIVE_RESCAN: Duration = Duration::from_secs(3600);
/// The most paths kept from notifications between two ticks; past it, a full scan instead.
const DIRTY_CAP: usize = 100_000;
/// Status events at most this often per folder.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the blocking work needs of the entry, shared with it.
pub(super) struct Shape {
    pub cfg: WatchConfig,
    /// The folder, canonical.
    pub root: PathBuf,
    pub filter: Filter,
    pub metadata: Option<Metadata>,
    /// The results and `done` folders: never walked.
    pub skip: Vec<PathBuf>,
    pub layout: Layout,
}

impl Shape {
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            root: &self.root,
            recursive: self.cfg.recursive,
            filter: &self.filter,
            skip: &self.skip,
        }
    }
}

/// A file seen and not taken yet.
#[derive(Clone, Debug)]
pub(super) struct Waiting {
    pub rel: PathBuf,
    pub size: u64,
    pub mtime: u64,
    /// When spheroseg last saw the size or time change (or first saw the file).
    pub since: Instant,
    /// Not looked at again before this (after a transient failure).
    pub not_before: Instant,
}

/// Paths the notifications named since the last tick.
#[derive(Default)]
pub(super) struct Dirty {
    paths: Mutex<HashSet<PathBuf>>,
    rescan: AtomicBool,
}

impl Dirty {
    fn add(&self, paths: Vec<PathBuf>) {
        let mut set = self.paths.lock().expect("dirty lock");
        if set.len() + paths.len() > DIRTY_CAP {
            set.clear();
            self.rescan.store(true, Ordering::SeqCst);
        } else {
            set.extend(paths);
        }
    }

    fn take(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.paths.lock().expect("dirty lock"))
            .into_iter()
            .collect()
    }
}

pub(super) struct Folder {
    pub shape: Arc<Shape>,
    pub service: Service,
    pub status: Arc<Mutex<FolderStatus>>,
    /// `watch␟{root}␟`: this folder's ledger keys.
    pub prefix: String,
    /// Every file taken, by its path below the folder (`/` between parts).
    pub ledger: HashMap<String, Entry>,
    pub by_job: HashMap<JobId, String>,
    pub waiting: HashMap<String, Waiting>,
    /// Files whose jobs have all ended, to write results for.
    pub finished: HashSet<String>,
    /// Files whose results could not be written, and when to try again.
    pub write_later: HashMap<String, Instant>,
    /// Files found `Queued` at start: their rows may be in the CSV already.
    pub recovered: HashSet<String>,
    /// Ledger entries changed in memory (a job run again) to be committed on the next tick.
    pub unsaved: HashSet<String>,
    changed: bool,
    last_status: Option<Instant>,
}

impl Folder {
    pub fn new(shape: Arc<Shape>, service: Service, status: Arc<Mutex<FolderStatus>>) -> Self {
        let prefix = ledger::prefix(&shape.root.to_string_lossy());
        Folder {
            shape,
            service,
            status,
            prefix,
            ledger: HashMap::new(),
            by_job: HashMap::new(),
            waiting: HashMap::new(),
            finished: HashSet::new(),
            write_later: HashMap::new(),
            recovered: HashSet::new(),
            unsaved: HashSet::new(),
            changed: true,
            last_status: None,
        }
    }

    /// Runs until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Subscribed before anything is looked at, so no job's end falls in between.
        let mut events = self.service.events.subscribe(None).live;
        self.load().await;
        let cfg = &self.shape.cfg;
        let (mode, reason) = mode_of(cfg, &self.shape.root);
        let dirty = Arc::new(Dirty::default());
        let mut notifier = None;
        let mut mode = (mode, reason);
        if mode.0 == Mode::Notifications {
            match notifications(&self.shape.root, cfg.recursive, Arc::clone(&dirty)) {
                Ok(w) => notifier = Some(w),
                Err(e) => {
                    tracing::warn!(folder = %cfg.path.display(), error = %e, "no change notifications for this folder; polling it instead");
                    mode = (Mode::Polling, Some(format!("notifications failed: {e}")));
                }
            }
        }
        let rescan_every = match mode.0 {
            Mode::Notifications => NATIVE_RESCAN,
            Mode::Polling => cfg.poll_interval,
        };
        tracing::info!(
            folder = %cfg.path.display(),
            mode = ?mode.0,
            reason = mode.1.as_deref().unwrap_or(""),
            settle_ms = cfg.settle.as_millis() as u64,
            results = %self.shape.layout.root.display(),
            "watching a folder"
        );
        {
            let mut s = self.status.lock().expect("status lock");
            s.mode = mode.0;
            s.mode_reason = mode.1;
        }
        let tick_every =
            (cfg.settle / 4).clamp(Duration::from_millis(25), Duration::from_millis(250));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_scan = Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    if Instant::now() >= next_scan || dirty.rescan.swap(false, Ordering::SeqCst) {
                        self.scan().await;
                        next_scan = Instant::now() + rescan_every;
                    }
                    self.notified(dirty.take()).await;
                    self.take_settled().await;
                    self.save_unsaved().await;
                    self.write_finished().await;
                    self.publish(false);
                }
                ev = events.recv() => match ev {
                    Ok(e) => self.heard(&e.kind),
                    Err(RecvError::Lagged(_)) => self.check_all(),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        drop(notifier);
        self.publish(true);
        tracing::debug!(folder = %self.shape.cfg.path.display(), "stopped watching");
    }

    /// Reads this folder's ledger; files whose jobs ended while spheroseg was down (or whose
    /// results a crash interrupted) get their results written.
    async fn load(&mut self) {
        let (queue, prefix) = (self.service.queue.clone(), self.prefix.clone());
        let marks = tokio::task::spawn_blocking(move || queue.marks(&prefix)).await;
        let marks = match marks {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::error!(folder = %self.shape.cfg.path.display(), error = %e, "cannot read which files were taken; files are deduplicated by content only");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger read task failed");
                return;
            }
        };
        for (key, value) in marks {
            let Some((rel, entry)) = ledger::parse(&self.prefix, &key, &value) else {
                tracing::warn!(
                    key,
                    "a ledger record this build cannot read; the file is taken again"
                );
                continue;
            };
            for id in &entry.jobs {
                self.by_job.insert(*id, rel.clone());
            }
            if entry.record.state == ledger::State::Queued {
                self.recovered.insert(rel.clone());
            }
            self.ledger.insert(rel, entry);
        }
        let pending: Vec<String> = self.recovered.iter().cloned().collect();
        for rel in pending {
            self.check_finished(&rel);
        }
        tracing::debug!(folder = %self.shape.cfg.path.display(), taken = self.ledger.len(), pending = self.recovered.len(), "ledger read");
    }

    /// A full scan: every file found is seen; waiting files it did not find are gone.
    async fn scan(&mut self) {
        let shape = Arc::clone(&self.shape);
        let started = Instant::now();
        let found = tokio::task::spawn_blocking(move || shape.walk().files(&shape.root)).await;
        let elapsed = started.elapsed();
        let found = match found {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                let msg = format!("cannot read {}: {e}", self.shape.cfg.path.display());
                tracing::warn!(folder = %self.shape.cfg.path.display(), error = %e, "cannot scan the folder; trying again later");
                self.status.lock().expect("status lock").error = Some(msg);
                self.changed = true;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "scan task failed");
                return;
            }
        };
        let files = found.len() as u64;
        let mut present = HashSet::with_capacity(found.len());
        for seen in found {
            present.insert(slashed(&seen.rel));
            self.see(seen);
        }
        self.waiting
            .retain(|rel, w| present.contains(rel) || w.since >= started);
        metrics::histogram!("spheroseg_watch_scan_seconds").record(elapsed.as_secs_f64());
        {
            let mut s = self.status.lock().expect("status lock");
            s.last_scan_at = Some(SystemClock.now());
            s.last_scan_ms = Some(elapsed.as_millis() as u64);
            s.last_scan_files = files;
            s.error = None;
        }
        tracing::debug!(folder = %self.shape.cfg.path.display(), files, ms = elapsed.as_millis() as u64, waiting = self.waiting.len(), "scanned");
        self.changed = true;
        self.publish(true);
    }

    /// A file as a look at it found it: waiting unless taken as it is now.
    pub fn see(&mut self, seen: Seen) {
        let rel = slashed(&seen.rel);
        if let Some(e) = self.ledger.get(&rel)
            && e.record.size == seen.size
            && e.record.mtime == seen.mtime
        {
            self.waiting.remove(&rel);
            return;
        }
        let now = Instant::now();
        match self.waiting.get_mut(&rel) {
            Some(w) if (w.size, w.mtime) == (seen.size, seen.mtime) => {}
            Some(w) => {
                w.size = seen.size;
                w.mtime = seen.mtime;
                w.since = now;
            }
            None => {
                self.changed = true;
                self.waiting.insert(
                    rel,
                    Waiting {
                        rel: seen.rel,
                        size: seen.size,
                        mtime: seen.mtime,
                        since: now,
                        not_before: now,
                    },
                );
            }
        }
    }

    /// Looks at the paths notifications named: files are seen (or forgotten, when gone),
    /// folders that appeared are walked.
    async fn notified(&mut self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let shape = Arc::clone(&self.shape);
        let looked = tokio::task::spawn_blocking(move || {
            let walk = shape.walk();
            let mut seen = Vec::new();
            let mut gone = Vec::new();
            for p in paths {
                if shape.skip.iter().any(|s| p.starts_with(s)) {
                    continue;
                }
                if p.is_dir() {
                    let Ok(rel) = p.strip_prefix(&shape.root) else {
                        continue;
                    };
                    if p != shape.root && shape.cfg.recursive && walk.enters(&p, rel) {
                        seen.extend(walk.files(&p).unwrap_or_default());
                    }
                } else if let Some(rel) = walk.owns(&p) {
                    match look(&p, &rel) {
                        Some(s) => seen.push(s),
                        None => gone.push(slashed(&rel)),
                    }
                }
            }
            (seen, gone)
        })
        .await;
        let Ok((seen, gone)) = looked else { return };
        for s in seen {
            self.see(s);
        }
        for rel in gone {
            self.changed |= self.waiting.remove(&rel).is_some();
        }
    }

    /// Hears a job event: a job of a taken file that ended, or that a person ran again.
    fn heard(&mut self, kind: &EventKind) {
        match kind {
            EventKind::JobCompleted { job_id, .. }
            | EventKind::JobFailed { job_id, .. }
            | EventKind::JobCancelled { job_id, .. } => {
                if let Some(rel) = self.rel_of(job_id) {
                    self.check_finished(&rel);
                }
            }
            EventKind::JobsDeleted { job_ids, .. } => {
                for id in job_ids {
                    if let Some(rel) = self.rel_of(id) {
                        self.check_finished(&rel);
                    }
                }
            }
            EventKind::JobQueued {
                job_id,
                retried: true,
                ..
            } => {
                if let Some(rel) = self.rel_of(job_id)
                    && let Some(e) = self.ledger.get_mut(&rel)
                    && e.record.state != ledger::State::Queued
                {
                    e.record.state = ledger::State::Queued;
                    self.finished.remove(&rel);
                    self.unsaved.insert(rel);
                    self.changed = true;
                }
            }
            _ => {}
        }
    }

    fn rel_of(&self, job_id: &str) -> Option<String> {
        let id: JobId = job_id.parse().ok()?;
        self.by_job.get(&id).cloned()
    }

    /// After lost events: every file whose jobs are out is looked at again.
    fn check_all(&mut self) {
        let pending: Vec<String> = self
            .ledger
            .iter()
            .filter(|(_, e)| e.record.state == ledger::State::Queued)
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in pending {
            self.check_finished(&rel);
        }
    }

    /// Queues `rel` for its results if its jobs are out and every one has ended. A file whose
    /// results are written already keeps them when its job goes later (retention, a delete).
    pub fn check_finished(&mut self, rel: &str) {
        let Some(e) = self
            .ledger
            .get(rel)
            .filter(|e| e.record.state == ledger::State::Queued)
        else {
            return;
        };
        let ended = e.jobs.iter().all(|id| match self.service.queue.get(*id) {
            Ok(Some(job)) => job.state.is_finished(),
            Ok(None) => true,
            Err(_) => false,
        });
        if ended {
            self.finished.insert(rel.to_owned());
        }
    }

    /// Publishes the counts (at most every second unless `now`) when they changed.
    pub fn publish(&mut self, now: bool) {
        if !self.changed || (!now && self.last_status.is_some_and(|t| t.elapsed() < STATUS_EVERY)) {
            return;
        }
        self.changed = false;
        self.last_status = Some(Instant::now());
        let (mut queued, mut done, mut failed) = (0u64, 0u64, 0u64);
        for e in self.ledger.values() {
            match e.record.state {
                ledger::State::Queued => queued += 1,
                ledger::State::Done { failed: false } => done += 1,
                ledger::State::Done { failed: true } | ledger::State::Refused { .. } => failed += 1,
            }
        }
        let fresh = self
            .waiting
            .keys()
            .filter(|r| !self.ledger.contains_key(*r))
            .count() as u64;
        let status = {
            let mut s = self.status.lock().expect("status lock");
            s.seen = self.ledger.len() as u64 + fresh;
            s.waiting = self.waiting.len() as u64;
            s.queued = queued;
            s.done = done;
            s.failed = failed;
            s.clone()
        };
        metrics::gauge!("spheroseg_watch_waiting_files", "folder" => status.path.clone())
            .set(status.waiting as f64);
        metrics::gauge!("spheroseg_watch_queued_files", "folder" => status.path.clone())
            .set(status.queued as f64);
        self.service
            .events
            .publish(EventKind::WatchFolder { folder: status });
    }

    /// Marks the state as changed for the next status.
    pub fn touched(&mut self) {
        self.changed = true;
    }
}

/// How `cfg`'s folder learns of new files, and why it polls if it does.
fn mode_of(cfg: &WatchConfig, root: &Path) -> (Mode, Option<String>) {
    if cfg.poll {
        return (Mode::Polling, Some("poll = true".into()));
    }
    match super::share::network_filesystem(root) {
        Some(fs) => (
            Mode::Polling,
            Some(format!(
                "on a network file system ({fs}), which sends no notifications"
            )),
        ),
        None => (Mode::Notifications, None),
    }
}

/// Starts the operating system's notifications for `root`: every path they name goes to
/// `dirty`; an overflow or an error asks for a full scan.
fn notifications(
    root: &Path,
    recursive: bool,
    dirty: Arc<Dirty>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if ev.need_rescan() {
                dirty.rescan.store(true, Ordering::SeqCst);
            }
            dirty.add(ev.paths);
        }
        Err(e) => {
            tracing::debug!(error = %e, "change notification error; scanning in full");
            dirty.rescan.store(true, Ordering::SeqCst);
        }
    })?;
    let mode = if recursive {
        notify::RecursiveMode::Recursive
    } else {
        notify::RecursiveMode::NonRecursive
    };
    w.watch(root, mode)?;
    Ok(w)
}

/// The pages of a file `pages` chooses to segment, given its page count and (for best focus)
/// the sharpest page.
pub(super) fn pages_of(pages: Pages, count: u32, best: Option<u32>) -> Vec<Option<u32>> {
    match pages {
        _ if count <= 1 => vec![None],
        Pages::First => vec![None],
        Pages::All => (0..count).map(Some).collect(),
        Pages::BestFocus => vec![Some(best.unwrap_or(0))],
    }
}
