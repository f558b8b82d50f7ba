//! Turning the merged layers into a `Config`: defaults filled in, every value range-checked, and
//! the cross-checks (a non-loopback bind needs a token, the http segmenter a URL, the command
//! segmenter an argv, any other segmenter an `[[ml.service]]` that serves it). The first bad
//! value is the error, naming its key and where it came from.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

pub(super) fn validate(
    l: Layer,
    origins: &HashMap<&'static str, String>,
) -> Result<Config, ConfigError> {
    let c = Checker { origins };
    let err = |key: &str, message: String| c.err(key, message);

    let bind_raw = l.bind.unwrap_or_else(|| "127.0.0.1:5001".into());
    let bind: SocketAddr = bind_raw.parse().map_err(|_| {
        err(
            "bind",
            format!("{bind_raw:?} is not an address:port such as 127.0.0.1:5001"),
        )
    })?;
    let token = l.auth.token.filter(|t| !t.is_empty());
    if !bind.ip().is_loopback() && token.is_none() {
        return Err(err(
            "bind",
            format!(
                "binding to {bind} exposes spheroseg beyond this machine: set auth.token (SPHEROSEG_TOKEN) as well"
            ),
        ));
    }
    let default_workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = c.range("workers", l.workers, default_workers, 1..=256, " workers")?;

    let q = l.queue;
    let queue = QueueConfig {
        max_attempts: c.range("queue.max_attempts", q.max_attempts, 3, 1..=100, "")?,
        backoff_base: ms(c.range(
            "queue.backoff_base_ms",
            q.backoff_base_ms,
            2000,
            1..=3_600_000,
            " ms",
        )?),
        backoff_factor: c.range(
            "queue.backoff_factor",
            q.backoff_factor,
            2.0,
            1.0..=10.0,
            "",
        )?,
        backoff_jitter: c.range("queue.backoff_jitter", q.backoff_jitter, 0.2, 0.0..=1.0, "")?,
        backoff_cap: secs(c.range(
            "queue.backoff_cap_secs",
            q.backoff_cap_secs,
            300,
            1..=86_400,
            " s",
        )?),
        aging: Some(secs(c.range(
            "queue.aging_secs",
            q.aging_secs,
            0,
            0..=86_400,
            " s (0 turns aging off)",
        )?))
        .filter(|d| !d.is_zero()),
        lease_ttl: secs(c.range("queue.lease_ttl_secs", q.lease_ttl_secs, 60, 5..=3600, " s")?),
        cache_mb: c.range("queue.cache_mb", q.cache_mb, 64, 4..=65_536, " MiB")?,
        builtin_timeout: secs(c.range(
            "queue.builtin_timeout_secs",
            q.builtin_timeout_secs,
            600,
            1..=86_400,
            " s",
        )?),
        events_buffer: c.range(
            "queue.events_buffer",
            q.events_buffer,
            10_000,
            16..=1_000_000,
            " events",
        )?,
    };
    let r = l.retention;
    let days = |key: &str, v: Option<u64>, default: u64| {
        c.range(key, v, default, 0..=36_500, " days (0: no limit)")
    };
    let max = |key: &str, v: Option<u64>, default: u64| {
        c.range(key, v, default, 0..=u64::MAX / 2, " jobs (0: no limit)")
    };
    let age = |n: u64| (n > 0).then(|| Duration::from_secs(n * 86_400));
    let count = |n: u64| (n > 0).then_some(n);
    let retention = RetentionConfig {
        completed_age: age(days("retention.completed_days", r.completed_days, 0)?),
        completed_max: count(max("retention.completed_max", r.completed_max, 0)?),
        failed_age: age(days("retention.failed_days", r.failed_days, 30)?),
        failed_max: count(max("retention.failed_max", r.failed_max, 100_000)?),
        cancelled_age: age(days("retention.cancelled_days", r.cancelled_days, 30)?),
        cancelled_max: count(max("retention.cancelled_max", r.cancelled_max, 100_000)?),
    };
    let m = l.ml;
    let url = m.url.filter(|u| !u.is_empty());
    if let Some(u) = &url {
        ml::check_url(u).map_err(|m| err("ml.url", m))?;
    }
    let protocol = m.protocol.unwrap_or_default();
    let model = ml::model_name(m.model).map_err(|e| err("ml.model", e))?;
    let version = ml::model_name(m.version).map_err(|e| err("ml.version", e))?;
    if protocol == Protocol::Oip && url.is_some() && model.is_none() {
        return Err(err(
            "ml.model",
            "protocol \"oip\" needs ml.model: the model's name on the server".into(),
        ));
    }
    let threshold = m.threshold.unwrap_or(0.5);
    if !threshold.is_finite() {
        return Err(err("ml.threshold", format!("{threshold} is not a number")));
    }
    let mut ml = MlConfig {
        timeout: ms(c.range(
            "ml.timeout_ms",
            m.timeout_ms,
            300_000,
            100..=86_400_000,
            " ms",
        )?),
        error_threshold_pct: c.range(
            "ml.error_threshold_pct",
            m.error_threshold_pct,
            50,
            1..=100,
            " %",
        )?,
        reset_timeout: ms(c.range(
            "ml.reset_timeout_ms",
            m.reset_timeout_ms,
            60_000,
            100..=86_400_000,
            " ms",
        )?),
        min_calls: c.range("ml.min_calls", m.min_calls, 5, 1..=10_000, " calls")?,
        slow_call: ms(c.range(
            "ml.slow_call_ms",
            m.slow_call_ms,
            300_000,
            1..=86_400_000,
            " ms",
        )?),
        open_cap: ms(c.range(
            "ml.open_cap_ms",
            m.open_cap_ms,
            600_000,
            100..=86_400_000,
            " ms",
        )?),
        half_open_trials: c.range(
            "ml.half_open_trials",
            m.half_open_trials,
            1,
            1..=100,
            " calls",
        )?,
        fallback: m.fallback.unwrap_or_default(),
        share_paths: m.share_paths.unwrap_or(false),
        max_in_flight: c.range("ml.max_in_flight", m.max_in_flight, 4, 1..=1024, " calls")?,
        url,
        services: Vec::new(),
        protocol,
        model,
        version,
        output: m.output.filter(|o| !o.is_empty()),
        threshold,
        binary: m.binary.unwrap_or(true),
    };
    ml.services = ml::validate(m.service.unwrap_or_default(), &ml, ml.url.is_some())?;
    let command = CommandConfig {
        argv: l.command.argv.unwrap_or_default(),
        max_parallel: c.range(
            "command.max_parallel",
            l.command.max_parallel,
            1,
            1..=64,
            " runs",
        )?,
    };
    if let Some(p) = command.argv.first()
        && p.trim().is_empty()
    {
        return Err(err(
            "command.argv",
            "the program (first element) is empty".into(),
        ));
    }
    let lim = l.limits;
    let limits = LimitsConfig {
        max_width: c.range(
            "limits.max_width",
            lim.max_width,
            16_384,
            8..=65_535,
            " pixels",
        )?,
        max_height: c.range(
            "limits.max_height",
            lim.max_height,
            16_384,
            8..=65_535,
            " pixels",
        )?,
        max_megapixels: c.range(
            "limits.max_megapixels",
            lim.max_megapixels,
            64,
            1..=1024,
            " megapixels",
        )?,
        max_upload_mb: c.range(
            "limits.max_upload_mb",
            lim.max_upload_mb,
            512,
            1..=65_536,
            " MiB",
        )?,
        decode_budget_mb: c.range(
            "limits.decode_budget_mb",
            lim.decode_budget_mb,
            0,
            0..=1 << 30,
            " MiB (0: a quarter of the memory, at most 2048)",
        )?,
        disk_low_water_mb: c.range(
            "limits.disk_low_water_mb",
            lim.disk_low_water_mb,
            0,
            0..=1 << 30,
            " MiB (0: 1024 or 2 % of the file system, the smaller)",
        )?,
    };
    let segmenter = l.segmenter.unwrap_or_default();
    let served: Vec<&SegmenterId> = ml.services.iter().map(|s| &s.segmenter).collect();
    let can_run = |s: &SegmenterId| can_run(s, ml.url.is_some(), &served, !command.argv.is_empty());
    can_run(&segmenter).map_err(|m| err("segmenter", m))?;
    let allowed_hosts = l
        .allowed_hosts
        .unwrap_or_default()
        .iter()
        .map(|h| HostRule::parse(h).map_err(|m| err("allowed_hosts", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_origins = l.allowed_origins.unwrap_or_default();
    for o in &allowed_origins {
        let authority = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .map(|a| a.trim_end_matches('/'));
        if authority.is_none_or(|a| a.is_empty() || a.contains('/')) {
            return Err(err(
                "allowed_origins",
                format!("{o:?} is not an origin such as https://portal.example.org"),
            ));
        }
    }
    let data_dir = l
        .data_dir
        .unwrap_or_else(|| PathBuf::from("./spheroseg-data"));
    let watch = watch::validate(
        l.watch.unwrap_or_default(),
        &watch::Context {
            data_dir: &data_dir,
            default_segmenter: &segmenter,
            check_segmenter: &can_run,
        },
    )?;
    Ok(Config {
        import_dirs: l.import_dirs.unwrap_or_default(),
        allowed_hosts,
        allowed_origins,
        data_dir,
        bind,
        workers,
        segmenter,
        shutdown_grace: secs(c.range(
            "shutdown_grace_secs",
            l.shutdown_grace_secs,
            30,
            0..=3600,
            " s",
        )?),
        shutdown_delay: ms(c.range(
            "shutdown_delay_ms",
            l.shutdown_delay_ms,
            0,
            0..=600_000,
            " ms",
        )?),
        queue,
        retention,
        ml,
        limits,
        auth: AuthConfig { token },
        command,
        watch,
    })
}

/// Whether this configuration can run jobs on `segmenter`, and if not, what is missing.
fn can_run(
    segmenter: &SegmenterId,
    ml_url: bool,
    served: &[&SegmenterId],
    command_argv: bool,
) -> Result<(), String> {
    match segmenter.as_str() {
        SegmenterId::BUILTIN => Ok(()),
        _ if served.contains(&segmenter) => Ok(()),
        SegmenterId::HTTP if !ml_url => {
            Err("the http segmenter needs ml.url (or ML_SERVICE_URL)".into())
        }
        SegmenterId::COMMAND if !command_argv => {
            Err("the command segmenter needs command.argv in spheroseg.toml".into())
        }
        SegmenterId::HTTP | SegmenterId::COMMAND => Ok(()),
        other => Err(format!(
            "no segmenter is named {other:?}: use builtin, http, command or the segmenter of an [[ml.service]]"
        )),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Turns a bad value into a `ConfigError` naming the key and where its value came from.
struct Checker<'a> {
    origins: &'a HashMap<&'static str, String>,
}

impl Checker<'_> {
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            origin: self
                .origins
                .get(key)
                .cloned()
                .unwrap_or_else(|| "default".into()),
            message,
        }
    }

    /// The value set for `key` (or `default`) if it lies in `range`; otherwise an error for `key`
    /// that gives the range in `unit`.
    fn range<T: PartialOrd + fmt::Display + Copy>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        range: std::ops::RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, ConfigError> {
        let v = value.unwrap_or(default);
        let (lo, hi) = (*range.start(), *range.end());
        if v < lo || v > hi {
            Err(self.err(key, format!("{v} is out of range: use {lo} to {hi}{unit}")))
        } else {
            Ok(v)
        }
    }
}
