//! The one `Config`: built from defaults < `spheroseg.toml` (`--config FILE`) < environment
//! (`SPHEROSEG_…` and the replaced system's names) < command-line flags, validated once into typed
//! values and passed down. Nothing else reads the environment.
//!
//! Every layer is a [`Layer`] of optional values; the first layer that sets a key wins from the top.
//! A bad value is one [`ConfigError`] that names the key and where the value came from.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::queue::{Backoff, Limit, QueueOptions, Retention};
use crate::segment::SegmenterId;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration: {key} (from {origin}): {message}")]
pub struct ConfigError {
    /// The key as written in `spheroseg.toml`, e.g. `queue.max_attempts`.
    pub key: String,
    /// Where the value came from: the file, an environment variable or a flag.
    pub origin: String,
    pub message: String,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Directories whose files `POST /api/jobs` may import by path (JSON `{"paths": [...]}`).
    pub import_dirs: Vec<PathBuf>,
    /// Host names besides the loopback names and the bound address by which spheroseg is
    /// reached (`lab-server`, `lab.example.org:8443`, `*.lab.example.org`); any other `Host` is
    /// refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<HostRule>,
    /// Browser origins besides spheroseg's own whose pages may change the queue and open the
    /// WebSocket, e.g. a portal at `https://portal.example.org`.
    pub allowed_origins: Vec<String>,
    pub bind: SocketAddr,
    pub workers: usize,
    /// Which segmenter a job uses when it does not say.
    pub segmenter: SegmenterId,
    /// How long running jobs get to finish on shutdown.
    #[serde(rename = "shutdown_grace_secs", serialize_with = "unit::secs")]
    pub shutdown_grace: Duration,
    /// Between readiness turning false and the listener closing on shutdown, so a load balancer
    /// or Kubernetes sees "not ready" and stops sending first.
    #[serde(rename = "shutdown_delay_ms", serialize_with = "unit::ms")]
    pub shutdown_delay: Duration,
    pub queue: QueueConfig,
    pub retention: RetentionConfig,
    pub ml: MlConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub command: CommandConfig,
    /// Folders whose images are taken by themselves (`[[watch]]`, `serve --watch DIR`).
    pub watch: Vec<WatchConfig>,
}

/// API authentication.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuthConfig {
    /// Bearer token every route but liveness requires when set; required when `bind` is not a
    /// loopback address. Shown as `"<set>"` by `config show`.
    #[serde(serialize_with = "redact")]
    pub token: Option<String>,
}

/// The largest image accepted (checked from the header, before decoding).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LimitsConfig {
    pub max_width: u32,
    pub max_height: u32,
    pub max_megapixels: u32,
    /// The largest HTTP request body (an upload of many images).
    pub max_upload_mb: u64,
    /// Decoded image bytes in flight at once, uploads and jobs together; 0 is a quarter of the
    /// machine's memory, at most 2 GiB.
    pub decode_budget_mb: u64,
    /// Free space on the data directory's file system under which no image is taken and
    /// spheroseg reports itself not ready; 0 is 1 GiB or 2 % of the file system, the smaller.
    pub disk_low_water_mb: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueConfig {
    pub max_attempts: u32,
    #[serde(rename = "backoff_base_ms", serialize_with = "unit::ms")]
    pub backoff_base: Duration,
    pub backoff_factor: f64,
    pub backoff_jitter: f64,
    #[serde(rename = "backoff_cap_secs", serialize_with = "unit::secs")]
    pub backoff_cap: Duration,
    /// Lift a waiting job one level per this much waiting; `None` is strict priority.
    #[serde(rename = "aging_secs", serialize_with = "unit::secs_or_zero")]
    pub aging: Option<Duration>,
    #[serde(rename = "lease_ttl_secs", serialize_with = "unit::secs")]
    pub lease_ttl: Duration,
    pub cache_mb: u64,
    /// Longest a builtin job may run.
    #[serde(rename = "builtin_timeout_secs", serialize_with = "unit::secs")]
    pub builtin_timeout: Duration,
    /// Events kept for clients that reconnect with `since`.
    pub events_buffer: usize,
}

/// How long finished jobs are kept, per state; `None` is no limit (0 in the file). Completed
/// jobs hold the lab's results and have no limit unless one is set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetentionConfig {
    #[serde(rename = "completed_days", serialize_with = "unit::days_or_zero")]
    pub completed_age: Option<Duration>,
    #[serde(serialize_with = "unit::count_or_zero")]
    pub completed_max: Option<u64>,
    #[serde(rename = "failed_days", serialize_with = "unit::days_or_zero")]
    pub failed_age: Option<Duration>,
    #[serde(serialize_with = "unit::count_or_zero")]
    pub failed_max: Option<u64>,
    #[serde(rename = "cancelled_days", serialize_with = "unit::days_or_zero")]
    pub cancelled_age: Option<Duration>,
    #[serde(serialize_with = "unit::count_or_zero")]
    pub cancelled_max: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MlConfig {
    pub url: Option<String>,
    #[serde(rename = "timeout_ms", serialize_with = "unit::ms")]
    pub timeout: Duration,
    pub error_threshold_pct: u32,
    /// How long the breaker stays open before a trial call (it grows with repeated trips).
    #[serde(rename = "reset_timeout_ms", serialize_with = "unit::ms")]
    pub reset_timeout: Duration,
    /// Calls in the window before the breaker may open.
    pub min_calls: u32,
    /// Calls slower than this count as failures.
    #[serde(rename = "slow_call_ms", serialize_with = "unit::ms")]
    pub slow_call: Duration,
    /// The longest the breaker stays open after repeated trips.
    #[serde(rename = "open_cap_ms", serialize_with = "unit::ms")]
    pub open_cap: Duration,
    pub half_open_trials: u32,
    /// Send `{"image_path"}` instead of the image (both machines see the same data directory).
    pub share_paths: bool,
    /// `none` (jobs wait while the breaker is open) or `builtin` (they run on the builtin segmenter).
    pub fallback: Fallback,
}

/// What happens to ML jobs while their service's breaker is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    #[default]
    None,
    Builtin,
}

/// A local ML program run per image (the `command` segmenter).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommandConfig {
    /// Program and arguments; `{input}`, `{output_dir}`, `{output_json}` are filled in. Empty: none.
    pub argv: Vec<String>,
}

fn redact<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<set>"),
        None => s.serialize_none(),
    }
}

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
    pub fallback: Option<Fallback>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandLayer {
    pub argv: Option<Vec<String>>,
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
const IGNORED_ENV: &[&str] = &["REDIS_URL", "DATABASE_URL"];

impl Config {
    /// Builds and validates the configuration from all its sources.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut origins: HashMap<&'static str, String> = HashMap::new();
        let mut merged = Layer::default();
        // Lowest layer first; each `set` overwrites what lay below.
        let (file_layer, file_name) = read_file(sources.file.as_deref())?;
        if let Some(name) = &file_name {
            overlay(&mut merged, &file_layer, name, &mut origins);
        }
        let env_layer = env_layer(&sources.env, &mut origins)?;
        overlay(&mut merged, &env_layer, "", &mut origins);
        overlay(
            &mut merged,
            &sources.flags,
            "command-line flag",
            &mut origins,
        );
        validate::validate(merged, &origins)
    }

    /// What the queue needs of it.
    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            backoff: Backoff {
                base: self.queue.backoff_base,
                factor: self.queue.backoff_factor,
                jitter: self.queue.backoff_jitter,
                cap: self.queue.backoff_cap,
            },
            aging: self.queue.aging,
            max_attempts: self.queue.max_attempts,
            cache_bytes: (self.queue.cache_mb as usize) << 20,
            ..QueueOptions::default()
        }
    }

    pub fn retention(&self) -> Retention {
        let r = &self.retention;
        Retention {
            completed: Limit {
                age: r.completed_age,
                count: r.completed_max,
            },
            failed: Limit {
                age: r.failed_age,
                count: r.failed_max,
            },
            cancelled: Limit {
                age: r.cancelled_age,
                count: r.cancelled_max,
            },
        }
    }

    /// What the worker pool needs of it; `budget` is the process's decode budget.
    pub fn pool_options(&self, budget: crate::segment::DecodeBudget) -> crate::pool::PoolConfig {
        crate::pool::PoolConfig {
            workers: self.workers,
            lease_ttl: self.queue.lease_ttl,
            builtin_timeout: self.queue.builtin_timeout,
            ml_timeout: self.ml.timeout,
            limits: self.decode_limits(),
            budget,
        }
    }

    /// The circuit breaker settings of an ML service.
    pub fn breaker(&self) -> crate::segment::breaker::BreakerConfig {
        crate::segment::breaker::BreakerConfig {
            min_calls: self.ml.min_calls,
            failure_threshold: f64::from(self.ml.error_threshold_pct) / 100.0,
            slow_call: self.ml.slow_call,
            open_base: self.ml.reset_timeout,
            open_cap: self.ml.open_cap,
            half_open_trials: self.ml.half_open_trials,
            ..crate::segment::breaker::BreakerConfig::default()
        }
    }

    /// What the decoder may accept.
    pub fn decode_limits(&self) -> crate::segment::DecodeLimits {
        crate::segment::DecodeLimits {
            max_width: self.limits.max_width,
            max_height: self.limits.max_height,
            max_megapixels: self.limits.max_megapixels,
            ..crate::segment::DecodeLimits::default()
        }
    }

    /// The decode budget in bytes: as configured, or the machine's default.
    pub fn decode_budget_bytes(&self) -> u64 {
        match self.limits.decode_budget_mb {
            0 => crate::segment::DecodeBudget::default_total(crate::telemetry::memory_total()),
            mb => mb << 20,
        }
    }

    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("spheroseg.redb")
    }

    /// The effective configuration as TOML (the token redacted).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("Config serialises to TOML")
    }

    /// Names of the replaced deployment's variables that are set but ignored.
    pub fn ignored_env(env: &HashMap<String, String>) -> Vec<String> {
        let mut v: Vec<String> = env
            .keys()
            .filter(|k| IGNORED_ENV.contains(&k.as_str()) || k.starts_with("DB_POOL_"))
            .cloned()
            .collect();
        v.sort();
        v
    }
}

fn read_file(explicit: Option<&Path>) -> Result<(Layer, Option<String>), ConfigError> {
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

fn env_layer(
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
fn overlay(
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
    take!(command.argv, "command.argv");
    take!(limits.max_width, "limits.max_width");
    take!(limits.max_height, "limits.max_height");
    take!(limits.max_megapixels, "limits.max_megapixels");
    take!(limits.max_upload_mb, "limits.max_upload_mb");
    take!(limits.decode_budget_mb, "limits.decode_budget_mb");
    take!(limits.disk_low_water_mb, "limits.disk_low_water_mb");
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

/// How durations and optional limits are written back to TOML (`config show`): in the unit of
/// their key, and 0 for no limit.
mod unit {
    use std::time::Duration;

    use serde::Serializer;

    pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn secs_or_zero<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.map_or(0, |d| d.as_secs()))
    }

    pub fn days_or_zero<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.map_or(0, |d| d.as_secs() / 86_400))
    }

    pub fn count_or_zero<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(n.unwrap_or(0))
    }
}

/// The commented example printed by `spheroseg config default`; every value is the default
/// (a test loads it and compares).
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

pub mod hosts;
mod validate;
pub mod watch;

pub use hosts::HostRule;
pub use watch::{After, DONE_DIR, Pages, RESULTS_DIR, Results, WatchConfig, WatchLayer};

#[cfg(test)]
mod tests;
