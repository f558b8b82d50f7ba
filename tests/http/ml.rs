//! spheroseg as another spheroseg's ML service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use spheroseg::http::AppState;
use spheroseg::segment::DecodeLimits;

use crate::util::api::*;
use crate::util::fixture;

/// One spheroseg serves the ML contract at /ml; another's http segmenter uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spheroseg_serves_the_ml_contract_to_another_spheroseg() {
    use spheroseg::segment::http::HttpSegmenter;

    let a = api(None, 64 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let url = format!("http://{addr}/ml");
    let state = AppState {
        guard: Arc::new(spheroseg::http::Guard::new(addr, vec![], vec![])),
        ..a.state.clone()
    };
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
            name: &image.name,
            params: &params,
            limits: &limits,
            budget: &Default::default(),
            decoded: None,
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

/// The spheroid with a lumen, scaled up to a 1200² RGBA BMP: about 5.5 MiB, past the size up to
/// which an image part stays in memory.
fn large_bmp() -> Vec<u8> {
    let small = image::load_from_memory(&read("spheroid_lumen_8bit.png")).expect("fixture");
    let big = small.resize_exact(1200, 1200, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(big.to_rgba8())
        .write_to(&mut out, image::ImageFormat::Bmp)
        .expect("bmp");
    let bmp = out.into_inner();
    assert!(bmp.len() > 5 << 20, "{} bytes", bmp.len());
    bmp
}

/// Temp files of uploads and stored images left in the data directory.
fn stored(a: &Api) -> Vec<std::path::PathBuf> {
    crate::util::files_under(&a.dir.path().join("images"))
}

/// A large image goes through a temp file (as `POST /api/jobs` takes it) and is segmented whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_segment_streams_a_large_image_to_disk_and_segments_it() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .post_form("/ml/segment", &[("image", "big.bmp", large_bmp())], &[])
        .await;
    assert_eq!(
        (s, v["success"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let polygons = v["results"]["polygons"].as_array().expect("polygons");
    let kinds: Vec<&str> = polygons
        .iter()
        .map(|p| p["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        ["external", "internal"],
        "the spheroid and its lumen"
    );
    // In the large image's coordinates, not the fixture's 384² (points are `{x, y}` or `[x, y]`).
    let far = polygons[0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["x"].as_f64().or(p[0].as_f64()).expect("x"))
        .fold(0.0, f64::max);
    assert!(far > 600.0, "{far}");
    assert_eq!(a.incoming(), 0, "the temp file was adopted");
    a.stop().await;
}

/// A `params` field over the limit is refused for its size, after the image part before it was
/// streamed to a temp file; nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_segment_refuses_an_oversize_field_and_stores_nothing() {
    let a = api(None, 64 << 20).await;
    let params = format!(r#"{{"min_area_fraction": 0.01{}}}"#, " ".repeat(100 << 10));
    let (s, v) = a
        .post_form(
            "/ml/segment",
            &[("image", "big.bmp", large_bmp())],
            &[("params", &params)],
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("field-too-large")),
        "{v}"
    );
    assert!(
        v["message"].as_str().expect("message").contains("params"),
        "{v}"
    );
    let (_, q) = a.get("/api/queue").await;
    let total: u64 = q["counts"]
        .as_object()
        .expect("counts")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(total, 0, "no job: {q}");
    assert!(stored(&a).is_empty(), "{:?}", stored(&a));
    a.stop().await;
}

/// `/ml/segment` takes JSON `{"image_path"}` (the caller's `share_paths`) for a file inside the
/// import directories, and refuses any other path with a 4xx that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_segment_takes_an_image_path_inside_the_import_dirs_only() {
    let a = api(None, 1 << 20).await;
    let inside = fixture("spheroid_lumen_8bit.png").display().to_string();
    for path in ["spheroid_lumen_8bit.png", inside.as_str()] {
        let body = serde_json::json!({"image_path": path, "params": {}}).to_string();
        let (s, v) = a.call("POST", "/ml/segment", Some(&body)).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["success"], true);
        assert_eq!(v["results"]["polygons"][0]["type"], "external", "{v}");
    }
    for path in ["../cli.rs", "../../Cargo.toml", "/etc/passwd"] {
        let body = serde_json::json!({ "image_path": path }).to_string();
        let (s, v) = a.call("POST", "/ml/segment", Some(&body)).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("path-not-allowed")),
            "{path}: {v}"
        );
        assert!(
            v["message"]
                .as_str()
                .expect("message")
                .contains("image_path")
        );
    }
    let (s, v) = a
        .call("POST", "/ml/segment", Some(r#"{"image_path": "nope.png"}"#))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = a
        .call("POST", "/ml/segment", Some(r#"{"image": "a.png"}"#))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    a.stop().await;

    let off = api_with(tempfile::tempdir().expect("tempdir"), None, 1 << 20, |l| {
        l.import_dirs = Some(vec![]);
    })
    .await;
    let body = serde_json::json!({ "image_path": inside }).to_string();
    let (s, v) = off.call("POST", "/ml/segment", Some(&body)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("import-disabled")),
        "{v}"
    );
    off.stop().await;
}

/// `[[ml.service]]` entries each appear in `/api/ml` (segmenter, protocol, weight, readiness,
/// calls in flight), in the health details and in `/metrics` (calls, failures, latency, in
/// flight, readiness, breaker state), labelled per service; a job naming their segmenter runs
/// on the one that is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ml_service_is_shown_in_the_api_the_health_details_and_the_metrics() {
    use axum::routing::{get, post};
    use spheroseg::config::ServiceLayer;

    const SQUARE: &str = r#"{"success":true,"results":{"polygons":[{"id":"p","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid"}]}}"#;
    let app = axum::Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "healthy"})) }),
        )
        .route(
            "/segment",
            post(|| async { ([("content-type", "application/json")], SQUARE) }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let up = crate::util::serve_stub(app).await;
    // A port nothing listens on: not ready.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let down = format!("http://{}", gone.local_addr().expect("addr"));
    drop(gone);
    let entry = |name: &str, url: &str, weight| ServiceLayer {
        name: Some(name.into()),
        segmenter: Some("resunet".into()),
        url: Some(url.to_owned()),
        weight: Some(weight),
        max_in_flight: Some(3),
        ..ServiceLayer::default()
    };
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 1 << 20, |l| {
        l.ml.service = Some(vec![entry("svc-up", &up, 2), entry("svc-down", &down, 1)]);
    })
    .await;
    // Both are probed at start; wait for the answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ml = loop {
        let (s, v) = a.get("/api/ml").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v.as_array()
            .is_some_and(|l| l.iter().all(|s| !s["ready"].is_null()))
        {
            break v;
        }
        assert!(Instant::now() < deadline, "never probed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by = |name: &str| {
        ml.as_array()
            .expect("list")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .expect("listed")
    };
    let (u, d) = (by("svc-up"), by("svc-down"));
    assert_eq!(
        (
            &u["segmenter"],
            &u["protocol"],
            &u["weight"],
            &u["max_in_flight"],
            &u["ready"]
        ),
        (
            &"resunet".into(),
            &"spheroseg".into(),
            &2.into(),
            &3.into(),
            &true.into()
        ),
        "{u}"
    );
    assert_eq!(
        (&d["ready"], &d["weight"]),
        (&false.into(), &1.into()),
        "{d}"
    );
    assert_eq!(u["breaker"]["state"], "closed");

    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["spheroid_lumen_8bit.png"], "segmenter": "resunet"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;

    let (_, check) = a.get("/api/health/services/ml").await;
    assert_eq!(check["details"]["svc-up"]["state"], "closed", "{check}");
    assert_eq!(check["details"]["svc-up"]["ready"], true, "{check}");
    assert_eq!(check["details"]["svc-down"]["ready"], false, "{check}");
    assert_eq!(
        check["details"]["svc-down"]["segmenter"], "resunet",
        "{check}"
    );

    let _ = spheroseg::telemetry::prometheus();
    let (s, text, _) = a.get_raw("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(text).expect("utf-8");
    for line in [
        "spheroseg_ml_calls_total{service=\"svc-up\"} 1",
        "spheroseg_ml_call_seconds_bucket{service=\"svc-up\"",
        "spheroseg_ml_in_flight{service=\"svc-up\"} 0",
        "spheroseg_ml_in_flight{service=\"svc-down\"} 0",
        "spheroseg_ml_ready{service=\"svc-up\"} 1",
        "spheroseg_ml_ready{service=\"svc-down\"} 0",
        "spheroseg_breaker_state{service=\"svc-down\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    a.stop().await;
}
