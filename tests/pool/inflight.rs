//! Remote ML calls do not hold CPU workers: with one worker, a slow stub service takes eight calls
//! at once (its `max_in_flight`) while builtin jobs run beside them; a cancel drops the request
//! (the stub sees its connection close); a shutdown waits for calls in flight within the grace
//! and drops them after it. A local program runs within its own `max_parallel` likewise.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use spheroseg::clock::{Clock, SystemClock};
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::http::HttpSegmenter;
use spheroseg::segment::{Builtin, MlService};

use super::*;

const SQUARE: &str = r#"{"success":true,"results":{"polygons":[{"id":"p","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid"}]}}"#;

/// A `/segment` that takes `delay` per call and counts what happens to its calls.
#[derive(Clone, Default)]
struct Stub {
    delay: Duration,
    /// Calls being answered now, and the most at once.
    active: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// Calls whose connection closed before the answer.
    dropped: Arc<AtomicUsize>,
}

/// Counts a call as active while it lives, and as dropped when it ends unanswered.
struct Active(Stub, AtomicBool);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        if !self.1.load(Ordering::SeqCst) {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn segment(State(stub): State<Stub>, body: axum::body::Bytes) -> &'static str {
    let now = stub.active.fetch_add(1, Ordering::SeqCst) + 1;
    stub.most.fetch_max(now, Ordering::SeqCst);
    let guard = Active(stub.clone(), AtomicBool::new(false));
    assert!(!body.is_empty());
    tokio::time::sleep(stub.delay).await;
    guard.1.store(true, Ordering::SeqCst);
    SQUARE
}

async fn stub(delay: Duration) -> (String, Stub) {
    let stub = Stub {
        delay,
        ..Stub::default()
    };
    let app = Router::new()
        .route("/segment", post(segment))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(stub.clone());
    (crate::util::serve_stub(app).await, stub)
}

fn remote(url: &str, max_in_flight: usize) -> Segmenters {
    let client = HttpSegmenter::new("http", url, Duration::from_secs(60), false).expect("client");
    let svc = MlService::remote(
        Arc::new(client),
        Breaker::new(BreakerConfig::default(), SystemClock.now()),
        false,
        url,
    )
    .with_limit(max_in_flight);
    Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("http").expect("name"), Arc::new(svc))]),
    }
}

impl Harness {
    async fn enqueue_many(&self, n: usize, segmenter: &str, priority: i64) -> Vec<JobId> {
        crate::util::enqueue_lumen(&self.queue, &self.images, segmenter, n, priority).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_calls_overlap_up_to_their_limit_and_builtin_jobs_run_meanwhile() {
    let h = harness();
    let (url, stub) = stub(Duration::from_millis(500)).await;
    let pool = h.start(remote(&url, 8), config(1));
    let started = Instant::now();
    let remote_ids = h.enqueue_many(32, "http", 5).await;
    until(10, "the first calls", || {
        stub.active.load(Ordering::SeqCst) > 0
    })
    .await;
    // Submitted while the calls run; higher priority, so they are next for the one worker.
    let builtin_ids = h.enqueue_many(2, "builtin", 10).await;
    let mut builtin_done_at = None;
    let events = h
        .wait_for(60, |e| {
            let mine = builtin_ids
                .iter()
                .all(|id| count(e, about(*id, "job_completed")) == 1);
            mine && count(e, completed) == 34
        })
        .await;
    let elapsed = started.elapsed();
    eprintln!("32 remote jobs at 0.5 s each, 8 in flight, 1 worker: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(8),
        "well under the serial 16 s: {elapsed:?}"
    );
    assert_eq!(
        stub.most.load(Ordering::SeqCst),
        8,
        "max_in_flight, not workers"
    );
    // The builtin jobs completed while remote calls were still running: remote completions
    // come after theirs.
    for (i, e) in events.iter().enumerate() {
        if builtin_ids
            .iter()
            .any(|id| about(*id, "job_completed")(&e.kind))
        {
            builtin_done_at = Some(i);
        }
    }
    let builtin_done_at = builtin_done_at.expect("builtin completed");
    let remote_after = events[builtin_done_at..]
        .iter()
        .filter(|e| {
            remote_ids
                .iter()
                .any(|id| about(*id, "job_completed")(&e.kind))
        })
        .count();
    assert!(
        remote_after >= 8,
        "only {remote_after} remote jobs completed after the builtin ones"
    );
    for id in remote_ids.iter().chain(&builtin_ids) {
        assert_eq!(h.state(*id), JobState::Completed);
    }
    assert_eq!(pool.handle().workers(), (0, 1));
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_remote_job_drops_its_request() {
    let h = harness();
    let (url, stub) = stub(Duration::from_secs(60)).await;
    let segmenters = remote(&url, 4);
    let svc = Arc::clone(segmenters.ml.get("http").expect("service"));
    let pool = h.start(segmenters, config(1));
    let id = h.enqueue_many(1, "http", 5).await[0];
    until(10, "the call", || stub.active.load(Ordering::SeqCst) == 1).await;
    h.queue.cancel(id).await.expect("cancel");
    pool.handle().stop_job(id);
    until(5, "the connection to close", || {
        stub.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(h.state(id), JobState::Cancelled);
    until(5, "the slot to come free", || {
        svc.in_flight.load(Ordering::SeqCst) == 0
    })
    .await;
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_remote_calls_within_the_grace() {
    let h = harness();
    let (url, stub) = stub(Duration::from_millis(800)).await;
    let pool = h.start(remote(&url, 4), config(1));
    let ids = h.enqueue_many(4, "http", 5).await;
    until(10, "four calls", || stub.active.load(Ordering::SeqCst) == 4).await;
    pool.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stub.dropped.load(Ordering::SeqCst), 0, "none cut short");
    h.wait_for(10, |e| count(e, completed) == 4).await;
    for id in ids {
        assert_eq!(h.state(id), JobState::Completed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_a_shutdown_drops_remote_calls_and_requeues_their_jobs() {
    let h = harness();
    let (url, stub) = stub(Duration::from_secs(60)).await;
    let pool = h.start(remote(&url, 4), config(1));
    let ids = h.enqueue_many(2, "http", 5).await;
    until(10, "two calls", || stub.active.load(Ordering::SeqCst) == 2).await;
    let started = Instant::now();
    pool.shutdown(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    until(5, "the connections to close", || {
        stub.dropped.load(Ordering::SeqCst) == 2
    })
    .await;
    h.wait_for(5, |e| {
        count(e, |k| matches!(k, EventKind::JobInterrupted { .. })) == 2
    })
    .await;
    for id in ids {
        let job = h.queue.get(id).expect("get").expect("exists");
        assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_program_runs_within_its_own_limit_beside_builtin_jobs() {
    let h = harness();
    let script = r#"sleep 1; echo '{"success":true,"polygons":[{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}]}' > "$1""#;
    let svc = crate::util::sh_service(
        h.dir.path(),
        script,
        Breaker::new(BreakerConfig::default(), SystemClock.now()),
        false,
    );
    let svc = Arc::into_inner(svc).expect("one owner").with_limit(3);
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("command").expect("name"), Arc::new(svc))]),
    };
    let pool = h.start(segmenters, config(1));
    let t0 = Instant::now();
    let program_ids = h.enqueue_many(6, "command", 5).await;
    h.wait_for(10, |e| count(e, started) >= 3).await;
    let builtin_id = h.enqueue_many(1, "builtin", 10).await[0];
    let events = h.wait_for(60, |e| count(e, completed) == 7).await;
    let elapsed = t0.elapsed();
    eprintln!("6 program runs of 1 s, 3 at once, 1 worker: {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(4500),
        "well under the serial 6 s: {elapsed:?}"
    );
    let first_done = |id: JobId| {
        events
            .iter()
            .position(|e| about(id, "job_completed")(&e.kind))
            .expect("completed")
    };
    let last_program = program_ids.iter().map(|id| first_done(*id)).max();
    assert!(
        first_done(builtin_id) < last_program.expect("some"),
        "the builtin job did not wait for the programs"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}
