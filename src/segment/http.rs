//! The `http` segmenter: a remote ML service speaking the replaced system's contract
//! (ML-CONTRACT.md). `POST {url}/segment` with the image as multipart (`image`, `params`), or JSON
//! `{"image_path": ...}` when both machines share a filesystem; the reply is
//! `{"success": true, "results": {"polygons": [...], "features": {...}?}}` or
//! `{"success": false, "error": "..."}`. `GET {url}/health` says whether it is up.
//!
//! Errors classify themselves: refused, reset, timeout, 5xx and 429 are transient; other 4xx,
//! `success: false`, malformed JSON, an oversized reply and polygons outside the image are
//! permanent, and the message says which. Only this file uses reqwest.

use std::sync::Once;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::result::MlOrigin;
use super::{Control, Failure, Input, SegmentResult, Segmenter, Stop, result_from_polygons};
use crate::error_code::ErrorCode;
use crate::outline::Polygon;

mod oneoff;
pub use oneoff::{call, download, get, post_image};

/// The largest reply body read.
pub(crate) const MAX_REPLY_BYTES: usize = 64 << 20;

/// The client for an ML service could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the client for the ML service at {url}: {reason}")]
pub struct ClientError {
    pub url: String,
    reason: String,
}

/// A remote ML service.
pub struct HttpSegmenter {
    pub name: String,
    base: String,
    client: reqwest::Client,
    share_paths: bool,
    handle: Handle,
}

/// The reply of `/segment`.
#[derive(Debug, Deserialize, Serialize)]
pub struct SegmentReply {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<SegmentResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct SegmentResults {
    pub polygons: Vec<Polygon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Value>,
}

/// What `/health` said.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub up: bool,
    pub status: Option<u16>,
    /// The body, when it was JSON.
    pub body: Option<serde_json::Value>,
    pub error: Option<String>,
    pub latency_ms: f64,
}

/// Installs the TLS crypto provider reqwest needs (once; harmless if another one is installed).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    // reqwest is built without a default provider (aws-lc's C build is the slowest in the tree):
    // ring is installed once. A provider installed by someone else first is fine too.
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn mime(format: &str) -> &'static str {
    match format {
        "PNG" => "image/png",
        "JPEG" => "image/jpeg",
        "TIFF" => "image/tiff",
        "BMP" => "image/bmp",
        _ => "application/octet-stream",
    }
}

pub(crate) fn classify(e: &reqwest::Error, name: &str) -> Failure {
    if e.is_timeout() {
        Failure::transient(ErrorCode::TIMEOUT, format!("{name} did not answer in time"))
    } else if e.is_connect() {
        Failure::unavailable(
            ErrorCode::ML_UNAVAILABLE,
            format!("cannot connect to {name}: {e}"),
            None,
        )
    } else {
        Failure::transient(
            ErrorCode::ML_UNAVAILABLE,
            format!("{name} dropped the request: {}", chain(e)),
        )
    }
}

/// An error with its causes, `: `-separated (reqwest's own message rarely says what happened).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The HTTP client for one ML service: `timeout` for a whole call, at most 5 s to connect.
pub(crate) fn client(url: &str, timeout: Duration) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| ClientError {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

/// The body of a successful (2xx) answer with its headers, read up to [`MAX_REPLY_BYTES`]; any
/// other status is the failure it means. Overloaded or down (503, 429, a gateway without its
/// backend): the service could not take the job (it waits, `Retry-After` honoured). Another 5xx
/// failed on this request (transient); another 4xx refused it (permanent, `ML_REJECTED`).
pub(crate) async fn receive(
    mut resp: reqwest::Response,
    name: &str,
) -> Result<(reqwest::header::HeaderMap, Vec<u8>), Failure> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, name))? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(Failure::permanent(
                ErrorCode::ML_REPLY_TOO_LARGE,
                format!(
                    "{name} replied with more than {} MiB",
                    MAX_REPLY_BYTES >> 20
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    use reqwest::StatusCode as S;
    if matches!(
        status,
        S::SERVICE_UNAVAILABLE | S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::GATEWAY_TIMEOUT
    ) {
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        return Err(Failure::unavailable(
            ErrorCode::ML_UNAVAILABLE,
            format!("{name} answered {status}: {}", snippet()),
            retry_after,
        ));
    }
    if status.is_server_error() {
        return Err(Failure::transient(
            ErrorCode::ML_UNAVAILABLE,
            format!("{name} answered {status}: {}", snippet()),
        ));
    }
    if !status.is_success() {
        return Err(Failure::permanent(
            ErrorCode::ML_REJECTED,
            format!("{name} refused the image with {status}: {}", snippet()),
        ));
    }
    Ok((headers, body))
}

/// Runs a call on the runtime until it ends, `deadline` passes (a timeout) or soon after `stop`
/// is asked (dropping the call, which closes its connection).
pub(crate) async fn until<T>(
    call: impl std::future::Future<Output = Result<T, Failure>>,
    stop: &Stop,
    deadline: Instant,
    name: &str,
) -> Result<T, Failure> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    tokio::pin!(call);
    loop {
        tokio::select! {
            r = &mut call => return r,
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Failure::transient(
                    ErrorCode::TIMEOUT,
                    format!("{name} did not answer in time"),
                ));
            }
            _ = poll.tick() => if stop.stopped() { return Err(Failure::Stopped) },
        }
    }
}

impl HttpSegmenter {
    /// A client for the service at `url` (e.g. `http://ml:5002`); must be made inside a tokio
    /// runtime, whose handle the worker threads use for the calls.
    pub fn new(
        name: &str,
        url: &str,
        timeout: Duration,
        share_paths: bool,
    ) -> Result<Self, ClientError> {
        Ok(HttpSegmenter {
            name: name.to_owned(),
            base: url.trim_end_matches('/').to_owned(),
            client: client(url, timeout)?,
            share_paths,
            handle: Handle::current(),
        })
    }

    /// Asks `GET {url}/health`: 200 is up, anything else down.
    pub async fn health(&self) -> Health {
        let started = Instant::now();
        let r = self
            .client
            .get(format!("{}/health", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.json::<serde_json::Value>().await.ok();
                Health {
                    up: status == reqwest::StatusCode::OK,
                    status: Some(status.as_u16()),
                    body,
                    error: None,
                    latency_ms,
                }
            }
            Err(e) => Health {
                up: false,
                status: None,
                body: None,
                error: Some(e.to_string()),
                latency_ms,
            },
        }
    }

    async fn call(&self, input: &Input<'_>) -> Result<SegmentResults, Failure> {
        let url = format!("{}/segment", self.base);
        let request = if self.share_paths {
            self.client
                .post(&url)
                .json(&serde_json::json!({ "image_path": input.path, "params": input.params }))
        } else {
            let format = super::decode::probe(input.bytes, input.limits)
                .map(|h| h.format)
                .unwrap_or("image");
            let image = reqwest::multipart::Part::bytes(input.bytes.to_vec())
                .file_name(input.name.to_owned())
                .mime_str(mime(format))
                .map_err(|e| Failure::permanent(ErrorCode::ML_REQUEST, e.to_string()))?;
            let params = reqwest::multipart::Part::text(
                serde_json::to_string(input.params).expect("params serialise to JSON"),
            )
            .mime_str("application/json")
            .map_err(|e| Failure::permanent(ErrorCode::ML_REQUEST, e.to_string()))?;
            let form = reqwest::multipart::Form::new()
                .part("image", image)
                .part("params", params);
            self.client.post(&url).multipart(form)
        };
        let resp = request.send().await.map_err(|e| classify(&e, &self.name))?;
        let (_, body) = receive(resp, &self.name).await?;
        reply_results(&self.name, &body)
    }
}

/// What the body of a successful (2xx) `/segment` reply says: the polygons, or why there are
/// none. Malformed JSON and success without results are transient (a service mid-deploy sends
/// them); `success: false` is permanent.
pub(crate) fn reply_polygons(name: &str, body: &[u8]) -> Result<Vec<Polygon>, Failure> {
    reply_results(name, body).map(|r| r.polygons)
}

/// [`reply_polygons`], with the service's `features` kept.
fn reply_results(name: &str, body: &[u8]) -> Result<SegmentResults, Failure> {
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let reply = serde_json::from_slice::<SegmentReply>(body).map_err(|e| {
        Failure::transient(
            ErrorCode::ML_MALFORMED,
            format!("{name} replied with malformed JSON ({e}): {}", snippet()),
        )
    })?;
    if !reply.success {
        return Err(Failure::permanent(
            ErrorCode::ML_ERROR,
            format!(
                "{name} could not segment the image: {}",
                reply.error.unwrap_or_else(|| "no reason given".into())
            ),
        ));
    }
    reply.results.ok_or_else(|| {
        Failure::transient(
            ErrorCode::ML_MALFORMED,
            format!("{name} sent success without results"),
        )
    })
}

impl HttpSegmenter {
    /// The call on the runtime, for the pool: what the service returned, or why not. It ends
    /// at `deadline` (a timeout) or soon after `stop` is asked (dropping the request, which
    /// closes its connection). No CPU-bound work happens here.
    pub async fn segment_reply(
        &self,
        input: &Input<'_>,
        stop: &Stop,
        deadline: Instant,
    ) -> Result<SegmentResults, Failure> {
        until(self.call(input), stop, deadline, &self.name).await
    }

    /// The result from the polygons of a call: decoding the image, checking and measuring the
    /// outlines (CPU-bound: on a thread, never on the runtime).
    pub fn result(
        &self,
        reply: SegmentResults,
        input: &Input<'_>,
        call_ms: f64,
    ) -> Result<SegmentResult, Failure> {
        let mut result = result_from_polygons(
            &reply.polygons,
            input,
            &self.name,
            vec![("ml call".into(), call_ms)],
        )?;
        result.ml = Some(MlOrigin {
            polygon_ids: ids_in_list_order(&reply.polygons),
            features: reply.features,
            model_input: None,
        });
        Ok(result)
    }
}

/// The service's polygon ids in the order a result lists its objects (each outline, then its
/// holes); none when they are not unique (they could not name the objects).
fn ids_in_list_order(polygons: &[Polygon]) -> Vec<String> {
    use crate::outline::PolygonKind;
    let mut holes: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for p in polygons.iter().filter(|p| p.kind == PolygonKind::Internal) {
        if let Some(parent) = &p.parent_id {
            holes.entry(parent).or_default().push(&p.id);
        }
    }
    let ids: Vec<String> = polygons
        .iter()
        .filter(|p| p.kind == PolygonKind::External)
        .flat_map(|p| {
            let own = holes.get(p.id.as_str()).into_iter().flatten().copied();
            std::iter::once(p.id.as_str()).chain(own)
        })
        .map(str::to_owned)
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    if unique.len() == ids.len() && ids.len() == polygons.len() {
        ids
    } else {
        Vec::new()
    }
}

/// Blocks the calling thread on the runtime for the call: for callers off the runtime (the pool
/// uses [`HttpSegmenter::segment_reply`] instead).
impl Segmenter for HttpSegmenter {
    fn name(&self) -> &str {
        &self.name
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        let started = Instant::now();
        (control.progress)(5);
        let reply =
            self.handle
                .block_on(self.segment_reply(input, control.stop, control.deadline))?;
        self.result(reply, input, started.elapsed().as_secs_f64() * 1e3)
    }
}

/// The reply spheroseg's own `/ml/segment` gives for a result or a failure, in the same contract:
/// `(HTTP status, body)`.
pub fn ml_reply(result: Result<&SegmentResult, &Failure>) -> (u16, SegmentReply) {
    match result {
        Ok(r) => (
            200,
            SegmentReply {
                success: true,
                results: Some(SegmentResults {
                    polygons: r.polygons(),
                    features: serde_json::to_value(&r.metrics).ok(),
                }),
                error: None,
            },
        ),
        Err(f) => {
            let (status, message) = match f {
                Failure::Permanent { message, .. } => (422, message.clone()),
                Failure::Transient { message, .. } | Failure::Unavailable { message, .. } => {
                    (503, message.clone())
                }
                Failure::Stopped => (503, "stopped".to_owned()),
            };
            (
                status,
                SegmentReply {
                    success: false,
                    results: None,
                    error: Some(message),
                },
            )
        }
    }
}
