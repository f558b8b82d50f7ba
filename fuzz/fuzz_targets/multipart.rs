//! Bytes as the body of `POST /api/jobs` through the real router of a running app (one per
//! process, its queue paused so accepted uploads wait instead of running): any answer but a 5xx
//! is fine, and nothing panics.
//!
//! The first byte picks the framing. Even: the rest is a `multipart/form-data` body with the
//! boundary [`BOUNDARY`]. Odd: its bits 1..=6 give a length `n`, bit 7 says whether to quote, and
//! the next `n` bytes are the boundary the Content-Type header names; the rest is the body.

#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use libfuzzer_sys::fuzz_target;
use spheroseg::app::App;
use spheroseg::config::{Config, Layer, LimitsLayer, Sources};
use spheroseg::http::{AppState, Guard, router};
use tower::ServiceExt;

const BOUNDARY: &str = "spheroseg-fuzz-boundary";
/// The body limit, as `limits.max_upload_mb` sets it.
const BODY_LIMIT: usize = 1 << 20;
/// The address requests claim to reach, for the Host check.
const AT: &str = "127.0.0.1:5001";

struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// Kept for the process's lifetime: the app and its data directory.
    _app: App,
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::load(&Sources {
        file: None,
        env: HashMap::new(),
        flags: Layer {
            data_dir: Some(dir.path().to_owned()),
            workers: Some(1),
            shutdown_grace_secs: Some(1),
            limits: LimitsLayer {
                max_width: Some(2048),
                max_height: Some(2048),
                max_megapixels: Some(1),
                max_upload_mb: Some((BODY_LIMIT >> 20) as u64),
                decode_budget_mb: Some(256),
                disk_low_water_mb: Some(1),
            },
            ..Layer::default()
        },
    })
    .expect("the fuzz configuration is valid");
    let (app, router) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let app = App::start(config, listener).await.expect("the app starts");
        let at: SocketAddr = AT.parse().expect("address");
        let state = AppState {
            bind: at,
            body_limit: BODY_LIMIT,
            guard: Arc::new(Guard::new(at, vec![], vec![])),
            ..app.state().clone()
        };
        let router = router(state);
        let pause = Request::post("/api/queue/pause")
            .header(header::HOST, AT)
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(pause).await.expect("response");
        assert!(resp.status().is_success(), "pause: {}", resp.status());
        (app, router)
    });
    Server {
        runtime,
        router,
        _app: app,
        _dir: dir,
    }
});

/// The Content-Type header and the body the input describes; `None` for a boundary that is no
/// header value.
fn request(data: &[u8]) -> Option<(HeaderValue, &[u8])> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        let kind = format!("multipart/form-data; boundary={BOUNDARY}");
        return Some((HeaderValue::from_str(&kind).expect("header value"), rest));
    }
    let n = usize::from((mode >> 1) & 0x3f).min(rest.len());
    let (boundary, body) = rest.split_at(n);
    let mut kind = b"multipart/form-data; boundary=".to_vec();
    if mode & 0x80 != 0 {
        kind.push(b'"');
        kind.extend_from_slice(boundary);
        kind.push(b'"');
    } else {
        kind.extend_from_slice(boundary);
    }
    Some((HeaderValue::from_bytes(&kind).ok()?, body))
}

fuzz_target!(|data: &[u8]| {
    let server = &*SERVER;
    let Some((kind, body)) = request(data) else {
        return;
    };
    let req = Request::post("/api/jobs")
        .header(header::HOST, AT)
        .header(header::CONTENT_TYPE, kind)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (status, text) = server.runtime.block_on(async {
        let resp = server
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    });
    assert!(!status.is_server_error(), "{status}: {text}");
});
