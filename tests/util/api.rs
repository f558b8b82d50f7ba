//! The HTTP harness of the integration tests: an `AppState` over a temp data directory with a
//! running pool, requests through `router(state)` with `tower::ServiceExt::oneshot` (no socket),
//! and multipart bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use spheroseg::clock::SystemClock;
use spheroseg::http::{AppState, router};
use spheroseg::pool::Pool;
use spheroseg::segment::Builtin;
use spheroseg::segment::Segmenters;
use spheroseg::service::Service;
use tower::ServiceExt;

use crate::util::fixture;

pub struct Api {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub pool: Option<Pool>,
}

pub async fn api(token: Option<&str>, body_limit: usize) -> Api {
    api_in(tempfile::tempdir().expect("tempdir"), token, body_limit).await
}

/// [`api`] with its data in `dir`.
pub async fn api_in(dir: tempfile::TempDir, token: Option<&str>, body_limit: usize) -> Api {
    // The recorder is per process; install it before any request so every test sees counters.
    let _ = spheroseg::telemetry::prometheus();
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
            default_segmenter: spheroseg::segment::SegmenterId::builtin(),
        },
        started: Instant::now(),
        ready: Arc::new(AtomicBool::new(true)),
        token: token.map(Arc::from),
        bind: "127.0.0.1:5001".parse().expect("addr"),
        body_limit,
        system: Arc::new(spheroseg::telemetry::SystemMonitor::new(dir.path())),
        import_dirs: Arc::from(vec![fixture("").canonicalize().expect("fixtures dir")]),
        guard: Arc::new(spheroseg::http::Guard::new(
            "127.0.0.1:5001".parse().expect("addr"),
            vec![],
            vec!["https://lab.example".to_owned()],
        )),
        ws_send_timeout: Duration::from_secs(10),
        retention: spheroseg::queue::Retention::default(),
    };
    Api {
        dir,
        state,
        pool: Some(pool),
    }
}

/// Files, text fields, the expected status and error code of one refused upload.
pub type Case<'a> = (
    Vec<(&'a str, &'a str, Vec<u8>)>,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

/// A multipart body with file parts `(field, filename, bytes)` and text parts `(field, value)`.
pub fn multipart(files: &[(&str, &str, Vec<u8>)], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
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
    /// Sends `req` as a client on this machine would: with `Host: 127.0.0.1:5001` unless it says
    /// otherwise. The whole response.
    pub async fn respond(&self, mut req: Request<Body>) -> axum::response::Response {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, "127.0.0.1:5001".parse().expect("host"));
        }
        router(self.state.clone())
            .oneshot(req)
            .await
            .expect("response")
    }

    /// [`Api::respond`]: status, body and content type.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
        let resp = self.respond(req).await;
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
    pub async fn get_raw(&self, uri: &str) -> (StatusCode, Vec<u8>, Option<String>) {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let (s, b, _) = self.get_raw(uri).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn call(
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

    pub async fn upload(
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

    pub async fn wait_state(&self, id: &str, state: &str) {
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

    pub async fn stop(mut self) {
        if let Some(p) = self.pool.take() {
            p.shutdown(Duration::from_secs(5)).await;
        }
    }
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// CRC-32 (IEEE), as PNG chunks use.
pub fn crc32(bytes: &[u8]) -> u32 {
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

/// The next WebSocket message, as JSON.
pub async fn next_json<S>(ws: &mut S) -> serde_json::Value
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
