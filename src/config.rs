//! The one `Config`: built from defaults < `spheroseg.toml` (`--config FILE`) < environment
//! (`SPHEROSEG_…` and the replaced system's names) < command-line flags, validated once into typed
//! values and passed down. Nothing else reads the environment.
//!
//! Every layer is a [`Layer`] of optional values; the first layer that sets a key wins from the top.
//! A bad value is one [`ConfigError`] that names the key and where the value came from.
//!
//! - `layer`: the layers (file, environment, flags) and merging them
//! - `validate`: the merged layers into a `Config`; `hosts` and `watch`: the values that need
//!   parsing of their own (`allowed_hosts`, `[[watch]]` entries)
//! - `parts`: what each part (queue, pool, segmenters, HTTP API) is built from
//! - `unit`: durations and limits written back in the units of their keys

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::segment::SegmenterId;
use layer::{IGNORED_ENV, env_layer, overlay, read_file};

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
    /// Calls in flight to the service at once, whatever the number of workers.
    pub max_in_flight: u32,
    /// `none` (jobs wait while the breaker is open) or `builtin` (they run on the builtin segmenter).
    pub fallback: Fallback,
    /// The `[ml]` service's protocol, and for `oip` the model (required), its version and the
    /// output tensor to read.
    pub protocol: Protocol,
    pub model: Option<String>,
    pub version: Option<String>,
    pub output: Option<String>,
    /// `oip`: map values above it are foreground (the default of every entry).
    pub threshold: f32,
    /// `oip`: send tensors in the binary extension (the default of every entry).
    pub binary: bool,
    /// `[[ml.service]]` entries (the `[ml]` service, `url`, is not among them: see
    /// [`Config::ml_services`]).
    #[serde(rename = "service", skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceConfig>,
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
    /// Runs of the program at once, whatever the number of workers (one GPU: 1).
    pub max_parallel: u32,
}

fn redact<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<set>"),
        None => s.serialize_none(),
    }
}

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

    /// Every remote ML service: the `[ml]` one (`url`) first, then the `[[ml.service]]` entries.
    pub fn ml_services(&self) -> Vec<ServiceConfig> {
        let legacy = self
            .ml
            .url
            .as_deref()
            .map(|u| ServiceConfig::from_ml(&self.ml, u));
        legacy
            .into_iter()
            .chain(self.ml.services.iter().cloned())
            .collect()
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

/// The commented example printed by `spheroseg config default`; every value is the default
/// (a test loads it and compares).
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

pub mod hosts;
mod layer;
pub mod ml;
mod parts;
mod unit;
mod validate;
pub mod watch;

pub use hosts::HostRule;
pub use layer::{
    AuthLayer, CommandLayer, Layer, LimitsLayer, MlLayer, QueueLayer, RetentionLayer, Sources,
};
pub use ml::{Protocol, ServiceConfig, ServiceLayer};
pub use watch::{After, DONE_DIR, Pages, RESULTS_DIR, Results, WatchConfig, WatchLayer};

#[cfg(test)]
mod tests;
