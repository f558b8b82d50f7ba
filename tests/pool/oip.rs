//! Open Inference Protocol (KServe V2) services against a real server, Seldon MLServer, with the
//! threshold runtime of `tests/ml/mlserver/` standing in for the ResUNet: a job completes with
//! the synthetic spheroid's outline from an FP32 probability map of another size than the image
//! (the scaling recorded), from a UINT8 label map of an NHWC model at the image's own size, and
//! from a BYTES tensor of polygon JSON; the binary request MLServer cannot read falls back to
//! JSON, and a model whose metadata asks for what spheroseg cannot send fails its job with a
//! message naming the tensor. A server killed mid-run opens the breaker; its jobs wait (no
//! attempt spent, none failed) and finish once it is back. Three servers serving one segmenter
//! share 60 jobs by least outstanding calls; one killed mid-run opens its breaker while the
//! others finish everything, none failed, and once back it takes work again. Skipped without the MLServer venv
//! unless CI requires it.
//!
//! MLServer reads no binary tensors, so a stub that speaks only the binary extension (as the
//! Triton documentation describes it) checks that path: header length, `binary_data_size`, the
//! raw data after the JSON, and a binary output back.

use std::time::Duration;

use spheroseg::clock::{Clock, SystemClock};
use spheroseg::morphology::rasterize;
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::oip::{OipClient, OipSettings};
use spheroseg::segment::remote::Remote;
use spheroseg::segment::{Builtin, MlService};
use spheroseg::synth::{Kind, Scene, iou};

use super::*;
use crate::util::mlserver::{MlServer, Model, program};
use crate::util::watch::{encode_png, gray8};

/// The settings of an `oip` service for `model` (binary requests, threshold 0.5).
pub(crate) fn settings(model: &str) -> OipSettings {
    OipSettings {
        model: model.to_owned(),
        version: None,
        output: None,
        threshold: 0.5,
        binary: true,
    }
}

/// The client for `settings` on the server at `url`.
pub(crate) fn oip_client(url: &str, settings: OipSettings) -> Arc<OipClient> {
    Arc::new(OipClient::new("http", url, Duration::from_secs(60), settings).expect("client"))
}

/// An `oip` service on the server at `url`.
pub(crate) fn oip_service(url: &str, settings: OipSettings) -> MlService {
    MlService::from_remote(
        Remote::Oip(oip_client(url, settings)),
        Breaker::new(BreakerConfig::default(), SystemClock.now()),
        false,
        url,
    )
}

/// A synthetic spheroid as a PNG, with its truth mask.
pub(crate) fn spheroid(seed: u64, size: u32) -> (Vec<u8>, Vec<u8>) {
    let (img, truth) = Scene::random(seed, size, 8, Kind::Plain).render();
    (encode_png(size, size, gray8(&img)), truth)
}

impl Harness {
    pub(crate) async fn enqueue_bytes(&self, png: &[u8], name: &str, segmenter: &str) -> JobId {
        let image = self.images.put(png, name).expect("stored").image;
        let job = NewJob {
            image,
            segmenter: SegmenterId::new(segmenter).expect("name"),
            max_attempts: Some(3),
            ..NewJob::default()
        };
        self.queue.enqueue(job).await.expect("enqueued").job.id
    }
}

fn finished(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::JobCompleted { .. } | EventKind::JobFailed { .. }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_models_on_mlserver_give_the_synthetic_outline_and_name_mismatched_tensors() {
    let Some(bin) = program() else { return };
    let server = MlServer::start(
        &bin,
        &[
            // FP32 NCHW at 128², the image is 192²: resized there and back.
            Model::map("prob", 128),
            // UINT8 NHWC at the image's own size, a UINT8 label map back.
            Model {
                name: "labels",
                input: ("pixels", "UINT8", vec![1, -1, -1, 1]),
                output: ("labels", "UINT8"),
                reply: "map",
                sleep_ms: 0,
            },
            // The replaced contract's polygon JSON in a BYTES tensor.
            Model {
                name: "outlines",
                input: ("pixels", "UINT8", vec![-1, -1]),
                output: ("polygons", "BYTES"),
                reply: "polygons",
                sleep_ms: 0,
            },
            Model {
                name: "wrong",
                input: ("image", "INT64", vec![-1, 1, 64, 64]),
                output: ("mask", "FP32"),
                reply: "map",
                sleep_ms: 0,
            },
        ],
    )
    .await;
    let url = server.url.clone();
    let prob = Arc::new(oip_service(&url, settings("prob")));
    let json = OipSettings {
        output: Some("mask".into()),
        binary: false,
        ..settings("prob")
    };
    let services = [
        ("prob", Arc::clone(&prob)),
        ("json", Arc::new(oip_service(&url, json))),
        ("labels", Arc::new(oip_service(&url, settings("labels")))),
        (
            "outlines",
            Arc::new(oip_service(&url, settings("outlines"))),
        ),
        ("wrong", Arc::new(oip_service(&url, settings("wrong")))),
    ];
    let h = harness();
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: services
            .iter()
            .map(|(n, s)| (SegmenterId::new(n).expect("name"), Arc::clone(s)))
            .collect(),
    };
    let pool = h.start(segmenters, config(1));
    let (png, truth) = spheroid(3, 192);
    let mut ids = Vec::new();
    for (name, _) in &services {
        ids.push((
            *name,
            h.enqueue_bytes(&png, &format!("{name}.png"), name).await,
        ));
    }
    h.wait_for(120, |e| count(e, finished) == services.len())
        .await;
    for (name, id) in ids {
        let job = h.queue.get(id).expect("get").expect("exists");
        if name == "wrong" {
            assert_eq!(job.state, JobState::Failed, "{job:?}");
            let err = job.last_error.expect("an error");
            assert_eq!(err.code, "ml-model-mismatch");
            assert!(
                err.message.contains("\"image\"") && err.message.contains("INT64"),
                "{}",
                err.message
            );
            continue;
        }
        assert_eq!(
            job.state,
            JobState::Completed,
            "{name}: {:?}",
            job.last_error
        );
        let bytes = h.queue.result(id).expect("read").expect("stored");
        let r = SegmentResult::from_bytes(&bytes).expect("decodes");
        // The spheroid, and at most a dark speck of debris the threshold model keeps.
        assert!(!r.objects.is_empty(), "{name}: no objects");
        let score = iou(&rasterize(&r.objects, 192, 192), &truth);
        eprintln!("{name}: {} objects, IoU {score:.3}", r.objects.len());
        assert!(score >= 0.9, "{name}: IoU {score}");
        let scaled = r.ml.and_then(|m| m.model_input).map(|s| (s.image, s.model));
        match name {
            "prob" | "json" => assert_eq!(scaled, Some(((192, 192), (128, 128))), "{name}"),
            "labels" => assert_eq!(scaled, Some(((192, 192), (192, 192)))),
            _ => assert_eq!(scaled, None, "{name}: polygons need no scaling"),
        }
    }
    // MLServer 1.7 cannot read the binary extension: the request went again as JSON, and so do
    // all later ones.
    let Some(Remote::Oip(client)) = prob.remote.as_deref() else {
        panic!("an oip service")
    };
    assert!(!client.sends_binary());
    pool.shutdown(Duration::from_secs(5)).await;
}

/// Binary requests the stub took.
#[derive(Clone, Default)]
struct BinaryStub(Arc<AtomicUsize>);

async fn binary_metadata() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "name": "disc", "versions": ["1"], "platform": "stub",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 1, -1, -1]}],
        "outputs": [{"name": "mask", "datatype": "FP32", "shape": [-1, 1, -1, -1]}],
    }))
}

/// Answers a disc of radius a quarter of the image, centred, as binary FP32; refuses JSON.
async fn binary_infer(
    axum::extract::State(stub): axum::extract::State<BinaryStub>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(n) = headers
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    else {
        return (axum::http::StatusCode::BAD_REQUEST, "binary only").into_response();
    };
    let head: serde_json::Value = serde_json::from_slice(&body[..n]).expect("json header");
    let input = &head["inputs"][0];
    let shape: Vec<usize> = serde_json::from_value(input["shape"].clone()).expect("shape");
    let (h, w) = (shape[2], shape[3]);
    assert_eq!(input["datatype"], "UINT8");
    assert_eq!(input["parameters"]["binary_data_size"], w * h);
    assert_eq!(body.len() - n, w * h, "the raw data follows the JSON");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data"], true);
    stub.0.fetch_add(1, Ordering::SeqCst);
    let r = w.min(h) as f64 / 4.0;
    let mut raw = Vec::with_capacity(4 * w * h);
    for y in 0..h {
        for x in 0..w {
            let d = (x as f64 + 0.5 - w as f64 / 2.0).hypot(y as f64 + 0.5 - h as f64 / 2.0);
            raw.extend(f32::from(u8::from(d < r)).to_le_bytes());
        }
    }
    let json = serde_json::json!({
        "model_name": "disc",
        "outputs": [{"name": "mask", "datatype": "FP32", "shape": [1, 1, h, w],
                     "parameters": {"binary_data_size": raw.len()}}],
    })
    .to_string();
    let mut out = json.clone().into_bytes();
    out.extend(raw);
    (
        [
            ("inference-header-content-length", json.len().to_string()),
            ("content-type", "application/octet-stream".to_owned()),
        ],
        out,
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_speaks_the_binary_extension_gets_and_answers_binary_tensors() {
    use axum::routing::{get, post};
    let stub = BinaryStub::default();
    let app = axum::Router::new()
        .route("/v2/models/disc/versions/1", get(binary_metadata))
        .route("/v2/models/disc/versions/1/infer", post(binary_infer))
        .with_state(stub.clone());
    let url = crate::util::serve_stub(app).await;
    let versioned = OipSettings {
        version: Some("1".into()),
        ..settings("disc")
    };
    let svc = oip_service(&url, versioned);
    let svc = Arc::new(svc);
    let h = harness();
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("disc").expect("name"), Arc::clone(&svc))]),
    };
    let pool = h.start(segmenters, config(1));
    let (png, _) = spheroid(5, 160);
    let id = h.enqueue_bytes(&png, "disc.png", "disc").await;
    h.wait_for(60, |e| count(e, finished) == 1).await;
    let job = h.queue.get(id).expect("get").expect("exists");
    assert_eq!(job.state, JobState::Completed, "{:?}", job.last_error);
    let r = SegmentResult::from_bytes(&h.queue.result(id).expect("read").expect("stored"))
        .expect("decodes");
    assert_eq!(r.objects.len(), 1);
    let area = rasterize(&r.objects, 160, 160)
        .iter()
        .filter(|&&v| v != 0)
        .count() as f64;
    let disc = std::f64::consts::PI * 40.0 * 40.0;
    assert!((area - disc).abs() / disc < 0.03, "{area} vs {disc}");
    assert_eq!(stub.0.load(Ordering::SeqCst), 1);
    let Some(Remote::Oip(client)) = svc.remote.as_deref() else {
        panic!("an oip service")
    };
    assert!(
        client.sends_binary(),
        "a server that took binary keeps getting it"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlserver_killed_mid_run_opens_the_breaker_and_its_jobs_finish_when_it_is_back() {
    let Some(bin) = program() else { return };
    let mut server = MlServer::start(
        &bin,
        &[Model {
            sleep_ms: 100,
            ..Model::map("prob", 64)
        }],
    )
    .await;
    let breaker = BreakerConfig {
        min_calls: 3,
        open_base: Duration::from_millis(500),
        open_cap: Duration::from_secs(2),
        ..BreakerConfig::default()
    };
    let svc = Arc::new(
        MlService::from_remote(
            Remote::Oip(oip_client(&server.url, settings("prob"))),
            Breaker::new(breaker, SystemClock.now()),
            false,
            &server.url,
        )
        .with_limit(2),
    );
    let h = harness();
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("prob").expect("name"), Arc::clone(&svc))]),
    };
    let pool = h.start(segmenters, config(1));
    const N: usize = 12;
    let mut ids = Vec::new();
    for seed in 0..N as u64 {
        let (png, _) = spheroid(seed, 96);
        ids.push(h.enqueue_bytes(&png, &format!("{seed}.png"), "prob").await);
    }
    h.wait_for(60, |e| count(e, completed) >= 2).await;
    server.kill();
    h.wait_for(60, |e| {
        count(
            e,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "open"),
        ) >= 1
    })
    .await;
    server.restart().await;
    let events = h.wait_for(120, |e| count(e, completed) == N).await;
    for id in ids {
        assert_eq!(h.state(id), JobState::Completed);
    }
    assert_eq!(
        count(&events, |k| matches!(k, EventKind::JobFailed { .. })),
        0
    );
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "closed"),
        ) >= 1,
        "the breaker closes again once the server is back"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_oip_in_the_configuration_runs_http_jobs_on_mlserver() {
    let Some(bin) = program() else { return };
    let server = MlServer::start(&bin, &[Model::map("resunet", 96)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("spheroseg.toml");
    let toml = format!(
        "[ml]\nurl = \"{}\"\nprotocol = \"oip\"\nmodel = \"resunet\"\noutput = \"mask\"\n",
        server.url
    );
    std::fs::write(&file, toml).expect("write");
    let config = spheroseg::config::Config::load(&spheroseg::config::Sources {
        file: Some(file),
        env: HashMap::new(),
        flags: spheroseg::config::Layer::default(),
    })
    .expect("config");
    let segmenters = config.segmenters(&SystemClock).expect("segmenters");
    let h = harness();
    let pool = h.start(segmenters, crate::util::pool_config(1));
    let (png, truth) = spheroid(9, 128);
    let id = h.enqueue_bytes(&png, "well.png", "http").await;
    h.wait_for(60, |e| count(e, finished) == 1).await;
    assert_eq!(h.state(id), JobState::Completed);
    let r = SegmentResult::from_bytes(&h.queue.result(id).expect("read").expect("stored"))
        .expect("decodes");
    assert!(iou(&rasterize(&r.objects, 128, 128), &truth) >= 0.9);
    assert_eq!(r.segmenter, "http");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_mlservers_share_the_jobs_and_one_killed_mid_run_costs_no_job() {
    let Some(bin) = program() else { return };
    let model = || Model {
        sleep_ms: 30,
        ..Model::map("resunet", 64)
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(MlServer::start(&bin, &[model()]).await);
    }
    let resunet = SegmenterId::new("resunet").expect("name");
    let breaker = BreakerConfig {
        min_calls: 2,
        open_base: Duration::from_millis(500),
        open_cap: Duration::from_secs(1),
        ..BreakerConfig::default()
    };
    let mut ml = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let name = format!("gpu{i}");
        let client = OipClient::new(
            &name,
            &server.url,
            Duration::from_secs(30),
            settings("resunet"),
        )
        .expect("client");
        let svc = MlService::from_remote(
            Remote::Oip(Arc::new(client)),
            Breaker::new(breaker, SystemClock.now()),
            false,
            &server.url,
        )
        .with_limit(2)
        .serving(resunet.clone());
        ml.insert(SegmenterId::new(&name).expect("name"), Arc::new(svc));
    }
    let h = harness();
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml,
    };
    let pool = h.start(segmenters, config(1));
    let (png, _) = spheroid(21, 64);
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(h.enqueue_bytes(&png, &format!("{i}.png"), "resunet").await);
    }
    h.wait_for(120, |e| count(e, completed) >= 10).await;
    servers[0].kill();
    let opened = |e: &[Arc<Event>]| {
        count(
            e,
            |k| matches!(k, EventKind::BreakerChanged { service, to, .. } if service == "gpu0" && to == "open"),
        )
    };
    h.wait_for(120, |e| opened(e) >= 1 && count(e, completed) == 60)
        .await;
    let by = |name: &str| {
        ids.iter()
            .filter(|id| {
                let bytes = h.queue.result(**id).expect("read").expect("stored");
                SegmentResult::from_bytes(&bytes)
                    .expect("decodes")
                    .segmenter
                    == name
            })
            .count()
    };
    for id in &ids {
        assert_eq!(h.state(*id), JobState::Completed);
    }
    let shares = [by("gpu0"), by("gpu1"), by("gpu2")];
    assert_eq!(shares.iter().sum::<usize>(), 60);
    assert!(
        shares.iter().all(|&n| n > 0),
        "each server took work: {shares:?}"
    );
    // Back again, it takes work again once its breaker lets a trial through.
    servers[0].restart().await;
    let before = shares[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut more = Vec::new();
    loop {
        for i in 0..6 {
            more.push(
                h.enqueue_bytes(&png, &format!("again-{i}.png"), "resunet")
                    .await,
            );
        }
        let n = 60 + more.len();
        h.wait_for(120, |e| count(e, completed) == n).await;
        let back = more
            .iter()
            .filter(|id| {
                let bytes = h.queue.result(**id).expect("read").expect("stored");
                SegmentResult::from_bytes(&bytes)
                    .expect("decodes")
                    .segmenter
                    == "gpu0"
            })
            .count();
        if back > 0 {
            eprintln!(
                "shares {shares:?} (gpu0 had {before}); gpu0 took {back} of {} after it came back",
                more.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gpu0 took no work after it came back"
        );
    }
    let events = h.wait_for(10, |_| true).await;
    assert_eq!(
        count(&events, |k| matches!(k, EventKind::JobFailed { .. })),
        0
    );
    pool.shutdown(Duration::from_secs(5)).await;
}
