//! Several ML services serving one segmenter, each behind its own breaker: they share the jobs
//! by least outstanding calls (weighted); one answering 503 with Retry-After is skipped without
//! its breaker counting a failure; one failing transiently passes its job to another in the same
//! attempt; one dying mid-run opens its breaker while the others finish every job; and jobs no
//! service can take are held without a lease, so builtin jobs behind them run.

use std::sync::atomic::AtomicU8;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use spheroseg::clock::{Clock, SystemClock};
use spheroseg::queue::Job;
use spheroseg::segment::breaker::{Breaker, BreakerConfig, State as BreakerState};
use spheroseg::segment::http::HttpSegmenter;
use spheroseg::segment::{Builtin, MlService};

use super::*;

const SQUARE: &str = r#"{"success":true,"results":{"polygons":[{"id":"p","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid"}]}}"#;

/// An outline with a hole, under the service's own ids, and its own features.
const WITH_IDS: &str = r##"{"success":true,"results":{"polygons":[{"id":"polygon-1a2b3c4d","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid","color":"#3357FF"},{"id":"hole-9f8e7d6c","points":[{"x":40,"y":40},{"x":50,"y":40},{"x":50,"y":50},{"x":40,"y":50}],"type":"internal","parentId":"polygon-1a2b3c4d","class":"hole"}],"features":{"model":"resunet-v3","scores":[0.97]}}}"##;

const OK: u8 = 0;
/// Answers `WITH_IDS`.
const IDS: u8 = 3;
/// 503 with `Retry-After: 30`.
const BUSY: u8 = 1;
/// 500.
const BROKEN: u8 = 2;

/// A `/segment` that answers as `mode` says after `delay`, counting its calls.
#[derive(Clone, Default)]
struct Stub {
    delay: Duration,
    mode: Arc<AtomicU8>,
    /// While set, calls wait before answering.
    gate: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

async fn segment(State(stub): State<Stub>) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    let now = stub.active.fetch_add(1, Ordering::SeqCst) + 1;
    stub.most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(stub.delay).await;
    while stub.gate.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stub.active.fetch_sub(1, Ordering::SeqCst);
    // No connection is kept: a stopped stub refuses the next call at once.
    let close = ("connection", "close");
    match stub.mode.load(Ordering::SeqCst) {
        BUSY => (
            StatusCode::SERVICE_UNAVAILABLE,
            [close, ("retry-after", "30")],
            "busy",
        )
            .into_response(),
        BROKEN => (StatusCode::INTERNAL_SERVER_ERROR, [close], "model crashed").into_response(),
        IDS => ([close, ("content-type", "application/json")], WITH_IDS).into_response(),
        _ => ([close, ("content-type", "application/json")], SQUARE).into_response(),
    }
}

/// A stub on port 0; aborting the handle stops it (its port refuses connections).
async fn start(delay: Duration, mode: u8) -> (String, Stub, tokio::task::JoinHandle<()>) {
    let stub = Stub {
        delay,
        mode: Arc::new(AtomicU8::new(mode)),
        ..Stub::default()
    };
    let app = Router::new()
        .route("/segment", post(segment))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, stub, server)
}

/// A service named `name` serving `resunet`.
fn service(name: &str, url: &str, max_in_flight: usize, weight: u32) -> Arc<MlService> {
    let client = HttpSegmenter::new(name, url, Duration::from_secs(20), false).expect("client");
    let breaker = BreakerConfig {
        min_calls: 2,
        open_base: Duration::from_secs(60),
        ..BreakerConfig::default()
    };
    Arc::new(
        MlService::remote(
            Arc::new(client),
            Breaker::new(breaker, SystemClock.now()),
            false,
            url,
        )
        .with_limit(max_in_flight)
        .with_weight(weight)
        .serving(SegmenterId::new("resunet").expect("name")),
    )
}

fn segmenters(services: &[(&str, &Arc<MlService>)]) -> Segmenters {
    Segmenters {
        builtin: Arc::new(Builtin),
        ml: services
            .iter()
            .map(|(n, s)| (SegmenterId::new(n).expect("name"), Arc::clone(s)))
            .collect(),
    }
}

impl Harness {
    /// Waits until every job of `ids` is finished, or fails after `secs`; returns them.
    async fn finished(&self, ids: &[JobId], secs: u64) -> Vec<Job> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let jobs: Vec<Job> = ids
                .iter()
                .map(|id| self.queue.get(*id).expect("get").expect("exists"))
                .collect();
            if jobs.iter().all(|j| j.state.is_finished()) {
                return jobs;
            }
            assert!(Instant::now() < deadline, "jobs not finished: {jobs:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Which service made each job's result.
    fn made_by(&self, id: JobId) -> String {
        let bytes = self.queue.result(id).expect("read").expect("stored");
        SegmentResult::from_bytes(&bytes)
            .expect("decodes")
            .segmenter
    }
}

fn breaker_state(svc: &MlService) -> (BreakerState, u64) {
    let snap = svc
        .breaker
        .lock()
        .expect("lock")
        .snapshot(SystemClock.now());
    (snap.state, snap.stats.failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_services_share_the_jobs_by_least_outstanding_calls() {
    for n in [2usize, 3] {
        let h = harness();
        let names = ["gpu-a", "gpu-b", "gpu-c"];
        let mut stubs = Vec::new();
        let mut services = Vec::new();
        for name in &names[..n] {
            let (url, stub, _server) = start(Duration::from_millis(100), OK).await;
            stubs.push(stub);
            services.push((*name, service(name, &url, 2, 1)));
        }
        let refs: Vec<(&str, &Arc<MlService>)> = services.iter().map(|(n, s)| (*n, s)).collect();
        let pool = h.start(segmenters(&refs), config(1));
        let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 12 * n, 5).await;
        let jobs = h.finished(&ids, 120).await;
        assert!(
            jobs.iter()
                .all(|j| j.state == JobState::Completed && j.attempts == 1)
        );
        for (stub, name) in stubs.iter().zip(names) {
            let calls = stub.calls.load(Ordering::SeqCst);
            let made = ids.iter().filter(|id| h.made_by(**id) == name).count();
            eprintln!(
                "{n} services: {name} took {calls} calls, at most {} at once",
                stub.most.load(Ordering::SeqCst)
            );
            assert_eq!(made, calls, "{name}: every call made one result");
            assert!(calls >= 3, "{name} took a share: {calls} of {}", 12 * n);
            assert!(
                stub.most.load(Ordering::SeqCst) <= 2,
                "{name} within its limit"
            );
        }
        pool.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_is_weighted() {
    let h = harness();
    let (url_a, a, _sa) = start(Duration::from_millis(300), OK).await;
    let (url_b, b, _sb) = start(Duration::from_millis(300), OK).await;
    // Room for every job at once: only the weights decide (3 calls to 1 while all are out).
    let (svc_a, svc_b) = (
        service("heavy", &url_a, 32, 3),
        service("light", &url_b, 32, 1),
    );
    let pool = h.start(
        segmenters(&[("heavy", &svc_a), ("light", &svc_b)]),
        config(1),
    );
    let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 24, 5).await;
    let jobs = h.finished(&ids, 120).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Completed));
    let (heavy, light) = (
        a.calls.load(Ordering::SeqCst),
        b.calls.load(Ordering::SeqCst),
    );
    eprintln!("weights 3 and 1: {heavy} and {light} calls");
    assert!(
        heavy >= 2 * light,
        "the weight-3 service took most: {heavy} against {light}"
    );
    assert!(light >= 1, "the weight-1 service took some");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answering_503_with_retry_after_is_skipped_without_a_breaker_failure() {
    let h = harness();
    let (url_a, busy, _sa) = start(Duration::from_millis(20), BUSY).await;
    let (url_b, fine, _sb) = start(Duration::from_millis(20), OK).await;
    let (svc_a, svc_b) = (
        service("busy", &url_a, 2, 1),
        service("fine", &url_b, 16, 1),
    );
    let pool = h.start(segmenters(&[("busy", &svc_a), ("fine", &svc_b)]), config(1));
    let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 10, 5).await;
    let jobs = h.finished(&ids, 60).await;
    for j in &jobs {
        assert_eq!((j.state, j.attempts), (JobState::Completed, 1), "{j:?}");
        assert_eq!(h.made_by(j.id), "fine");
    }
    let asked = busy.calls.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&asked),
        "asked until it said to wait: {asked} calls"
    );
    assert_eq!(fine.calls.load(Ordering::SeqCst), 10);
    assert_eq!(
        breaker_state(&svc_a),
        (BreakerState::Closed, 0),
        "a 503 with Retry-After is no failure"
    );
    assert!(svc_a.skipped(SystemClock.now()), "skipped for its 30 s");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_transiently_passes_the_job_on_without_spending_an_attempt() {
    let h = harness();
    let (url_a, broken, _sa) = start(Duration::from_millis(20), BROKEN).await;
    let (url_b, _fine, _sb) = start(Duration::from_millis(20), OK).await;
    // The broken one comes first in name order and the other always has room.
    let (svc_a, svc_b) = (
        service("a-broken", &url_a, 8, 1),
        service("b-fine", &url_b, 16, 1),
    );
    let pool = h.start(
        segmenters(&[("a-broken", &svc_a), ("b-fine", &svc_b)]),
        config(1),
    );
    let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 8, 5).await;
    let jobs = h.finished(&ids, 60).await;
    for j in &jobs {
        assert_eq!((j.state, j.attempts), (JobState::Completed, 1), "{j:?}");
        assert_eq!(h.made_by(j.id), "b-fine");
    }
    let failed = broken.calls.load(Ordering::SeqCst);
    assert!(failed >= 1, "the broken service was tried");
    let (_, failures) = breaker_state(&svc_a);
    assert_eq!(failures, failed as u64, "its breaker heard every failure");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_dying_mid_run_opens_its_breaker_and_the_others_finish_everything() {
    let h = harness();
    let mut servers = Vec::new();
    let mut services = Vec::new();
    let mut stubs = Vec::new();
    for name in ["gpu-a", "gpu-b", "gpu-c"] {
        let (url, stub, server) = start(Duration::from_millis(50), OK).await;
        servers.push(server);
        stubs.push(stub);
        services.push((name, service(name, &url, 2, 1)));
    }
    let refs: Vec<(&str, &Arc<MlService>)> = services.iter().map(|(n, s)| (*n, s)).collect();
    let pool = h.start(segmenters(&refs), config(1));
    let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 60, 5).await;
    // Once it has answered a few, gpu-c dies: its port refuses connections.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stubs[2].calls.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "gpu-c got no calls");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    servers[2].abort();
    let jobs = h.finished(&ids, 120).await;
    let failed = jobs
        .iter()
        .filter(|j| j.state != JobState::Completed)
        .count();
    assert_eq!(failed, 0, "every job completed: {jobs:#?}");
    let (state, failures) = breaker_state(&services[2].1);
    assert_eq!(state, BreakerState::Open, "{failures} failures");
    let by_c = ids.iter().filter(|id| h.made_by(**id) == "gpu-c").count();
    eprintln!(
        "gpu-c made {by_c} results before it died; attempts beyond the first: {}",
        jobs.iter().map(|j| j.attempts - 1).sum::<u32>()
    );
    for (svc, _) in [(&services[0].1, 0), (&services[1].1, 1)] {
        assert_eq!(breaker_state(svc).0, BreakerState::Closed);
    }
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_no_service_can_take_are_held_unleased_and_builtin_jobs_behind_them_run() {
    let h = harness();
    let (url, stub, _s) = start(Duration::from_millis(10), OK).await;
    let svc = service("gpu-a", &url, 4, 1);
    let _ = svc
        .breaker
        .lock()
        .expect("lock")
        .force_open(SystemClock.now());
    let pool = h.start(segmenters(&[("gpu-a", &svc)]), config(1));
    let held = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 5, 9).await;
    let builtin = crate::util::enqueue_lumen(&h.queue, &h.images, "builtin", 2, 5).await;
    let done = h.finished(&builtin, 60).await;
    assert!(done.iter().all(|j| j.state == JobState::Completed));
    for id in &held {
        let j = h.queue.get(*id).expect("get").expect("exists");
        assert_eq!((j.state, j.attempts), (JobState::Delayed, 0), "{j:?}");
        let code = j.last_error.as_ref().map(|e| e.code.to_string());
        assert_eq!(code.as_deref(), Some("breaker-open"));
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);
    pool.handle().reset_breaker("gpu-a").await.expect("exists");
    let jobs = h.finished(&held, 60).await;
    assert!(
        jobs.iter()
            .all(|j| (j.state, j.attempts) == (JobState::Completed, 1))
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_polygon_ids_and_features_are_kept_in_the_result() {
    let h = harness();
    let (url, _stub, _s) = start(Duration::from_millis(1), IDS).await;
    let svc = service("gpu-a", &url, 2, 1);
    let pool = h.start(segmenters(&[("gpu-a", &svc)]), config(1));
    let ids = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 1, 5).await;
    let jobs = h.finished(&ids, 60).await;
    assert_eq!(jobs[0].state, JobState::Completed, "{:?}", jobs[0]);
    let bytes = h.queue.result(ids[0]).expect("read").expect("stored");
    let r = SegmentResult::from_bytes(&bytes).expect("decodes");
    assert_eq!((r.objects.len(), r.objects[0].holes.len()), (1, 1));
    let v = serde_json::to_value(r.to_json()).expect("json");
    assert_eq!(v["polygons"][0]["id"], "polygon-1a2b3c4d");
    assert_eq!(v["polygons"][1]["id"], "hole-9f8e7d6c");
    assert_eq!(v["polygons"][1]["parentId"], "polygon-1a2b3c4d");
    assert_eq!(v["metrics"][0]["object_id"], "polygon-1a2b3c4d");
    assert_eq!(
        v["features"],
        serde_json::json!({"model": "resunet-v3", "scores": [0.97]})
    );
    assert_eq!(
        v["metrics"][0]["area"], 2400.0,
        "measured by spheroseg, hole cut out"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_service_does_not_stop_builtin_jobs_of_its_priority() {
    let h = harness();
    let (url, stub, _s) = start(Duration::from_millis(1), OK).await;
    stub.gate.store(true, Ordering::SeqCst);
    let svc = service("gpu-a", &url, 1, 1);
    let pool = h.start(segmenters(&[("gpu-a", &svc)]), config(1));
    let ml = crate::util::enqueue_lumen(&h.queue, &h.images, "resunet", 3, 5).await;
    let builtin = crate::util::enqueue_lumen(&h.queue, &h.images, "builtin", 2, 5).await;
    // The service's one slot is taken and its call waits; the builtin jobs behind run anyway.
    let done = h.finished(&builtin, 60).await;
    assert!(done.iter().all(|j| j.state == JobState::Completed));
    let waiting: Vec<(JobState, u32)> = ml[1..]
        .iter()
        .map(|id| {
            let j = h.queue.get(*id).expect("get").expect("exists");
            (j.state, j.attempts)
        })
        .collect();
    assert_eq!(
        waiting,
        vec![(JobState::Queued, 0); 2],
        "queued in order, untouched"
    );
    stub.gate.store(false, Ordering::SeqCst);
    let jobs = h.finished(&ml, 60).await;
    assert!(
        jobs.iter()
            .all(|j| (j.state, j.attempts) == (JobState::Completed, 1))
    );
    assert_eq!(stub.most.load(Ordering::SeqCst), 1);
    pool.shutdown(Duration::from_secs(5)).await;
}
