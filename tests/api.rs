//! The HTTP API: every route with `tower::ServiceExt::oneshot` against `router(state)` (no
//! socket), every error status, auth; and one real TCP test of `serve` with uploads, the
//! WebSocket and `since` resume.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use spheroseg::clock::SystemClock;
use spheroseg::http::{AppState, router};
use spheroseg::pool::{Pool, Segmenters};
use spheroseg::queue::SegmenterChoice;
use spheroseg::segment::{Builtin, DecodeLimits};
use spheroseg::service::Service;
use tower::ServiceExt;

use crate::util::fixture;

struct Api {
    _dir: tempfile::TempDir,
    state: AppState,
    pool: Option<Pool>,
}

async fn api(token: Option<&str>, body_limit: usize) -> Api {
    // The recorder is per process; install it before any request so every test sees counters.
    let _ = spheroseg::telemetry::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let pool = Pool::start(
        queue.clone(),
        images.clone(),
        events.clone(),
        Segmenters {
            builtin: Arc::new(Builtin),
            ml: HashMap::new(),
        },
        crate::util::pool_config(2),
        Arc::new(SystemClock),
    )
    .expect("pool");
    let state = AppState {
        service: Service {
            queue,
            images,
            events,
            pool: Some(pool.handle()),
            default_segmenter: SegmenterChoice::Builtin,
        },
        started: Instant::now(),
        ready: Arc::new(AtomicBool::new(true)),
        token: token.map(Arc::from),
        bind: "127.0.0.1:5001".parse().expect("addr"),
        body_limit,
        system: Arc::new(spheroseg::telemetry::SystemMonitor::new(dir.path())),
        import_dirs: Arc::from(vec![fixture("").canonicalize().expect("fixtures dir")]),
        allowed_origins: Arc::from(vec!["https://lab.example".to_owned()]),
    };
    Api {
        _dir: dir,
        state,
        pool: Some(pool),
    }
}

/// Files, text fields, the expected status and error code of one refused upload.
type Case<'a> = (
    Vec<(&'a str, &'a str, Vec<u8>)>,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

/// A multipart body with file parts `(field, filename, bytes)` and text parts `(field, value)`.
fn multipart(files: &[(&str, &str, Vec<u8>)], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "spheroseg-test-boundary";
    let mut body = Vec::new();
    for (name, file, bytes) in files {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Api {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
        let resp = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let kind = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, bytes.to_vec(), kind)
    }

    /// A bodiless GET: status, raw body and content type.
    async fn get_raw(&self, uri: &str) -> (StatusCode, Vec<u8>, Option<String>) {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    async fn get(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let (s, b, _) = self.get_raw(uri).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        json: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if json.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Body::from(json.unwrap_or_default().to_owned()))
            .expect("request");
        let (s, b, _) = self.send(req).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn upload(
        &self,
        files: &[(&str, &str, Vec<u8>)],
        fields: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let (kind, body) = multipart(files, fields);
        let req = Request::post("/api/jobs")
            .header(header::CONTENT_TYPE, kind)
            .body(Body::from(body))
            .expect("request");
        let (s, b, _) = self.send(req).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn wait_state(&self, id: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.get(&format!("/api/jobs/{id}")).await;
            if v["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {state}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(p) = self.pool.take() {
            p.shutdown(Duration::from_secs(5)).await;
        }
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_result_csv_mask_and_image() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .upload(
            &[
                ("image", "lumen.png", read("spheroid_lumen_8bit.png")),
                ("image", "plain.tif", read("spheroid_plain_16bit.tif")),
            ],
            &[
                ("priority", "7"),
                ("project", "screen-1"),
                ("params", r#"{"pixel_size_um": 0.65}"#),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["priority"], 7);
    assert!(jobs[0]["position"].is_number() || jobs[0]["state"] != "queued");
    let id = jobs[0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;

    let (s, job) = a.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (job["project"].as_str(), job["image"]["name"].as_str()),
        (Some("screen-1"), Some("lumen.png"))
    );
    let (s, r) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["polygons"][0]["type"], "external");
    assert_eq!(r["polygons"][1]["type"], "internal");
    assert!(
        r["metrics"][0]["calibrated"]["area_um2"]
            .as_f64()
            .expect("µm²")
            > 0.0
    );

    let (s, csv, kind) = a.get_raw(&format!("/api/jobs/{id}/result.csv")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.expect("type").starts_with("text/csv"));
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(csv.starts_with("Image Name,Image ID,Image Resolution,Object ID,Area"));
    assert!(
        csv.lines()
            .nth(1)
            .expect("row")
            .starts_with(&format!("lumen.png,{id},384x384,polygon-1,"))
    );

    let (s, png, kind) = a.get_raw(&format!("/api/jobs/{id}/mask.png")).await;
    assert_eq!((s, kind.as_deref()), (StatusCode::OK, Some("image/png")));
    assert_eq!(&png[1..4], b"PNG");
    let (s, original, _) = a.get_raw(&format!("/api/jobs/{id}/image")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(original, read("spheroid_lumen_8bit.png"));

    let (s, png, kind) = a.get_raw(&format!("/api/jobs/{id}/preview.png")).await;
    assert_eq!((s, kind.as_deref()), (StatusCode::OK, Some("image/png")));
    let p = image::load_from_memory(&png).expect("preview decodes");
    assert_eq!((p.width(), p.color()), (384, image::ColorType::L8));
    let other = jobs[1]["id"].as_str().expect("id").to_owned();
    a.wait_state(&other, "completed").await;
    let (s, png, _) = a.get_raw(&format!("/api/jobs/{other}/preview.png")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        image::load_from_memory(&png).expect("decodes").color(),
        image::ColorType::L8,
        "16-bit TIFF as 8-bit PNG"
    );

    // The metrics of the project, streamed as CSV.
    let (s, csv, _) = a
        .get_raw("/api/export?project=screen-1&state=completed&format=csv")
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(csv.lines().count(), 3, "header and one row per job: {csv}");
    assert!(
        csv.lines()
            .next()
            .expect("header")
            .ends_with("Feret Diameter Min (um)")
    );

    // The same, gzip-compressed (browsers ask for it): the stream must end cleanly.
    let (s, gz, _) = a
        .send(
            Request::get("/api/export?project=screen-1")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");

    // Listing: by project, by state, paged.
    let (_, page) = a.get("/api/jobs?project=screen-1&limit=1").await;
    assert_eq!(page["jobs"].as_array().expect("jobs").len(), 1);
    let next = page["next"].as_str().expect("cursor").to_owned();
    let (_, page2) = a
        .get(&format!("/api/jobs?project=screen-1&limit=1&cursor={next}"))
        .await;
    assert_ne!(page["jobs"][0]["id"], page2["jobs"][0]["id"]);
    let (s, v) = a.get("/api/jobs?state=running").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Prometheus text with the queue gauges and the job counters.
    let _ = spheroseg::telemetry::prometheus();
    let (s, text, kind) = a.get_raw("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.expect("type").starts_with("text/plain"));
    let text = String::from_utf8(text).expect("utf-8");
    for name in [
        "spheroseg_jobs{",
        "spheroseg_database_bytes",
        "spheroseg_workers_total",
        "spheroseg_http_requests_total",
        "spheroseg_queue_transactions_total",
        "spheroseg_wal_syncs_total",
        "spheroseg_wal_capacity_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let syncs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spheroseg_wal_syncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a sync count");
    assert!(syncs >= 1.0, "the upload above was synced: {syncs}");

    // The replaced design's routes.
    let (_, legacy) = a.get(&format!("/api/segmentation/job/{id}")).await;
    assert_eq!(
        (legacy["status"].as_str(), legacy["isCompleted"].as_bool()),
        (Some("completed"), Some(true))
    );
    assert_eq!(legacy["jobId"], id.as_str());
    let (_, status) = a.get("/api/segmentation/queue/status").await;
    for k in [
        "waiting",
        "active",
        "completed",
        "failed",
        "delayed",
        "paused",
    ] {
        assert!(status["queue"].get(k).is_some(), "queue.{k}: {status}");
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_store_nothing_and_say_why() {
    let a = api(None, 64 << 20).await;
    let png = read("spheroid_core_8bit.png");
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    // A valid header: the IHDR checksum (over type and data, bytes 12..29) is recomputed.
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let truncated = png[..png.len() / 3].to_vec();
    let cases: Vec<Case> = vec![
        (
            vec![("image", "notes.tif", b"Image Name,Area\n".to_vec())],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-an-image",
        ),
        (
            vec![("image", "cut.png", truncated)],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "damaged-image",
        ),
        (
            vec![("image", "bomb.png", bomb)],
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "image-too-large",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("priority", "11")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("priority", "high")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("params", r#"{"min_area_fraction": 3}"#)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("params", r#"{"colour": 1}"#)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("segmenter", "magic")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![],
            vec![("priority", "5")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            vec![("image", "../../etc/passwd", b"nope".to_vec())],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-an-image",
        ),
    ];
    for (files, fields, status, code) in cases {
        let (s, v) = a.upload(&files, &fields).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, v) = a
        .upload(&[("image", "ok.png", png.clone())], &[("priority", "11")])
        .await;
    assert!(
        v["message"].as_str().expect("message").contains("priority"),
        "{v}"
    );
    let (_, v) = a
        .upload(
            &[("image", "ok.png", png)],
            &[("params", r#"{"min_area_fraction": 3}"#)],
        )
        .await;
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("min_area_fraction"),
        "{v}"
    );
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(
        q["counts"]["queued"].as_u64().unwrap_or(0)
            + q["counts"]["completed"].as_u64().unwrap_or(0),
        0,
        "{q}"
    );

    // Nothing was left behind: no job, and no upload file.
    let incoming = a._dir.path().join("images").join("incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // Malformed multipart.
    let req = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
        .body(Body::from("garbage"))
        .expect("req");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    a.stop().await;
}

/// An image larger than the in-memory threshold goes through a temp file and is stored the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_streamed_through_disk() {
    let a = api(None, 64 << 20).await;
    let img = image::GrayImage::from_fn(2400, 2400, |x, y| {
        image::Luma([((x * 31 + y * 17) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Bmp)
        .expect("bmp");
    let bmp = out.into_inner();
    assert!(bmp.len() > 4 << 20, "larger than the in-memory threshold");
    a.call("POST", "/api/queue/pause", None).await; // storing is the point, not segmenting
    let (s, v) = a.upload(&[("image", "big.bmp", bmp.clone())], &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id");
    let (s, original, _) = a.get_raw(&format!("/api/jobs/{id}/image")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(original == bmp, "stored byte for byte");
    let incoming = a._dir.path().join("images").join("incoming");
    assert_eq!(
        std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0),
        0,
        "temp file adopted"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_413() {
    let a = api(None, 4096).await;
    let (s, v) = a
        .upload(
            &[("image", "big.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_actions_and_their_errors() {
    let a = api(None, 64 << 20).await;
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = a
        .upload(&[("image", "a.png", read("spheroid_core_8bit.png"))], &[])
        .await;
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(
        (q["paused"].as_bool(), q["counts"]["queued"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(q["workers_total"], 2);

    let (s, v) = a
        .call(
            "PATCH",
            &format!("/api/jobs/{id}"),
            Some(r#"{"priority": 9}"#),
        )
        .await;
    assert_eq!((s, v["priority"].as_u64()), (StatusCode::OK, Some(9)));
    let (s, v) = a
        .call(
            "PATCH",
            &format!("/api/jobs/{id}"),
            Some(r#"{"priority": 0}"#),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field"))
    );
    let (s, _) = a
        .call("PATCH", &format!("/api/jobs/{id}"), Some("{nope"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (s, v) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid-state"))
    );
    let (s, v) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("no-result"))
    );

    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = a.call("POST", &format!("/api/jobs/{id}/retry"), None).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("queued")));
    a.wait_state(&id, "completed").await;
    let (s, v) = a.call("POST", &format!("/api/jobs/{id}/retry"), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid-state")),
        "{v}"
    );

    for uri in [
        "/api/jobs/0190b5c2-0000-7000-8000-000000000000",
        "/api/jobs/not-an-id",
        "/api/nothing",
    ] {
        let (s, v) = a.get(uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
    let (s, v) = a.call("POST", "/api/ml/nothing/reset", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = a.get("/api/ml").await;
    assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    // Bulk: cancel everything queued (none now), delete the cancelled ones.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"cancel","filter":{"state":"queued"}}"#),
        )
        .await;
    assert_eq!(
        (s, v["affected"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"retry","filter":{"state":"completed"}}"#),
        )
        .await;
    assert_eq!(
        (s, v["matched"].as_u64(), v["affected"].as_u64()),
        (StatusCode::OK, Some(1), Some(0)),
        "{v}"
    );
    let (s, v) = a
        .call("POST", "/api/jobs/bulk", Some(r#"{"action":"explode"}"#))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
        "{v}"
    );
    let (s, v) = a.get("/api/events?since=0&timeout=1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["events"].as_array().is_some_and(|e| !e.is_empty()), "{v}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_health_endpoints() {
    let a = api(None, 1 << 20).await;
    let (s, v) = a.get("/api/health/live").await;
    assert_eq!((s, v["alive"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!((s, v["ready"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = a.get("/api/health").await;
    // Healthy, or degraded on a machine short of disk or memory: never unhealthy here.
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        matches!(v["status"].as_str(), Some("healthy" | "degraded")),
        "{v}"
    );
    assert_eq!(v["services"]["storage"], "healthy");
    for k in ["storage", "queue", "workers", "ml", "disk", "memory"] {
        assert!(v["services"].get(k).is_some(), "{k}: {v}");
    }
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let (s, v) = a.get("/api/health/detailed").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["services"]["workers"]["details"]["total"].as_u64() == Some(2),
        "{v}"
    );
    let (s, v) = a.get("/api/health/services/queue").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("healthy")));
    let (s, v) = a.get("/api/health/services/flux").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("Unknown service: flux"))
    );

    let (s, v) = a.get("/api/system").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["memory_total_bytes"].as_u64() > Some(0) && v["process_rss_bytes"].as_u64() > Some(0),
        "{v}"
    );
    assert!(v["disk_available_bytes"].as_u64().is_some(), "{v}");

    // Shutdown turns readiness off first; liveness stays.
    a.state.ready.store(false, Ordering::SeqCst);
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!(
        (s, v["ready"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(false))
    );
    let (s, _) = a.get("/api/health/live").await;
    assert_eq!(s, StatusCode::OK);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_everywhere_but_liveness() {
    let a = api(Some("s3cret"), 1 << 20).await;
    let (s, v) = a.get("/api/queue").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, _) = a.get("/api/health").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = a.get("/api/health/live").await;
    assert_eq!(s, StatusCode::OK);
    let req = |token: &str| {
        Request::get("/api/queue")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("req")
    };
    assert_eq!(a.send(req("s3cret")).await.0, StatusCode::OK);
    assert_eq!(a.send(req("s3creT")).await.0, StatusCode::UNAUTHORIZED);
    a.stop().await;
}

/// `serve` on 127.0.0.1:0: upload over TCP, watch the WebSocket until the job completes, fetch the
/// result, then reconnect with `since` and receive only what was missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tcp_with_websocket_and_since_resume() {
    use futures_util::{SinkExt, StreamExt};
    use spheroseg::config::{Config, Layer, Sources};

    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::load(&Sources {
        file: None,
        env: HashMap::from([("SPHEROSEG_WORKERS".to_owned(), "2".to_owned())]),
        flags: Layer {
            data_dir: Some(dir.path().join("data")),
            ..Layer::default()
        },
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spheroseg::app::run(config, listener, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    spheroseg::segment::http::install_crypto_provider();
    let client = reqwest::Client::new();
    // Wait on readiness, no sleep to let it start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/api/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("ws");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "snapshot");

    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(read("spheroid_lumen_8bit.png")).file_name("lumen.png"),
    );
    let resp = client
        .post(format!("{base}/api/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let v: serde_json::Value = resp.json().await.expect("json");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();

    let mut last_id = 0u64;
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        if !msg.is_text() {
            continue;
        }
        let e: serde_json::Value =
            serde_json::from_str(msg.to_text().expect("text")).expect("json");
        if let Some(n) = e["id"].as_u64() {
            assert!(n > last_id, "ids rise");
            last_id = n;
        }
        types.push(e["type"].as_str().unwrap_or_default().to_owned());
        if e["type"] == "job_completed" && e["job_id"] == id.as_str() {
            break;
        }
    }
    assert!(
        types.contains(&"job_queued".to_owned()) && types.contains(&"job_started".to_owned()),
        "{types:?}"
    );
    let _ = ws.close(None).await;
    let r: serde_json::Value = client
        .get(format!("{base}/api/jobs/{id}/result"))
        .send()
        .await
        .expect("result")
        .json()
        .await
        .expect("json");
    assert_eq!(r["polygons"][0]["type"], "external");

    // Something happens while disconnected; reconnecting with since gets only that.
    let resp = client
        .post(format!("{base}/api/queue/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(read("spheroid_core_8bit.png")).file_name("core.png"),
    );
    client
        .post(format!("{base}/api/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?since={last_id}"))
        .await
        .expect("ws");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    let missed = next_json(&mut ws).await;
    assert!(
        missed["id"].as_u64().expect("an event") > last_id,
        "{missed}"
    );
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;

    // A foreign origin is refused.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/ws"),
    )
    .expect("request");
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    stop.send(()).expect("stop");
    server.await.expect("server task").expect("clean shutdown");
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// One spheroseg serves the ML contract at /ml; another's http segmenter uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spheroseg_serves_the_ml_contract_to_another_spheroseg() {
    use spheroseg::segment::http::HttpSegmenter;

    let a = api(None, 64 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/ml", listener.local_addr().expect("addr"));
    let state = a.state.clone();
    let server = tokio::spawn(spheroseg::http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let client = HttpSegmenter::new("http", &url, Duration::from_secs(30), false).expect("client");
    let h = client.health().await;
    assert!(h.up, "{h:?}");
    assert_eq!(h.body.expect("json")["status"], "healthy");

    let client = Arc::new(client);
    let r = tokio::task::spawn_blocking(move || {
        let path = fixture("spheroid_lumen_8bit.png");
        let bytes = std::fs::read(&path).expect("fixture");
        let image = spheroseg::queue::ImageRef {
            hash: "h".into(),
            name: "lumen.png".into(),
            width: 384,
            height: 384,
            bytes: bytes.len() as u64,
        };
        let params = spheroseg::segment::SegmentParams::default();
        let limits = DecodeLimits::default();
        let input = spheroseg::segment::Input {
            bytes: &bytes,
            path: &path,
            image: &image,
            params: &params,
            limits: &limits,
        };
        let stop = spheroseg::segment::Stop::default();
        let mut progress = |_| {};
        let mut control = spheroseg::segment::Control {
            stop: &stop,
            deadline: Instant::now() + Duration::from_secs(30),
            progress: &mut progress,
        };
        spheroseg::segment::Segmenter::segment(&*client, &input, &mut control)
    })
    .await
    .expect("thread")
    .expect("segmented by the other spheroseg");
    assert_eq!(r.objects.len(), 1);
    assert_eq!(
        r.objects[0].holes.len(),
        1,
        "the lumen survives the round trip"
    );
    server.abort();
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_by_path_stays_inside_the_import_dirs() {
    let a = api(None, 1 << 20).await;
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["spheroid_core_8bit.png"], "priority": 8, "project": "imported"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["jobs"][0]["priority"], 8);
    let outside = ["../pool.rs", "../../Cargo.toml", "/etc/passwd"];
    for p in outside {
        let (s, v) = a
            .call(
                "POST",
                "/api/jobs",
                Some(&format!(r#"{{"paths": ["{p}"]}}"#)),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("path-not-allowed")),
            "{p}: {v}"
        );
    }
    let (s, v) = a
        .call("POST", "/api/jobs", Some(r#"{"paths": ["nope.png"]}"#))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().expect("message").contains("paths[0]"));
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["not_an_image.txt"]}"#),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("not-an-image")),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["spheroid_core_8bit.png"], "priority": 11}"#),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = a.call("POST", "/api/jobs", Some(r#"{"files": []}"#)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    a.stop().await;
}

/// The OpenAPI document lists every route the router serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route() {
    let a = api(None, 1 << 20).await;
    let (s, doc) = a.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let expect = [
        ("/api/jobs", &["get", "post"][..]),
        ("/api/jobs/{id}", &["get", "delete", "patch"][..]),
        ("/api/jobs/{id}/retry", &["post"][..]),
        ("/api/jobs/{id}/result", &["get"][..]),
        ("/api/jobs/{id}/result.csv", &["get"][..]),
        ("/api/jobs/{id}/mask.png", &["get"][..]),
        ("/api/jobs/{id}/image", &["get"][..]),
        ("/api/jobs/{id}/preview.png", &["get"][..]),
        ("/api/jobs/bulk", &["post"][..]),
        ("/api/export", &["get"][..]),
        ("/api/queue", &["get"][..]),
        ("/api/queue/pause", &["post"][..]),
        ("/api/queue/resume", &["post"][..]),
        ("/api/ml", &["get"][..]),
        ("/api/ml/{name}/reset", &["post"][..]),
        ("/api/system", &["get"][..]),
        ("/api/events", &["get"][..]),
        ("/ws", &["get"][..]),
        ("/api/health", &["get"][..]),
        ("/api/health/live", &["get"][..]),
        ("/api/health/ready", &["get"][..]),
        ("/api/health/detailed", &["get"][..]),
        ("/api/health/services/{name}", &["get"][..]),
        ("/metrics", &["get"][..]),
        ("/api/openapi.json", &["get"][..]),
        ("/api/segmentation/queue/status", &["get"][..]),
        ("/api/segmentation/job/{id}", &["get"][..]),
        ("/ml/segment", &["post"][..]),
        ("/ml/health", &["get"][..]),
    ];
    for (path, methods) in expect {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the document"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing");
        }
    }
    assert_eq!(
        paths.len(),
        expect.len(),
        "no undocumented extras: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // And every documented path answers something other than the fallback 404.
    for (path, methods) in expect {
        if methods.contains(&"get") && !path.contains('{') && path != "/ws" && path != "/api/events"
        {
            let (s, _, _) = a.get_raw(path).await;
            assert_ne!(s, StatusCode::NOT_FOUND, "{path}");
        }
    }
    a.stop().await;
}

/// The embedded status page: content types, security headers, 404 for anything not embedded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_served_from_the_binary() {
    let a = api(Some("s3cret"), 1 << 20).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ] {
        let resp = router(a.state.clone())
            .oneshot(Request::get(path).body(Body::empty()).expect("req"))
            .await
            .expect("response");
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{path}: the page needs no token"
        );
        let h = resp.headers();
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with(kind),
            "{path}"
        );
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("csp")
                .contains("script-src 'self'")
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    }
    for path in [
        "/static/nope.js",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
    ] {
        let (s, _, _) = a.get_raw(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    // The WebSocket checks the Origin: its own address and the configured extra ones pass.
    for (origin, allowed) in [
        ("http://127.0.0.1:5001", true),
        ("http://localhost:5001", true),
        ("https://lab.example", true),
        ("http://evil.example", false),
    ] {
        let req = Request::get("/ws?access_token=s3cret")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("req");
        let (s, _, _) = a.send(req).await;
        assert_eq!(s == StatusCode::FORBIDDEN, !allowed, "{origin}: {s}");
    }
    // The WebSocket takes the token as a query parameter (browsers cannot set its headers).
    let (s, _, _) = a.get_raw("/ws").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = a.get_raw("/ws?access_token=s3cret").await;
    assert_ne!(
        s,
        StatusCode::UNAUTHORIZED,
        "authorised; the upgrade itself needs a real socket"
    );
    a.stop().await;
}

/// The next WebSocket message, as JSON.
async fn next_json<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    let msg = ws.next().await.expect("message").expect("ok");
    serde_json::from_str(msg.to_text().expect("text")).expect("json")
}

/// On shutdown readiness answers 503 while the listener still accepts, for `shutdown_delay_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_before_the_listener_closes() {
    use spheroseg::config::{Config, Layer, Sources};

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("spheroseg.toml");
    std::fs::write(&file, "shutdown_delay_ms = 1500\n").expect("config");
    let config = Config::load(&Sources {
        file: Some(file),
        env: HashMap::new(),
        flags: Layer {
            data_dir: Some(dir.path().join("data")),
            workers: Some(1),
            ..Layer::default()
        },
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spheroseg::app::run(config, listener, async {
        let _ = stopped.await;
    }));
    spheroseg::segment::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let ready = |c: reqwest::Client, b: String| async move {
        c.get(format!("{b}/api/health/ready"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(client.clone(), base.clone()).await.ok() != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).expect("stop");
    // Still listening, but no longer ready.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ready(client.clone(), base.clone()).await {
            Ok(503) => break,
            Ok(200) => {}
            other => panic!("expected 503 before the listener closed, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = client
        .get(format!("{base}/api/health/live"))
        .send()
        .await
        .expect("still listening");
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    server.await.expect("server task").expect("clean shutdown");
    assert!(
        ready(client.clone(), base.clone()).await.is_err(),
        "closed after the delay"
    );
}
