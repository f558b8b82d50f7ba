//! The event bus: typed events with a monotonic id and a timestamp, kept in a ring buffer so a
//! client that reconnects with `since` gets what it missed, or a resync when its gap is older than
//! the buffer. Job events are made from the queue's commits and published by its sync thread
//! (`EventBus::publish_commit`, installed as the queue's listener), so for one job they follow
//! the order of its transitions; only progress is published by the pool, and the bus lets a
//! job's progress through only while that job's last event was its `job_started` under the same
//! lease (`EventBus::publish_progress`), so no progress follows the end of its attempt. Publishing
//! never waits for a subscriber: a subscriber that falls behind the broadcast channel is told to
//! resync (tokio's `Lagged`), and nothing is buffered without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::clock::Millis;
use crate::queue::{Change, Committed, JobId, JobState, LeaseToken, StateCounts, Transition};
use crate::view::JobView;

/// What happened. Job events carry the job as the API shows it, so a client can draw it
/// without asking again; they are made from the queue's commits (`EventBus::publish_commit`), in
/// commit order, once durable. Progress comes from the pool and is not durable.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Enqueued, or put back in the queue by a person (`retried`).
    JobQueued {
        job_id: String,
        priority: u8,
        project: Option<String>,
        name: String,
        retried: bool,
        job: JobView,
    },
    JobStarted {
        job_id: String,
        /// The attempt this is, 1-based.
        attempt: u32,
        segmenter: String,
        job: JobView,
    },
    JobProgress {
        job_id: String,
        progress: u8,
    },
    JobCompleted {
        job_id: String,
        objects: u32,
        run_ms: u64,
        job: JobView,
    },
    /// Delayed until `run_at`: a transient failure with attempts left, or `held` back without
    /// spending an attempt while its ML service is unavailable.
    JobRetrying {
        job_id: String,
        /// Attempts spent.
        attempt: u32,
        run_at: Millis,
        code: String,
        message: String,
        held: bool,
        job: JobView,
    },
    JobFailed {
        job_id: String,
        code: String,
        message: String,
        job: JobView,
    },
    JobCancelled {
        job_id: String,
        was: JobState,
        job: JobView,
    },
    /// Stopped by a shutdown while it ran: queued again, its attempt refunded.
    JobInterrupted {
        job_id: String,
        job: JobView,
    },
    /// Queued again by the queue itself: `due` (its backoff ended), `lease-expired`, `orphan`
    /// (it was running when the previous process stopped).
    JobRequeued {
        job_id: String,
        reason: &'static str,
        job: JobView,
    },
    JobPriorityChanged {
        job_id: String,
        from: u8,
        to: u8,
        job: JobView,
    },
    /// A completed job's result has a new latest version: outlines corrected by hand, or an
    /// older version restored (`restored_from`). Open pages reload the result they show.
    ResultCorrected {
        job_id: String,
        version: u32,
        /// Whether the new latest version holds outlines corrected by hand.
        corrected: bool,
        restored_from: Option<u32>,
        objects: u32,
        job: JobView,
    },
    /// Jobs removed in one commit (bulk delete, retention): their ids (the first 10,000) and
    /// how many.
    JobsDeleted {
        job_ids: Vec<String>,
        count: usize,
    },
    BreakerChanged {
        service: String,
        from: String,
        to: String,
    },
    Workers {
        busy: usize,
        total: usize,
    },
    /// A watched folder's counts and last scan, at most every second while they change.
    WatchFolder {
        folder: crate::view::folder::FolderStatus,
    },
    /// Sent every second while the counts change.
    QueueStats {
        counts: StateCounts,
        paused: bool,
        oldest_queued_ms: Option<u64>,
    },
}

impl EventKind {
    /// Whether this event ends the job `job_id`'s run: completed, failed, cancelled, deleted.
    pub fn finishes(&self, job_id: &str) -> bool {
        match self {
            EventKind::JobCompleted { job_id: j, .. }
            | EventKind::JobFailed { job_id: j, .. }
            | EventKind::JobCancelled { job_id: j, .. } => j == job_id,
            EventKind::JobsDeleted { job_ids, .. } => job_ids.iter().any(|j| j == job_id),
            _ => false,
        }
    }
}

/// The most ids one `jobs_deleted` event lists.
const DELETED_IDS: usize = 10_000;

/// The `jobs_deleted` event of a commit that removed jobs.
fn deleted(c: &Committed) -> Option<EventKind> {
    (!c.deleted.is_empty()).then(|| EventKind::JobsDeleted {
        job_ids: c
            .deleted
            .iter()
            .take(DELETED_IDS)
            .map(|id| job(*id))
            .collect(),
        count: c.deleted.len(),
    })
}

fn from_transition(t: &Transition) -> EventKind {
    let j = &t.job;
    let job_id = job(j.id);
    let view = JobView::from(j);
    let (code, message) = j
        .last_error
        .as_ref()
        .map(|e| (e.code.clone(), e.message.clone()))
        .unwrap_or_default();
    match t.change {
        Change::Queued | Change::Retried => EventKind::JobQueued {
            job_id,
            priority: j.priority.get(),
            project: j.project.clone(),
            name: j.image.name.clone(),
            retried: t.change == Change::Retried,
            job: view,
        },
        Change::Started => EventKind::JobStarted {
            job_id,
            attempt: j.attempts,
            segmenter: j.segmenter.to_string(),
            job: view,
        },
        Change::Completed => EventKind::JobCompleted {
            job_id,
            objects: j.result.as_ref().map_or(0, |r| r.objects),
            run_ms: match (j.started_at, j.finished_at) {
                (Some(s), Some(f)) => f.saturating_sub(s),
                _ => 0,
            },
            job: view,
        },
        Change::Retrying | Change::Held => EventKind::JobRetrying {
            job_id,
            attempt: j.attempts,
            run_at: j.run_at.unwrap_or(j.updated_at),
            code,
            message,
            held: t.change == Change::Held,
            job: view,
        },
        Change::Failed => EventKind::JobFailed {
            job_id,
            code,
            message,
            job: view,
        },
        Change::Cancelled { was } => EventKind::JobCancelled {
            job_id,
            was,
            job: view,
        },
        Change::Interrupted => EventKind::JobInterrupted { job_id, job: view },
        Change::Requeued { reason } => EventKind::JobRequeued {
            job_id,
            reason: reason.as_str(),
            job: view,
        },
        Change::PriorityChanged { from } => EventKind::JobPriorityChanged {
            job_id,
            from: from.get(),
            to: j.priority.get(),
            job: view,
        },
        Change::ResultVersioned {
            version,
            restored_from,
        } => EventKind::ResultCorrected {
            job_id,
            version,
            corrected: j.result.as_ref().is_some_and(|r| r.corrected()),
            restored_from,
            objects: j.result.as_ref().map_or(0, |r| r.objects),
            job: view,
        },
    }
}

/// One numbered event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: u64,
    pub at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What a subscriber missed since the id it gave.
#[derive(Debug)]
pub enum Missed {
    Events(Vec<Arc<Event>>),
    /// The gap is older than the buffer: refetch the state, then follow the live events.
    Resync,
}

/// A subscription: what was missed, then the live stream.
pub struct Subscription {
    pub missed: Missed,
    pub live: broadcast::Receiver<Arc<Event>>,
}

struct Ring {
    next: u64,
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The lease of each job whose last published event is its `job_started`. Entries exist only
    /// for active jobs, and every active job leaves that state by a commit (completed, failed,
    /// cancelled, retrying, interrupted, requeued, deleted) that removes its entry.
    running: HashMap<JobId, LeaseToken>,
    /// The latest progress under a lease the bus has not seen start: a worker starts as soon as
    /// its lease is committed, and the `job_started` comes once that commit is announced. It is
    /// published right after that `job_started`, and dropped if another lease starts first or the
    /// job ends.
    early: HashMap<JobId, (LeaseToken, u8)>,
}

/// At most this many early progress reports are kept (a lapsed lease's report is kept until
/// the job's next transition).
const EARLY_CAP: usize = 4096;

impl Ring {
    /// Numbers, stores and broadcasts one event; returns its id.
    fn push(&mut self, kind: EventKind, at: Millis, tx: &broadcast::Sender<Arc<Event>>) -> u64 {
        let event = Arc::new(Event {
            id: self.next,
            at,
            kind,
        });
        self.next += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(Arc::clone(&event));
        // No receivers is fine: nobody is listening.
        let _ = tx.send(event);
        self.next - 1
    }
}

/// The bus; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    ring: Arc<Mutex<Ring>>,
    tx: broadcast::Sender<Arc<Event>>,
    clock: Arc<dyn Clock>,
}

impl EventBus {
    /// `capacity` events are kept for `since` catch-up; live subscribers may fall `capacity`
    /// behind before they are told to resync.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventBus {
            ring: Arc::new(Mutex::new(Ring {
                next: 1,
                events: VecDeque::with_capacity(capacity),
                capacity: capacity.max(1),
                running: HashMap::new(),
                early: HashMap::new(),
            })),
            tx,
            clock,
        }
    }

    /// Numbers, stores and broadcasts an event; returns its id. Never blocks on subscribers.
    pub fn publish(&self, kind: EventKind) -> u64 {
        let at = self.clock.now();
        self.ring
            .lock()
            .expect("event ring lock")
            .push(kind, at, &self.tx)
    }

    /// Publishes the events of one commit, in its order (the queue's listener), and notes which
    /// jobs it started and ended, under the same lock, so progress cannot fall between them.
    pub fn publish_commit(&self, committed: &Committed) {
        let at = self.clock.now();
        let mut ring = self.ring.lock().expect("event ring lock");
        for t in &committed.transitions {
            let id = t.job.id;
            match t.change {
                Change::Started => ring.running.insert(id, t.job.lease),
                _ => ring.running.remove(&id),
            };
            ring.push(from_transition(t), at, &self.tx);
            let early = match ring.early.get(&id) {
                Some(&(lease, progress)) if t.change == Change::Started && lease == t.job.lease => {
                    Some(progress)
                }
                // Another lease started: the report was of a lapsed one. The job ended: the
                // report was of the attempt that ended, unless it is of a later one already.
                Some(&(lease, _)) if t.change == Change::Started || lease <= t.job.lease => None,
                _ => continue,
            };
            ring.early.remove(&id);
            if let Some(progress) = early {
                let kind = EventKind::JobProgress {
                    job_id: job(id),
                    progress,
                };
                ring.push(kind, at, &self.tx);
            }
        }
        for id in &committed.deleted {
            ring.running.remove(id);
            ring.early.remove(id);
        }
        if let Some(deleted) = deleted(committed) {
            ring.push(deleted, at, &self.tx);
        }
    }

    /// Publishes a running job's progress, if the attempt under `lease` is still the job's
    /// current one as the bus has announced it: after its `job_started`, before whatever ends it.
    /// Returns the event's id, or `None` when the progress was dropped (the attempt is over: the
    /// job was cancelled, its lease expired, it finished) or kept until the bus announces the
    /// lease's `job_started` (then it follows that event; see `Ring::early`).
    pub fn publish_progress(&self, job_id: JobId, lease: LeaseToken, progress: u8) -> Option<u64> {
        let at = self.clock.now();
        let mut ring = self.ring.lock().expect("event ring lock");
        match ring.running.get(&job_id) {
            Some(&running) if running == lease => {}
            // A later lease runs: this one is over.
            Some(&running) if running > lease => return None,
            _ => {
                if ring.early.len() >= EARLY_CAP && !ring.early.contains_key(&job_id) {
                    ring.early.clear();
                }
                ring.early.insert(job_id, (lease, progress));
                return None;
            }
        }
        let kind = EventKind::JobProgress {
            job_id: job(job_id),
            progress,
        };
        Some(ring.push(kind, at, &self.tx))
    }

    /// The id of the latest event (0 before any).
    pub fn last_id(&self) -> u64 {
        self.ring.lock().expect("event ring lock").next - 1
    }

    /// Events after `since` (all buffered ones when `None`), then live ones. Taken under the same
    /// lock as `publish`, so nothing falls between the two.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let ring = self.ring.lock().expect("event ring lock");
        let live = self.tx.subscribe();
        let missed = match since {
            None => Missed::Events(Vec::new()),
            Some(s) if s + 1 >= ring.next => Missed::Events(Vec::new()),
            Some(s) => match ring.events.front() {
                Some(first) if first.id <= s + 1 => {
                    Missed::Events(ring.events.iter().filter(|e| e.id > s).cloned().collect())
                }
                _ => Missed::Resync,
            },
        };
        Subscription { missed, live }
    }
}

/// Shorthand for the id field of job events.
pub fn job(id: JobId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn bus(capacity: usize) -> EventBus {
        EventBus::new(capacity, Arc::new(ManualClock::new(1000)))
    }

    fn progress(p: u8) -> EventKind {
        EventKind::JobProgress {
            job_id: "j".into(),
            progress: p,
        }
    }

    #[test]
    fn ids_are_monotonic_and_json_has_id_type_at() {
        let b = bus(10);
        assert_eq!(b.publish(progress(1)), 1);
        assert_eq!(b.publish(progress(2)), 2);
        assert_eq!(b.last_id(), 2);
        let Missed::Events(ev) = b.subscribe(Some(0)).missed else {
            panic!("not a resync")
        };
        let json = serde_json::to_value(&*ev[0]).expect("json");
        assert_eq!(json["id"], 1);
        assert_eq!(json["type"], "job_progress");
        assert_eq!(json["at"], 1000);
        assert_eq!(json["progress"], 1);
    }

    #[test]
    fn since_returns_what_was_missed_or_a_resync() {
        let b = bus(3);
        for p in 1..=5 {
            b.publish(progress(p));
        }
        // Buffer holds 3, 4, 5.
        match b.subscribe(Some(3)).missed {
            Missed::Events(ev) => {
                assert_eq!(ev.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5])
            }
            Missed::Resync => panic!("3 is still covered"),
        }
        match b.subscribe(Some(2)).missed {
            Missed::Events(ev) => assert_eq!(ev.len(), 3),
            Missed::Resync => panic!("2 is covered: 3 is the next"),
        }
        assert!(matches!(b.subscribe(Some(1)).missed, Missed::Resync));
        assert!(matches!(b.subscribe(Some(5)).missed, Missed::Events(ref v) if v.is_empty()));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_to_resync_and_never_blocks_publishing() {
        let b = bus(16);
        let mut sub = b.subscribe(None);
        for p in 0..100 {
            b.publish(progress(p)); // returns at once although nobody reads
        }
        match sub.live.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert!(n > 0),
            other => panic!("expected lag, got {other:?}"),
        }
        let mut fresh = b.subscribe(Some(b.last_id()));
        b.publish(progress(7));
        let e = fresh.live.recv().await.expect("live event");
        assert_eq!(e.kind, progress(7));
    }
}
