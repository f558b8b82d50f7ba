//! The event bus: typed events with a monotonic id and a timestamp, kept in a ring buffer so a
//! client that reconnects with `since` gets what it missed, or a resync when its gap is older than
//! the buffer. Publishing never waits for a subscriber: a subscriber that falls behind the
//! broadcast channel is told to resync (tokio's `Lagged`), and nothing is buffered without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::clock::Millis;
use crate::queue::{JobId, JobState, StateCounts};

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    JobQueued {
        job_id: String,
        priority: u8,
        project: Option<String>,
        name: String,
    },
    JobStarted {
        job_id: String,
        attempt: u32,
        segmenter: String,
    },
    JobProgress {
        job_id: String,
        progress: u8,
    },
    JobCompleted {
        job_id: String,
        objects: usize,
        run_ms: u64,
    },
    JobRetrying {
        job_id: String,
        attempt: u32,
        run_at: Millis,
        code: String,
        message: String,
    },
    JobFailed {
        job_id: String,
        code: String,
        message: String,
    },
    JobCancelled {
        job_id: String,
        was: JobState,
    },
    /// A job that was running when shutdown came; it is requeued at the next start.
    JobInterrupted {
        job_id: String,
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
    /// Sent every second while the counts change.
    QueueStats {
        counts: StateCounts,
        paused: bool,
        oldest_queued_ms: Option<u64>,
    },
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
            })),
            tx,
            clock,
        }
    }

    /// Numbers, stores and broadcasts an event; returns its id. Never blocks on subscribers.
    pub fn publish(&self, kind: EventKind) -> u64 {
        let mut ring = self.ring.lock().expect("event ring lock");
        let event = Arc::new(Event {
            id: ring.next,
            at: self.clock.now(),
            kind,
        });
        ring.next += 1;
        if ring.events.len() == ring.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&event));
        // No receivers is fine: nobody is listening.
        let _ = self.tx.send(Arc::clone(&event));
        event.id
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
