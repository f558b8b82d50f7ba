//! The `oip` protocol: a model server speaking the Open Inference Protocol (KServe V2), as
//! Triton, KServe, MLServer and OpenVINO Model Server do. `GET /v2/models/{model}[/versions/{v}]`
//! says what the model takes (checked once into a [`Plan`], kept until a call fails on it);
//! `GET /v2/health/ready` and `.../ready` say whether it is up; `POST .../infer` segments.
//!
//! The image goes as the plan asks (`tensor.rs`), with the binary tensor extension unless
//! `binary` is off or the server refused it once (then JSON, for the rest of the process). The
//! reply's output is a probability or label map, thresholded at the original size and traced
//! like the builtin's outlines (`builtin/map.rs`), or a BYTES element holding the polygon JSON of
//! the replaced contract. The CPU-bound parts ([`OipClient::prepare`], [`OipClient::objects`])
//! run off the runtime; the calls on it. Statuses and transport errors classify as the
//! `spheroseg` protocol's do (`http.rs`).

pub mod plan;
pub mod tensor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use plan::{ModelMetadata, Plan};
pub use tensor::{Output, Scaling, Tensor};

use super::http::{ClientError, Health, classify, receive, until};
use super::result::MlOrigin;
use super::{Failure, Input, SegmentResult, Stop, result_from_objects, result_from_polygons};
use crate::error_code::ErrorCode;
use crate::outline::Object;
use crate::segment::builtin::{Map, min_area_px, objects_from_map, resize};

/// What a service's `[ml]` settings say about the model.
#[derive(Clone, Debug, PartialEq)]
pub struct OipSettings {
    pub model: String,
    pub version: Option<String>,
    /// The output tensor to read; needed when the model has several.
    pub output: Option<String>,
    /// Map values above it are foreground.
    pub threshold: f32,
    /// Send tensors in the binary extension (else JSON numbers).
    pub binary: bool,
}

/// A model on a V2 server.
pub struct OipClient {
    name: String,
    base: String,
    settings: OipSettings,
    client: reqwest::Client,
    /// Cleared when the server refuses a binary request.
    binary: AtomicBool,
    /// Set once a binary request succeeded: later errors are the server's, not the format's.
    binary_works: AtomicBool,
    plan: Mutex<Option<Arc<Plan>>>,
    /// The runtime the blocking [`OipClient::segment`] calls on.
    handle: tokio::runtime::Handle,
}

/// A request ready to send.
pub struct Prepared {
    pub plan: Arc<Plan>,
    pub tensor: Tensor,
    body: tensor::Body,
}

impl OipClient {
    /// A client for `settings.model` on the server at `url`; must be made inside a tokio runtime.
    pub fn new(
        name: &str,
        url: &str,
        timeout: Duration,
        settings: OipSettings,
    ) -> Result<Self, ClientError> {
        let client = super::http::client(url, timeout)?;
        Ok(OipClient {
            name: name.to_owned(),
            base: url.trim_end_matches('/').to_owned(),
            binary: AtomicBool::new(settings.binary),
            binary_works: AtomicBool::new(false),
            settings,
            client,
            plan: Mutex::new(None),
            handle: tokio::runtime::Handle::current(),
        })
    }

    /// `{url}/v2/models/{model}[/versions/{v}]`.
    fn model_url(&self) -> String {
        let mut u = format!("{}/v2/models/{}", self.base, self.settings.model);
        if let Some(v) = &self.settings.version {
            u.push_str("/versions/");
            u.push_str(v);
        }
        u
    }

    /// The model as messages name it.
    fn model(&self) -> String {
        match &self.settings.version {
            Some(v) => format!("{} version {v}", self.settings.model),
            None => self.settings.model.clone(),
        }
    }

    /// Whether requests go in the binary extension now.
    pub fn sends_binary(&self) -> bool {
        self.binary.load(Ordering::Relaxed)
    }

    /// Up when the server is ready (`/v2/health/ready`) and so is the model (`.../ready`).
    pub async fn health(&self) -> Health {
        let started = Instant::now();
        let mut status = None;
        let mut error = None;
        for url in [
            format!("{}/v2/health/ready", self.base),
            format!("{}/ready", self.model_url()),
        ] {
            match self
                .client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => status = Some(r.status().as_u16()),
                Ok(r) => {
                    status = Some(r.status().as_u16());
                    error = Some(format!("{url} answered {}", r.status()));
                    break;
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        Health {
            up: error.is_none(),
            status,
            body: None,
            error,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// The model's metadata, as it says it.
    pub async fn metadata(&self) -> Result<ModelMetadata, Failure> {
        let resp = self
            .client
            .get(self.model_url())
            .send()
            .await
            .map_err(|e| classify(&e, &self.name))?;
        let (_, body) = receive(resp, &self.name).await.map_err(|f| match f {
            // A 404 here is a model the server does not have: a setting to fix.
            Failure::Permanent { message, .. } => Failure::permanent(
                ErrorCode::ML_MODEL_MISMATCH,
                format!(
                    "cannot read the metadata of model {}: {message}",
                    self.model()
                ),
            ),
            f => f,
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            Failure::transient(
                ErrorCode::ML_MALFORMED,
                format!("{} sent model metadata that is not V2 JSON: {e}", self.name),
            )
        })
    }

    /// The checked plan, read once and kept.
    pub async fn plan(&self) -> Result<Arc<Plan>, Failure> {
        if let Some(p) = self.plan.lock().expect("plan lock").clone() {
            return Ok(p);
        }
        let meta = self.metadata().await?;
        let plan = Plan::new(&meta, &self.model(), self.settings.output.as_deref())
            .map_err(|m| Failure::permanent(ErrorCode::ML_MODEL_MISMATCH, m))?;
        let plan = Arc::new(plan);
        *self.plan.lock().expect("plan lock") = Some(Arc::clone(&plan));
        Ok(plan)
    }

    /// The request for one image (CPU-bound: decodes and resizes for a pixel input).
    pub fn prepare(&self, plan: Arc<Plan>, input: &Input<'_>) -> Result<Prepared, Failure> {
        let tensor = match plan.kind {
            plan::InputKind::Encoded { .. } => tensor::encoded(&plan, input.bytes),
            plan::InputKind::Pixels { .. } => {
                let header = super::decode::probe(input.bytes, input.limits)
                    .map_err(|e| Failure::permanent(e.code(), e.to_string()))?;
                let _reserved = input
                    .budget
                    .reserve_unless(header.footprint().decode_bytes(), || false);
                let d = super::decode::decode(input.bytes, input.limits)
                    .map_err(|e| Failure::permanent(e.code(), e.to_string()))?;
                let max = match d.bit_depth {
                    8 => 255.0,
                    16 => 65535.0,
                    _ => d
                        .gray
                        .data
                        .iter()
                        .copied()
                        .fold(f32::MIN_POSITIVE, f32::max),
                };
                let (w, h) = (d.gray.width as usize, d.gray.height as usize);
                tensor::pixels(&plan, &d.gray.data, w, h, max)
            }
        };
        let body = tensor::request(&tensor, &plan.output, self.sends_binary());
        Ok(Prepared { plan, tensor, body })
    }

    /// `POST .../infer` and the chosen output. Until a binary request has succeeded, one the
    /// server answers with 4xx or 500, or drops while it is sent (MLServer 1.7 cannot parse the
    /// extension: it answers 500, or resets the connection before a large body is read), is sent
    /// again as JSON, and so is every later request.
    pub async fn infer(&self, prepared: &Prepared) -> Result<Output, Failure> {
        let plan = &prepared.plan;
        let trying =
            prepared.body.header_len.is_some() && !self.binary_works.load(Ordering::Relaxed);
        let refused = match self.send(&prepared.body).await {
            Ok(resp) => {
                let status = resp.status();
                if trying
                    && (status.is_client_error()
                        || status == reqwest::StatusCode::INTERNAL_SERVER_ERROR)
                {
                    Err(receive(resp, &self.name)
                        .await
                        .err()
                        .and_then(|f| f.message().map(str::to_owned))
                        .unwrap_or_default())
                } else {
                    Ok(resp)
                }
            }
            Err(Failure::Transient { code, message })
                if trying && code == ErrorCode::ML_UNAVAILABLE =>
            {
                Err(message)
            }
            Err(f) => return Err(f),
        };
        let (headers, body) = match refused {
            Ok(resp) => {
                let answer = receive(resp, &self.name).await?;
                if prepared.body.header_len.is_some() {
                    self.binary_works.store(true, Ordering::Relaxed);
                }
                answer
            }
            Err(why) => {
                if self.binary.swap(false, Ordering::Relaxed) {
                    tracing::warn!(ml.service = %self.name, reason = %why,
                        "the model server refused a binary tensor request; sending JSON from now on");
                }
                let json = tensor::request(&prepared.tensor, &plan.output, false);
                // The refused request's connection may be the one the server resets: once more
                // on a fresh one.
                let resp = match self.send(&json).await {
                    Err(Failure::Transient { code, .. }) if code == ErrorCode::ML_UNAVAILABLE => {
                        self.send(&json).await?
                    }
                    other => other?,
                };
                receive(resp, &self.name).await?
            }
        };
        let header_len = headers
            .get(tensor::HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        tensor::output(&body, header_len, &plan.output).map_err(|m| {
            // The plan may be stale (the model was replaced): read the metadata again next time.
            *self.plan.lock().expect("plan lock") = None;
            Failure::permanent(
                ErrorCode::ML_MODEL_MISMATCH,
                format!("model {}: {m}", self.model()),
            )
        })
    }

    async fn send(&self, body: &tensor::Body) -> Result<reqwest::Response, Failure> {
        let mut req = self
            .client
            .post(format!("{}/infer", self.model_url()))
            .body(body.bytes.clone());
        req = match body.header_len {
            Some(n) => req
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(tensor::HEADER_LENGTH, n.to_string()),
            None => req.header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        req.send().await.map_err(|e| classify(&e, &self.name))
    }

    /// The service's name (in messages and results).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`OipClient::infer`] on the runtime until `deadline` (a timeout) or soon after `stop`.
    pub async fn call(
        &self,
        prepared: &Prepared,
        stop: &Stop,
        deadline: Instant,
    ) -> Result<Output, Failure> {
        until(self.infer(prepared), stop, deadline, &self.name).await
    }

    /// The result from an output (CPU-bound: on a thread, never on the runtime): a map traced
    /// at the image's size, or the polygons as the replaced contract's; checked and measured.
    pub fn result(
        &self,
        output: Output,
        scaling: Option<Scaling>,
        input: &Input<'_>,
        call_ms: f64,
    ) -> Result<SegmentResult, Failure> {
        let timings = vec![("ml call".into(), call_ms)];
        match output {
            Output::Map { w, h, data } => {
                let started = Instant::now();
                let objects = self.objects(w, h, &data, input)?;
                let mut timings = timings;
                timings.push(("trace".into(), started.elapsed().as_secs_f64() * 1e3));
                let mut r = result_from_objects(objects, input, &self.name, timings)?;
                r.ml = Some(MlOrigin {
                    model_input: scaling,
                    ..MlOrigin::default()
                });
                Ok(r)
            }
            Output::Polygons(p) => result_from_polygons(&p, input, &self.name, timings),
        }
    }

    /// The whole job, blocking the calling thread on the runtime for the calls: for callers off
    /// the runtime (the pool prepares, calls and measures in their own places instead).
    pub fn segment(
        &self,
        input: &Input<'_>,
        control: &mut super::Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        let started = Instant::now();
        (control.progress)(5);
        let plan = self.handle.block_on(self.plan())?;
        let prepared = self.prepare(plan, input)?;
        let output = self
            .handle
            .block_on(self.call(&prepared, control.stop, control.deadline))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.result(output, prepared.tensor.scaling, input, ms)
    }

    /// The objects of a map output, at the image's size (CPU-bound): resized back, thresholded
    /// at the service's threshold, traced and simplified as the job's parameters say.
    pub fn objects(
        &self,
        w: usize,
        h: usize,
        data: &[f32],
        input: &Input<'_>,
    ) -> Result<Vec<Object>, Failure> {
        let header = super::decode::probe(input.bytes, input.limits)
            .map_err(|e| Failure::permanent(e.code(), e.to_string()))?;
        let (iw, ih) = (header.width as usize, header.height as usize);
        let map = resize(data, w, h, iw, ih);
        Ok(objects_from_map(
            &Map {
                w: iw,
                h: ih,
                data: &map,
            },
            self.settings.threshold,
            min_area_px(input.params, iw, ih),
            f64::from(input.params.simplify_epsilon),
        ))
    }
}
