//! The layers a configuration is merged from, each a [`Layer`] of optional values: the file
//! (`spheroseg.toml` or `--config FILE`), the environment (`SPHEROSEG_…` and the replaced
//! system's names) and the command-line flags. Reading a layer checks only its syntax; merging
//! remembers where each key's value came from, for the errors of validation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::{ConfigError, Fallback, Protocol, WatchLayer};
use crate::segment::SegmenterId;

/// One source's values; `None` leaves the key to the layers below.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Layer {
    pub data_dir: Option<PathBuf>,
    pub import_dirs: Option<Vec<PathBuf>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub bind: Option<String>,
    pub workers: Option<usize>,
    pub segmenter: Option<SegmenterId>,
    pub shutdown_grace_secs: Option<u64>,
    pub shutdown_delay_ms: Option<u64>,
    pub queue: QueueLayer,
    pub retention: RetentionLayer,
    pub ml: MlLayer,
    pub limits: LimitsLayer,
    pub auth: AuthLayer,
    pub command: CommandLayer,
    /// `[[watch]]` entries; the entries of every layer add up.
    pub watch: Option<Vec<WatchLayer>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthLayer {
    pub token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsLayer {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub max_megapixels: Option<u32>,
    pub max_upload_mb: Option<u64>,
    pub decode_budget_mb: Option<u64>,
    pub disk_low_water_mb: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLayer {
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_factor: Option<f64>,
    pub backoff_jitter: Option<f64>,
    pub backoff_cap_secs: Option<u64>,
    pub aging_secs: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    pub cache_mb: Option<u64>,
    pub builtin_timeout_secs: Option<u64>,
    pub events_buffer: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionLayer {
    pub completed_days: Option<u64>,
    pub completed_max: Option<u64>,
    pub failed_days: Option<u64>,
    pub failed_max: Option<u64>,
    pub cancelled_days: Option<u64>,
    pub cancelled_max: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlLayer {
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub error_threshold_pct: Option<u32>,
    pub reset_timeout_ms: Option<u64>,
    pub min_calls: Option<u32>,
    pub slow_call_ms: Option<u64>,
    pub open_cap_ms: Option<u64>,
    pub half_open_trials: Option<u32>,
    pub share_paths: Option<bool>,
    pub max_in_flight: Option<u32>,
    pub fallback: Option<Fallback>,
    /// `[[ml.service]]` entries; the entries of every layer add up.
    pub service: Option<Vec<super::ServiceLayer>>,
    pub protocol: Option<Protocol>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub output: Option<String>,
    pub threshold: Option<f32>,
    pub binary: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandLayer {
    pub argv: Option<Vec<String>>,
    pub max_parallel: Option<u32>,
}

/// Where each layer comes from.
#[derive(Debug, Default)]
pub struct Sources {
    /// `--config FILE`; when absent, `./spheroseg.toml` is read if it exists.
    pub file: Option<PathBuf>,
    /// The process environment (injected so tests need not change it).
    pub env: HashMap<String, String>,
    /// Values from command-line flags.
    pub flags: Layer,
}

/// The environment variables read, with the key each sets. Earlier names win over later ones for
/// the same key, so `SPHEROSEG_WORKERS` beats `QUEUE_CONCURRENCY`.
const ENV: &[(&str, &str)] = &[
    ("SPHEROSEG_DATA_DIR", "data_dir"),
    ("SPHEROSEG_BIND", "bind"),
    ("SPHEROSEG_ALLOWED_HOSTS", "allowed_hosts"),
    ("SPHEROSEG_ALLOWED_ORIGINS", "allowed_origins"),
    ("SPHEROSEG_WORKERS", "workers"),
    ("QUEUE_CONCURRENCY", "workers"),
    ("SPHEROSEG_TOKEN", "auth.token"),
    ("SPHEROSEG_SEGMENTER", "segmenter"),
    ("SPHEROSEG_SHUTDOWN_GRACE_SECS", "shutdown_grace_secs"),
    ("SPHEROSEG_MAX_ATTEMPTS", "queue.max_attempts"),
    ("SPHEROSEG_AGING_SECS", "queue.aging_secs"),
    ("SPHEROSEG_LEASE_TTL_SECS", "queue.lease_ttl_secs"),
    ("SPHEROSEG_ML_URL", "ml.url"),
    ("ML_SERVICE_URL", "ml.url"),
    ("ML_SERVICE_TIMEOUT", "ml.timeout_ms"),
    ("ML_ERROR_THRESHOLD", "ml.error_threshold_pct"),
    ("ML_RESET_TIMEOUT", "ml.reset_timeout_ms"),
];

/// Variables of the replaced deployment that mean nothing here.
pub(super) const IGNORED_ENV: &[&str] = &["REDIS_URL", "DATABASE_URL"];

pub(super) fn read_file(explicit: Option<&Path>) -> Result<(Layer, Option<String>), ConfigError> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let p = PathBuf::from("spheroseg.toml");
            if !p.exists() {
                return Ok((Layer::default(), None));
            }
            p
        }
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        key: "--config".into(),
        origin: name.clone(),
        message: format!("cannot read the file: {e}"),
    })?;
    let layer: Layer = toml::from_str(&text).map_err(|e| ConfigError {
        key: e.span().map_or_else(
            || "the file".to_owned(),
            |s| format!("line {}", text[..s.start].matches('\n').count() + 1),
        ),
        origin: name.clone(),
        message: e.message().to_owned(),
    })?;
    Ok((layer, Some(name)))
}

pub(super) fn env_layer(
    env: &HashMap<String, String>,
    origins: &mut HashMap<&'static str, String>,
) -> Result<Layer, ConfigError> {
    let mut l = Layer::default();
    // Walk from the lowest-precedence name up so the first-listed name is applied last and wins.
    for &(var, key) in ENV.iter().rev() {
        let Some(raw) = env.get(var) else { continue };
        let origin = format!("environment variable {var}");
        let bad = |message: String| ConfigError {
            key: key.into(),
            origin: origin.clone(),
            message,
        };
        fn num<T: FromStr>(raw: &str) -> Result<T, String>
        where
            T::Err: fmt::Display,
        {
            raw.trim()
                .parse()
                .map_err(|e| format!("{raw:?} is not a number: {e}"))
        }
        match key {
            "data_dir" => l.data_dir = Some(raw.into()),
            "bind" => l.bind = Some(raw.clone()),
            "allowed_hosts" => l.allowed_hosts = Some(list(raw)),
            "allowed_origins" => l.allowed_origins = Some(list(raw)),
            "workers" => l.workers = Some(num(raw).map_err(bad)?),
            "auth.token" => l.auth.token = Some(raw.clone()),
            "segmenter" => l.segmenter = Some(raw.parse().map_err(bad)?),
            "shutdown_grace_secs" => l.shutdown_grace_secs = Some(num(raw).map_err(bad)?),
            "queue.max_attempts" => l.queue.max_attempts = Some(num(raw).map_err(bad)?),
            "queue.aging_secs" => l.queue.aging_secs = Some(num(raw).map_err(bad)?),
            "queue.lease_ttl_secs" => l.queue.lease_ttl_secs = Some(num(raw).map_err(bad)?),
            "ml.url" => l.ml.url = Some(raw.clone()),
            "ml.timeout_ms" => l.ml.timeout_ms = Some(num(raw).map_err(bad)?),
            "ml.error_threshold_pct" => l.ml.error_threshold_pct = Some(num(raw).map_err(bad)?),
            "ml.reset_timeout_ms" => l.ml.reset_timeout_ms = Some(num(raw).map_err(bad)?),
            other => unreachable!("ENV names key {other} that env_layer does not set"),
        }
        origins.insert(key, origin);
    }
    Ok(l)
}

/// A comma-separated environment list; empty items dropped.
fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Copies every value `top` sets over `base`, remembering where it came from. An empty `origin`
/// keeps the origins already recorded (the environment layer records its own, per variable).
pub(super) fn overlay(
    base: &mut Layer,
    top: &Layer,
    origin: &str,
    origins: &mut HashMap<&'static str, String>,
) {
    macro_rules! take {
        ($($field:ident).+, $key:literal) => {
            if let Some(v) = &top.$($field).+ {
                base.$($field).+ = Some(v.clone());
                if !origin.is_empty() {
                    origins.insert($key, origin.to_owned());
                }
            }
        };
    }
    take!(data_dir, "data_dir");
    take!(import_dirs, "import_dirs");
    take!(allowed_hosts, "allowed_hosts");
    take!(allowed_origins, "allowed_origins");
    take!(bind, "bind");
    take!(workers, "workers");
    take!(auth.token, "auth.token");
    take!(segmenter, "segmenter");
    take!(shutdown_grace_secs, "shutdown_grace_secs");
    take!(shutdown_delay_ms, "shutdown_delay_ms");
    take!(queue.max_attempts, "queue.max_attempts");
    take!(queue.backoff_base_ms, "queue.backoff_base_ms");
    take!(queue.backoff_factor, "queue.backoff_factor");
    take!(queue.backoff_jitter, "queue.backoff_jitter");
    take!(queue.backoff_cap_secs, "queue.backoff_cap_secs");
    take!(queue.aging_secs, "queue.aging_secs");
    take!(queue.lease_ttl_secs, "queue.lease_ttl_secs");
    take!(queue.cache_mb, "queue.cache_mb");
    take!(queue.builtin_timeout_secs, "queue.builtin_timeout_secs");
    take!(queue.events_buffer, "queue.events_buffer");
    take!(retention.completed_days, "retention.completed_days");
    take!(retention.completed_max, "retention.completed_max");
    take!(retention.failed_days, "retention.failed_days");
    take!(retention.failed_max, "retention.failed_max");
    take!(retention.cancelled_days, "retention.cancelled_days");
    take!(retention.cancelled_max, "retention.cancelled_max");
    take!(ml.url, "ml.url");
    take!(ml.timeout_ms, "ml.timeout_ms");
    take!(ml.error_threshold_pct, "ml.error_threshold_pct");
    take!(ml.reset_timeout_ms, "ml.reset_timeout_ms");
    take!(ml.min_calls, "ml.min_calls");
    take!(ml.slow_call_ms, "ml.slow_call_ms");
    take!(ml.open_cap_ms, "ml.open_cap_ms");
    take!(ml.half_open_trials, "ml.half_open_trials");
    take!(ml.fallback, "ml.fallback");
    take!(ml.share_paths, "ml.share_paths");
    take!(ml.max_in_flight, "ml.max_in_flight");
    take!(ml.protocol, "ml.protocol");
    take!(ml.model, "ml.model");
    take!(ml.version, "ml.version");
    take!(ml.output, "ml.output");
    take!(ml.threshold, "ml.threshold");
    take!(ml.binary, "ml.binary");
    take!(command.argv, "command.argv");
    take!(command.max_parallel, "command.max_parallel");
    take!(limits.max_width, "limits.max_width");
    take!(limits.max_height, "limits.max_height");
    take!(limits.max_megapixels, "limits.max_megapixels");
    take!(limits.max_upload_mb, "limits.max_upload_mb");
    take!(limits.decode_budget_mb, "limits.decode_budget_mb");
    take!(limits.disk_low_water_mb, "limits.disk_low_water_mb");
    if let Some(entries) = &top.ml.service {
        let all = base.ml.service.get_or_insert_default();
        all.extend(entries.iter().cloned().map(|mut e| {
            if e.origin.is_empty() {
                e.origin = origin.to_owned();
            }
            e
        }));
    }
    if let Some(entries) = &top.watch {
        let all = base.watch.get_or_insert_default();
        all.extend(entries.iter().cloned().map(|mut e| {
            if e.origin.is_empty() {
                e.origin = origin.to_owned();
            }
            e
        }));
    }
}
