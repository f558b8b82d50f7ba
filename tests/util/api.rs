//! The HTTP harness of the integration tests: a real [`App`] started on a temp data directory
//! and a loopback port, as `serve` starts one, and requests to `router(state)` with
//! `tower::ServiceExt::oneshot` (no socket) as a client on this machine would send them; and
//! multipart bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use spheroseg::app::App;
use spheroseg::config::{AuthLayer, Config, Layer, LimitsLayer, Sources};
use spheroseg::http::{AppState, router};
use tower::ServiceExt;

use crate::util::fixture;

pub struct Api {
    pub dir: tempfile::TempDir,
    /// The app's state as requests see it: bound, for the Host and origin checks, as if at
    /// 127.0.0.1:5001 (the app itself listens on a free port), with the test's body limit.
    pub state: AppState,
    pub app: Option<App>,
}

pub async fn api(token: Option<&str>, body_limit: usize) -> Api {
    api_in(tempfile::tempdir().expect("tempdir"), token, body_limit).await
}

/// [`api`] with its data in `dir`.
pub async fn api_in(dir: tempfile::TempDir, token: Option<&str>, body_limit: usize) -> Api {
    api_with(dir, token, body_limit, |_| {}).await
}

/// [`api_in`] with the configuration changed by `configure` first.
pub async fn api_with(
    dir: tempfile::TempDir,
    token: Option<&str>,
    body_limit: usize,
    configure: impl FnOnce(&mut Layer),
) -> Api {
    let mut flags = Layer {
        data_dir: Some(dir.path().to_owned()),
        shutdown_grace_secs: Some(5),
        import_dirs: Some(vec![fixture("")]),
        allowed_origins: Some(vec!["https://lab.example".to_owned()]),
        auth: AuthLayer {
            token: token.map(str::to_owned),
        },
        limits: LimitsLayer {
            max_upload_mb: Some((body_limit as u64 >> 20).max(1)),
            ..LimitsLayer::default()
        },
        ..Layer::default()
    };
    configure(&mut flags);
    let config = Config::load(&Sources {
        file: None,
        env: HashMap::from([("SPHEROSEG_WORKERS".to_owned(), "2".to_owned())]),
        flags,
    })
    .expect("test config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app = App::start(config, listener).await.expect("app starts");
    let at = "127.0.0.1:5001".parse().expect("addr");
    let state = AppState {
        bind: at,
        body_limit,
        guard: Arc::new(spheroseg::http::Guard::new(
            at,
            vec![],
            vec!["https://lab.example".to_owned()],
        )),
        ..app.state().clone()
    };
    Api {
        dir,
        state,
        app: Some(app),
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

/// Sends `req` to `router(state)` as a client on this machine would: with
/// `Host: 127.0.0.1:5001` unless it says otherwise. The whole response.
pub async fn respond(state: &AppState, mut req: Request<Body>) -> axum::response::Response {
    if !req.headers().contains_key(header::HOST) {
        req.headers_mut()
            .insert(header::HOST, "127.0.0.1:5001".parse().expect("host"));
    }
    router(state.clone()).oneshot(req).await.expect("response")
}

/// A bodiless GET through [`respond`]: the status and the body as JSON (`null` if it is not).
pub async fn get_json(state: &AppState, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = respond(
        state,
        Request::get(uri).body(Body::empty()).expect("request"),
    )
    .await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

impl Api {
    /// [`respond`] with this app's state.
    pub async fn respond(&self, req: Request<Body>) -> axum::response::Response {
        respond(&self.state, req).await
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
        get_json(&self.state, uri).await
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

    /// A multipart upload to `POST /api/jobs`.
    pub async fn upload(
        &self,
        files: &[(&str, &str, Vec<u8>)],
        fields: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        self.post_form("/api/jobs", files, fields).await
    }

    /// A multipart POST of file parts and text parts to `uri`: the status and the JSON body.
    pub async fn post_form(
        &self,
        uri: &str,
        files: &[(&str, &str, Vec<u8>)],
        fields: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let (kind, body) = multipart(files, fields);
        let req = Request::post(uri)
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

    /// Upload temp files left in the image store (none once every upload is stored or refused).
    pub fn incoming(&self) -> usize {
        let dir = self.dir.path().join("images").join("incoming");
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.expect("clean shutdown");
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
