//! Progress, the one event the pool publishes, never follows the end of its attempt: a segmenter
//! that keeps reporting while it is cancelled, and the progress of a lease that lapsed, are
//! dropped by the bus once the queue has announced what ended the attempt.

use spheroseg::clock::ManualClock;
use spheroseg::queue::LeaseToken;

use super::*;

/// Reports progress every 10 ms up to 100 % (about a second, published every 200 ms after the
/// worker's throttle) and only then looks at its stop flag, as a segmenter in a long stage does;
/// then runs the builtin pipeline.
struct Stubborn;

impl Segmenter for Stubborn {
    fn name(&self) -> &str {
        "builtin"
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        for p in 1..=100 {
            (control.progress)(p);
            std::thread::sleep(Duration::from_millis(10));
        }
        if control.stop.stopped() {
            return Err(Failure::Stopped);
        }
        Builtin.segment(input, control)
    }
}

/// Whether every progress event of `id` follows a `job_started` of the job with no other event
/// of the job in between.
fn progress_inside_attempts(events: &[Arc<Event>], id: JobId) -> bool {
    let id = id.to_string();
    let kinds: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(&e.kind).expect("json"))
        .filter(|v| v["job_id"] == id)
        .collect();
    let kinds: Vec<&str> = kinds
        .iter()
        .map(|v| v["type"].as_str().expect("type"))
        .collect();
    crate::util::ws::progress_outside_attempts(&kinds).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_reaches_the_bus_after_a_running_job_is_cancelled() {
    use spheroseg::service::Service;

    let h = harness();
    let segmenters = Segmenters {
        builtin: Arc::new(Stubborn),
        ml: HashMap::new(),
    };
    let pool = h.start(segmenters, config(1));
    let service = Service {
        queue: h.queue.clone(),
        images: h.images.clone(),
        events: h.events.clone(),
        pool: Some(pool.handle()),
        default_segmenter: SegmenterId::builtin(),
    };
    // Each job is cancelled at its first progress, while the segmenter goes on reporting for
    // most of a second: before the bus checked the attempt, about four progress events of each
    // came after its job_cancelled.
    let mut cancelled = Vec::new();
    for _ in 0..3 {
        let id = h
            .enqueue("spheroid_lumen_8bit.png", SegmenterId::builtin())
            .await;
        h.wait_for(30, |e| count(e, about(id, "job_progress")) >= 1)
            .await;
        let before = service.cancel(id).await.expect("cancel");
        assert_eq!(before.state, JobState::Active);
        cancelled.push(id);
    }
    // One more runs to the end: its progress all comes before its completion.
    let last = h
        .enqueue("spheroid_lumen_8bit.png", SegmenterId::builtin())
        .await;
    let events = h.wait_for(60, |e| count(e, completed) == 1).await;
    assert_eq!(h.state(last), JobState::Completed);
    assert!(
        count(&events, about(last, "job_progress")) >= 2,
        "{events:#?}"
    );
    for id in cancelled.iter().chain([&last]) {
        assert!(progress_inside_attempts(&events, *id), "{id}: {events:#?}");
    }
    for id in &cancelled {
        assert_eq!(h.state(*id), JobState::Cancelled);
    }
    pool.shutdown(Duration::from_secs(5)).await;
}

/// The bus's check on its own, on the queue's real commits: progress under a lease passes only
/// between that lease's `job_started` and the next transition of the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_under_a_lapsed_or_replaced_lease_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (queue, _) = crate::util::open(dir.path(), clock.clone());
    let events = crate::util::events_of(&queue);
    let id = queue
        .enqueue(crate::util::job(5))
        .await
        .expect("enqueued")
        .job
        .id;
    let ttl = Duration::from_secs(5);
    // Before the job_started: not published (kept until then; see the next test).
    assert_eq!(events.publish_progress(id, LeaseToken(1), 5), None);
    let first = queue.lease(1, ttl).await.expect("lease").remove(0).token;
    assert_eq!(first, LeaseToken(1));
    announced_started(&events, 1).await;
    assert!(events.publish_progress(id, first, 10).is_some());

    // The lease runs out and the sweep requeues the job: the attempt is over.
    clock.advance(ttl * 2);
    let swept = queue.sweep().await.expect("sweep");
    assert_eq!(swept.expired, vec![id]);
    assert_eq!(events.publish_progress(id, first, 20), None);

    // Leased again: only the new lease's progress passes, until the job is cancelled.
    let second = queue.lease(1, ttl).await.expect("lease").remove(0).token;
    announced_started(&events, 2).await;
    assert_ne!(first, second);
    assert_eq!(events.publish_progress(id, first, 30), None);
    assert!(events.publish_progress(id, second, 40).is_some());
    queue.cancel(id).await.expect("cancel");
    assert_eq!(events.publish_progress(id, second, 50), None);

    let Missed::Events(seen) = events.subscribe(Some(0)).missed else {
        panic!("the buffer holds every event")
    };
    let kinds: Vec<String> = seen
        .iter()
        .map(|e| {
            let v = serde_json::to_value(&**e).expect("json");
            match v["progress"].as_u64() {
                Some(p) => format!("progress {p}"),
                None => v["type"].as_str().expect("type").to_owned(),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "job_queued",
            "job_started",
            "progress 5",
            "progress 10",
            "job_requeued",
            "job_started",
            "progress 40",
            "job_cancelled",
        ]
    );
    queue.close();
}

/// Waits until the bus has announced `n` `job_started` events: a lease is answered once it is
/// committed, and announced once the commits before it are durable.
async fn announced_started(events: &EventBus, n: usize) {
    until(30, "job_started", || {
        match events.subscribe(Some(0)).missed {
            Missed::Events(seen) => count(&seen, started) >= n,
            Missed::Resync => panic!("the buffer holds every event"),
        }
    })
    .await;
}

/// Progress reported before the bus announced its lease's `job_started` follows that event
/// (the latest report only); a lapsed lease's report never appears, and neither does one that
/// comes after its attempt ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_before_its_job_started_is_announced_follows_it() {
    use spheroseg::queue::{Change, Committed, Requeue, Transition};

    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (queue, _) = crate::util::open(dir.path(), clock.clone());
    // A bus that hears only the commits this test hands it, in the order it chooses.
    let events = spheroseg::events::EventBus::new(100, clock.clone());
    queue.enqueue(crate::util::job(5)).await.expect("enqueued");
    let ttl = Duration::from_secs(5);
    let lease = queue.lease(1, ttl).await.expect("lease").remove(0);
    let (id, token) = (lease.job.id, lease.token);
    let announce = |job: &spheroseg::queue::Job, change: Change| {
        events.publish_commit(&Committed {
            transitions: vec![Transition {
                job: job.clone(),
                change,
            }],
            deleted: vec![],
        })
    };
    let kinds = || {
        let Missed::Events(seen) = events.subscribe(Some(0)).missed else {
            panic!("the buffer holds every event")
        };
        seen.iter()
            .map(|e| {
                let v = serde_json::to_value(&**e).expect("json");
                match v["progress"].as_u64() {
                    Some(p) => format!("progress {p}"),
                    None => v["type"].as_str().expect("type").to_owned(),
                }
            })
            .collect::<Vec<_>>()
    };

    // Early: kept, the latest one published right after the job_started.
    assert_eq!(events.publish_progress(id, token, 5), None);
    assert_eq!(events.publish_progress(id, token, 10), None);
    assert!(kinds().is_empty());
    announce(&lease.job, Change::Started);
    assert_eq!(kinds(), ["job_started", "progress 10"]);
    assert!(events.publish_progress(id, token, 20).is_some());

    // The lease lapses; its late report is kept, but the next lease's job_started drops it.
    clock.advance(ttl * 2);
    let reason = Requeue::LeaseExpired;
    announce(&lease.job, Change::Requeued { reason });
    assert_eq!(events.publish_progress(id, token, 30), None);
    queue.sweep().await.expect("sweep");
    let again = queue.lease(1, ttl).await.expect("lease").remove(0);
    assert!(again.token > token);
    announce(&again.job, Change::Started);
    assert!(events.publish_progress(id, token, 40).is_none());

    // A report after the attempt ended never appears.
    announce(
        &again.job,
        Change::Cancelled {
            was: JobState::Active,
        },
    );
    assert_eq!(events.publish_progress(id, again.token, 50), None);
    assert_eq!(
        kinds(),
        [
            "job_started",
            "progress 10",
            "progress 20",
            "job_requeued",
            "job_started",
            "job_cancelled",
        ]
    );
    queue.close();
}
