//! `[[ml.service]]` entries: the remote ML services, each with its own circuit breaker and calls
//! in flight, each serving the segmenter its jobs name (`segmenter = "resunet"`; several services
//! may serve one). `[ml]`'s `url` (and the replaced system's `ML_SERVICE_URL`) is one more entry,
//! named `http` and serving `http`; `[ml]`'s other keys are the defaults of every entry.
//!
//! Validation checks each entry on its own (a name, an http(s) URL, a model for `oip`, weight and
//! limits in range) and the entries against each other (no name twice). The entries of every
//! layer add up, as `[[watch]]` entries do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, MlConfig, unit};
use crate::segment::SegmenterId;

/// How spheroseg talks to a remote service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `POST {url}/segment` with the image, `GET {url}/health` (ML-CONTRACT.md).
    #[default]
    Spheroseg,
    /// The Open Inference Protocol (KServe V2): `model` and `version` name what to call.
    Oip,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Spheroseg => "spheroseg",
            Protocol::Oip => "oip",
        }
    }
}

/// One `[[ml.service]]` entry as written; `name` and `url` are required.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceLayer {
    pub name: Option<String>,
    pub segmenter: Option<String>,
    pub url: Option<String>,
    pub protocol: Option<Protocol>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub max_in_flight: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub error_threshold_pct: Option<u32>,
    pub reset_timeout_ms: Option<u64>,
    pub min_calls: Option<u32>,
    pub slow_call_ms: Option<u64>,
    pub open_cap_ms: Option<u64>,
    pub half_open_trials: Option<u32>,
    pub share_paths: Option<bool>,
    pub weight: Option<u32>,
    pub output: Option<String>,
    pub threshold: Option<f32>,
    pub binary: Option<bool>,
    /// Where the entry came from; set by the layering.
    #[serde(skip)]
    pub origin: String,
}

/// A validated remote ML service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// Its own name: in `/api/ml`, the metrics' labels, the breaker's reset.
    pub name: SegmenterId,
    /// The segmenter whose jobs it takes (its name unless set).
    pub segmenter: SegmenterId,
    pub url: String,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub max_in_flight: u32,
    #[serde(rename = "timeout_ms", serialize_with = "unit::ms")]
    pub timeout: Duration,
    pub error_threshold_pct: u32,
    #[serde(rename = "reset_timeout_ms", serialize_with = "unit::ms")]
    pub reset_timeout: Duration,
    pub min_calls: u32,
    #[serde(rename = "slow_call_ms", serialize_with = "unit::ms")]
    pub slow_call: Duration,
    #[serde(rename = "open_cap_ms", serialize_with = "unit::ms")]
    pub open_cap: Duration,
    pub half_open_trials: u32,
    pub share_paths: bool,
    /// Its share of the calls against the other services of its segmenter.
    pub weight: u32,
    /// `oip`: the output tensor to read (needed when the model has several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `oip`: map values above it are foreground.
    pub threshold: f32,
    /// `oip`: send tensors in the binary extension (else JSON, as after a server refused it).
    pub binary: bool,
}

impl ServiceConfig {
    /// The `[ml]` service (`ml.url`), as an entry named and serving `http`.
    pub fn from_ml(ml: &MlConfig, url: &str) -> Self {
        let http = SegmenterId::new(SegmenterId::HTTP).expect("a valid name");
        ServiceConfig {
            name: http.clone(),
            segmenter: http,
            url: url.to_owned(),
            protocol: ml.protocol,
            model: ml.model.clone(),
            version: ml.version.clone(),
            output: ml.output.clone(),
            threshold: ml.threshold,
            binary: ml.binary,
            max_in_flight: ml.max_in_flight,
            timeout: ml.timeout,
            error_threshold_pct: ml.error_threshold_pct,
            reset_timeout: ml.reset_timeout,
            min_calls: ml.min_calls,
            slow_call: ml.slow_call,
            open_cap: ml.open_cap,
            half_open_trials: ml.half_open_trials,
            share_paths: ml.share_paths,
            weight: 1,
        }
    }

    /// Its circuit breaker's settings.
    pub fn breaker(&self) -> crate::segment::breaker::BreakerConfig {
        crate::segment::breaker::BreakerConfig {
            min_calls: self.min_calls,
            failure_threshold: f64::from(self.error_threshold_pct) / 100.0,
            slow_call: self.slow_call,
            open_base: self.reset_timeout,
            open_cap: self.open_cap,
            half_open_trials: self.half_open_trials,
            ..crate::segment::breaker::BreakerConfig::default()
        }
    }
}

/// Whether `u` is an `http://` or `https://` URL with a host; the message says what is wrong.
pub(super) fn check_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        None => Err(format!("{u:?} is not an http:// or https:// URL")),
        Some(r) if r.split('/').next().is_none_or(str::is_empty) => {
            Err(format!("{u:?} names no host, e.g. http://ml-server:5002"))
        }
        Some(r) if r.chars().any(char::is_whitespace) => Err(format!("{u:?} contains white space")),
        Some(_) => Ok(()),
    }
}

/// A model or version name as it goes into `/v2/models/{model}/versions/{version}`: letters,
/// digits, `-`, `_` and `.`; empty is none.
pub(super) fn model_name(v: Option<String>) -> Result<Option<String>, String> {
    match v.filter(|v| !v.trim().is_empty()) {
        Some(v)
            if !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                || v == "."
                || v == ".." =>
        {
            Err(format!(
                "{v:?} is not a model name: use letters, digits, -, _ and ."
            ))
        }
        v => Ok(v),
    }
}

/// The names a service may not take: the segmenters that are not remote services.
const RESERVED: &[&str] = &[SegmenterId::BUILTIN, SegmenterId::COMMAND];

/// Validates the `[[ml.service]]` entries, `[ml]`'s values as their defaults. `http_taken`: the
/// `[ml]` service exists and holds the name `http`.
pub(super) fn validate(
    layers: Vec<ServiceLayer>,
    ml: &MlConfig,
    http_taken: bool,
) -> Result<Vec<ServiceConfig>, ConfigError> {
    let mut out: Vec<ServiceConfig> = Vec::new();
    for (i, l) in layers.into_iter().enumerate() {
        let origin = l.origin.clone();
        let err = |field: &str, message: String| ConfigError {
            key: format!("ml.service[{i}].{field}"),
            origin: origin.clone(),
            message,
        };
        let s = entry(l, ml).map_err(|(f, m)| err(f, m))?;
        let taken = (http_taken && s.name.as_str() == SegmenterId::HTTP)
            .then_some("the [ml] service (ml.url)".to_owned())
            .or_else(|| {
                out.iter()
                    .position(|o| o.name == s.name)
                    .map(|j| format!("ml.service[{j}]"))
            });
        if let Some(other) = taken {
            return Err(err(
                "name",
                format!(
                    "{:?} is already the name of {other}: give each service its own",
                    s.name.as_str()
                ),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

type FieldError = (&'static str, String);

fn entry(l: ServiceLayer, ml: &MlConfig) -> Result<ServiceConfig, FieldError> {
    let name = l
        .name
        .ok_or(("name", "every [[ml.service]] entry needs a name".to_owned()))?;
    let name = SegmenterId::new(&name).map_err(|m| ("name", m))?;
    if RESERVED.contains(&name.as_str()) {
        return Err((
            "name",
            format!("{name:?} names another segmenter: choose another name"),
        ));
    }
    let segmenter = match l.segmenter {
        Some(s) => SegmenterId::new(&s).map_err(|m| ("segmenter", m))?,
        None => name.clone(),
    };
    if RESERVED.contains(&segmenter.as_str()) {
        return Err((
            "segmenter",
            format!(
                "{:?} is not served by remote services: name the segmenter jobs ask for, e.g. \"resunet\"",
                segmenter.as_str()
            ),
        ));
    }
    let url = l
        .url
        .filter(|u| !u.is_empty())
        .ok_or(("url", "every [[ml.service]] entry needs a url".to_owned()))?;
    check_url(&url).map_err(|m| ("url", m))?;
    let protocol = l.protocol.unwrap_or_default();
    let model = model_name(l.model).map_err(|m| ("model", m))?;
    let version = model_name(l.version).map_err(|m| ("version", m))?;
    let threshold = l.threshold.unwrap_or(ml.threshold);
    if !threshold.is_finite() {
        return Err(("threshold", format!("{threshold} is not a number")));
    }
    if protocol == Protocol::Oip && model.is_none() {
        return Err((
            "model",
            "protocol \"oip\" needs the model to call (its name on the model server)".into(),
        ));
    }
    let range =
        |field: &'static str, v: Option<u64>, default: u64, lo: u64, hi: u64, unit: &str| {
            let v = v.unwrap_or(default);
            if v < lo || v > hi {
                Err((
                    field,
                    format!("{v} is out of range: use {lo} to {hi}{unit}"),
                ))
            } else {
                Ok(v)
            }
        };
    let ms = Duration::from_millis;
    let small = |field, v: Option<u32>, default: u32, lo, hi, unit: &str| {
        range(field, v.map(u64::from), u64::from(default), lo, hi, unit).map(|v| v as u32)
    };
    Ok(ServiceConfig {
        max_in_flight: small(
            "max_in_flight",
            l.max_in_flight,
            ml.max_in_flight,
            1,
            1024,
            " calls",
        )?,
        timeout: ms(range(
            "timeout_ms",
            l.timeout_ms,
            ml.timeout.as_millis() as u64,
            100,
            86_400_000,
            " ms",
        )?),
        error_threshold_pct: small(
            "error_threshold_pct",
            l.error_threshold_pct,
            ml.error_threshold_pct,
            1,
            100,
            " %",
        )?,
        reset_timeout: ms(range(
            "reset_timeout_ms",
            l.reset_timeout_ms,
            ml.reset_timeout.as_millis() as u64,
            100,
            86_400_000,
            " ms",
        )?),
        min_calls: small("min_calls", l.min_calls, ml.min_calls, 1, 10_000, " calls")?,
        slow_call: ms(range(
            "slow_call_ms",
            l.slow_call_ms,
            ml.slow_call.as_millis() as u64,
            1,
            86_400_000,
            " ms",
        )?),
        open_cap: ms(range(
            "open_cap_ms",
            l.open_cap_ms,
            ml.open_cap.as_millis() as u64,
            100,
            86_400_000,
            " ms",
        )?),
        half_open_trials: small(
            "half_open_trials",
            l.half_open_trials,
            ml.half_open_trials,
            1,
            100,
            " calls",
        )?,
        weight: small(
            "weight",
            l.weight,
            1,
            1,
            1000,
            " (its share of the calls; 0 would never get one)",
        )?,
        share_paths: l.share_paths.unwrap_or(ml.share_paths),
        output: l.output.filter(|o| !o.is_empty()),
        threshold,
        binary: l.binary.unwrap_or(ml.binary),
        version,
        name,
        segmenter,
        url,
        protocol,
        model,
    })
}

#[cfg(test)]
mod tests;
