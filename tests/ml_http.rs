//! The `http` segmenter against a stub ML service (axum on 127.0.0.1:0) that answers right, slow,
//! with 500, 429 or 400, with garbage, with `success: false`, with polygons outside the image,
//! drops the connection, or is not there at all; its health endpoint; and a pool running jobs on
//! it through the breaker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use spheroseg::clock::{Clock, SystemClock};
use spheroseg::events::{EventBus, EventKind, Missed};
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{ImageRef, JobState, NewJob};
use spheroseg::segment::SegmenterId;
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::http::HttpSegmenter;
use spheroseg::segment::{
    Builtin, Control, DecodeLimits, Failure, Input, SegmentParams, SegmentResult, Segmenter, Stop,
};
use spheroseg::segment::{MlService, Segmenters};

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Ok,
    Slow(Duration),
    Status(u16),
    Garbage,
    NotSuccess,
    OutOfImage,
    Drop,
}

/// (file name, params JSON, image bytes length, image_path) of a call.
type Call = (String, String, usize, String);

#[derive(Clone)]
struct Stub {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    /// What the last call carried.
    last: Arc<Mutex<Option<Call>>>,
    healthy: Arc<Mutex<bool>>,
}

const SQUARE: &str = r##"{"success":true,"results":{"polygons":[{"id":"polygon-1a2b","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid","color":"#3357FF"}],"features":{"x":1}}}"##;

async fn segment(State(stub): State<Stub>, req: Request) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    let is_multipart = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut record = (String::new(), String::new(), 0usize, String::new());
    if is_multipart {
        let mut mp = Multipart::from_request(req, &()).await.expect("multipart");
        while let Some(field) = mp.next_field().await.expect("field") {
            match field.name() {
                Some("image") => {
                    record.0 = field.file_name().unwrap_or_default().to_owned();
                    record.2 = field.bytes().await.expect("bytes").len();
                }
                Some("params") => record.1 = field.text().await.expect("text"),
                _ => {}
            }
        }
    } else {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        record.3 = v["image_path"].as_str().unwrap_or_default().to_owned();
    }
    *stub.last.lock().expect("lock") = Some(record);
    let mode = stub.mode.lock().expect("lock").clone();
    match mode {
        Mode::Ok => ([("content-type", "application/json")], SQUARE).into_response(),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            ([("content-type", "application/json")], SQUARE).into_response()
        }
        Mode::Status(s) => (StatusCode::from_u16(s).expect("status"), "overloaded").into_response(),
        Mode::Garbage => "<html>not json".into_response(),
        Mode::NotSuccess => r#"{"success":false,"error":"Model file not found"}"#.into_response(),
        Mode::OutOfImage => SQUARE.replace("70", "7000").into_response(),
        Mode::Drop => panic!("the stub drops this connection"),
    }
}

async fn health(State(stub): State<Stub>) -> Response {
    if *stub.healthy.lock().expect("lock") {
        (
            StatusCode::OK,
            r#"{"status":"healthy","model_exists":true}"#,
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"degraded"}"#).into_response()
    }
}

async fn stub() -> (String, Stub) {
    let stub = Stub {
        mode: Arc::new(Mutex::new(Mode::Ok)),
        calls: Arc::new(AtomicUsize::new(0)),
        last: Arc::new(Mutex::new(None)),
        healthy: Arc::new(Mutex::new(true)),
    };
    let app = Router::new()
        .route("/segment", post(segment))
        .route("/health", get(health))
        .with_state(stub.clone());
    (crate::util::serve_stub(app).await, stub)
}

use crate::util::fixture;

/// Calls the segmenter off the runtime (it blocks on its handle, as a worker thread does).
async fn call(seg: &Arc<HttpSegmenter>, timeout: Duration) -> Result<SegmentResult, Failure> {
    let seg = Arc::clone(seg);
    tokio::task::spawn_blocking(move || {
        let path = fixture("spheroid_lumen_8bit.png");
        let bytes = std::fs::read(&path).expect("fixture");
        let image = ImageRef {
            hash: "h".into(),
            name: "well B2.png".into(),
            width: 384,
            height: 384,
            bytes: bytes.len() as u64,
        };
        let params = SegmentParams {
            pixel_size_um: Some(0.5),
            ..SegmentParams::default()
        };
        let limits = DecodeLimits::default();
        let input = Input {
            bytes: &bytes,
            path: &path,
            name: &image.name,
            params: &params,
            limits: &limits,
            budget: &Default::default(),
            decoded: None,
        };
        let stop = Stop::default();
        let mut progress = |_| {};
        let mut control = Control {
            stop: &stop,
            deadline: Instant::now() + timeout,
            progress: &mut progress,
        };
        seg.segment(&input, &mut control)
    })
    .await
    .expect("call thread")
}

fn code(f: &Failure) -> (String, bool) {
    (f.code().expect("a code").to_owned(), f.is_transient())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_classified() {
    let (url, stub) = stub().await;
    let seg =
        Arc::new(HttpSegmenter::new("http", &url, Duration::from_secs(10), false).expect("client"));

    let r = call(&seg, Duration::from_secs(10)).await.expect("ok");
    assert_eq!(r.segmenter, "http");
    assert_eq!(r.metrics[0].area, 2500.0);
    assert!(
        r.metrics[0].calibrated.is_some(),
        "measured with the job's pixel size"
    );
    let (name, params, len, _) = stub.last.lock().expect("lock").clone().expect("called");
    assert_eq!(name, "well B2.png");
    assert!(len > 1000);
    let params: serde_json::Value = serde_json::from_str(&params).expect("params part is JSON");
    assert_eq!(params["pixel_size_um"], 0.5);

    let cases = [
        (Mode::Status(500), ("ml-unavailable", true)),
        (Mode::Status(503), ("ml-unavailable", true)),
        (Mode::Status(429), ("ml-unavailable", true)),
        (Mode::Status(400), ("ml-rejected", false)),
        (Mode::Status(413), ("ml-rejected", false)),
        // Output that is not the contract's: classified as the command segmenter's is.
        (Mode::Garbage, ("ml-malformed", true)),
        (Mode::NotSuccess, ("ml-error", false)),
        (Mode::OutOfImage, ("polygons-out-of-image", false)),
        (Mode::Drop, ("ml-unavailable", true)),
    ];
    for (mode, (want, transient)) in cases {
        *stub.mode.lock().expect("lock") = mode.clone();
        let f = call(&seg, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(code(&f), (want.to_owned(), transient), "{mode:?}: {f:?}");
        // Down or overloaded: the service could not take the job, which spends no attempt.
        let unavailable = matches!(mode, Mode::Status(503 | 429));
        assert_eq!(
            matches!(f, Failure::Unavailable { .. }),
            unavailable,
            "{mode:?}: {f:?}"
        );
    }
    *stub.mode.lock().expect("lock") = Mode::NotSuccess;
    let f = call(&seg, Duration::from_secs(10)).await.unwrap_err();
    assert!(
        f.message()
            .expect("message")
            .contains("Model file not found")
    );

    *stub.mode.lock().expect("lock") = Mode::Slow(Duration::from_secs(5));
    let started = Instant::now();
    let f = call(&seg, Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(code(&f), ("timeout".to_owned(), true));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_there_is_transient_and_down() {
    // A port that was just free: nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let seg = Arc::new(
        HttpSegmenter::new(
            "http",
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(5),
            false,
        )
        .expect("client"),
    );
    let f = call(&seg, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(code(&f), ("ml-unavailable".to_owned(), true));
    let h = seg.health().await;
    assert!(!h.up && h.error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_shared_paths() {
    let (url, stub) = stub().await;
    let seg = HttpSegmenter::new("http", &url, Duration::from_secs(5), true).expect("client");
    let h = seg.health().await;
    assert!(h.up);
    assert_eq!(h.body.expect("json")["status"], "healthy");
    *stub.healthy.lock().expect("lock") = false;
    let h = seg.health().await;
    assert_eq!((h.up, h.status), (false, Some(503)));
    assert_eq!(h.body.expect("json")["status"], "degraded");

    let seg = Arc::new(seg);
    call(&seg, Duration::from_secs(5)).await.expect("ok");
    let (_, _, len, path) = stub.last.lock().expect("lock").clone().expect("called");
    assert_eq!(len, 0, "no image bytes sent");
    assert!(path.ends_with("spheroid_lumen_8bit.png"), "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_runs_http_jobs_through_the_breaker() {
    let (url, stub) = stub().await;
    *stub.mode.lock().expect("lock") = Mode::Status(500);
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let svc = Arc::new(MlService::remote(
        Arc::new(HttpSegmenter::new("http", &url, Duration::from_secs(5), false).expect("client")),
        Breaker::new(
            BreakerConfig {
                min_calls: 2,
                open_base: Duration::from_millis(1200),
                ..BreakerConfig::default()
            },
            SystemClock.now(),
        ),
        false,
        &url,
    ));
    svc.check_health().await;
    let health = svc
        .last_health
        .lock()
        .expect("lock")
        .clone()
        .expect("asked");
    assert!(health.up);
    let pool = Pool::start(
        queue.clone(),
        images.clone(),
        events.clone(),
        Segmenters {
            builtin: Arc::new(Builtin),
            ml: HashMap::from([(SegmenterId::new("http").expect("name"), Arc::clone(&svc))]),
        },
        PoolConfig {
            ml_timeout: Duration::from_secs(10),
            ..crate::util::pool_config(2)
        },
        Arc::new(SystemClock),
    )
    .expect("pool");
    let image = images
        .put_path(&fixture("spheroid_lumen_8bit.png"))
        .expect("stored")
        .image;
    let jobs: Vec<NewJob> = (0..4)
        .map(|_| NewJob {
            image: image.clone(),
            segmenter: SegmenterId::new("http").expect("name"),
            ..NewJob::default()
        })
        .collect();
    let ids: Vec<_> = queue
        .enqueue_batch(jobs)
        .await
        .expect("enqueued")
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    wait(
        &events,
        |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "open"),
        1,
    )
    .await;
    let calls_when_open = stub.calls.load(Ordering::SeqCst);
    *stub.mode.lock().expect("lock") = Mode::Ok;
    wait(&events, |k| matches!(k, EventKind::JobCompleted { .. }), 4).await;
    for id in &ids {
        let job = queue.get(*id).expect("get").expect("exists");
        assert_eq!(job.state, JobState::Completed);
        let r = SegmentResult::from_bytes(&queue.result(*id).expect("read").expect("stored"))
            .expect("decodes");
        assert_eq!(r.segmenter, "http");
    }
    assert!(calls_when_open >= 2);
    let snap = svc
        .breaker
        .lock()
        .expect("lock")
        .snapshot(SystemClock.now());
    assert_eq!(snap.state, spheroseg::segment::breaker::State::Closed);
    pool.shutdown(Duration::from_secs(5)).await;
}

/// Waits until `n` events match, or fails after a minute.
async fn wait(events: &EventBus, pred: impl Fn(&EventKind) -> bool, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Missed::Events(seen) = events.subscribe(Some(0)).missed else {
            panic!("resync")
        };
        if seen.iter().filter(|e| pred(&e.kind)).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
