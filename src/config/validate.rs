//! Turning the merged layers into a `Config`: defaults filled in, every value range-checked, and
//! the cross-checks (a non-loopback bind needs a token, the http segmenter a URL, the command
//! segmenter an argv). The first bad value is the error, naming its key and where it came from.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

pub(super) fn validate(
    l: Layer,
    origins: &HashMap<&'static str, String>,
) -> Result<Config, ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        key: key.to_owned(),
        origin: origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".into()),
        message,
    };
    fn range<T: PartialOrd + fmt::Display + Copy>(
        v: T,
        lo: T,
        hi: T,
        unit: &str,
    ) -> Result<T, String> {
        if v < lo || v > hi {
            Err(format!("{v} is out of range: use {lo} to {hi}{unit}"))
        } else {
            Ok(v)
        }
    }

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
    let workers = range(l.workers.unwrap_or(default_workers), 1, 256, " workers")
        .map_err(|m| err("workers", m))?;

    let q = l.queue;
    let queue = QueueConfig {
        max_attempts: range(q.max_attempts.unwrap_or(3), 1, 100, "")
            .map_err(|m| err("queue.max_attempts", m))?,
        backoff_base_ms: range(q.backoff_base_ms.unwrap_or(2000), 1, 3_600_000, " ms")
            .map_err(|m| err("queue.backoff_base_ms", m))?,
        backoff_factor: range(q.backoff_factor.unwrap_or(2.0), 1.0, 10.0, "")
            .map_err(|m| err("queue.backoff_factor", m))?,
        backoff_jitter: range(q.backoff_jitter.unwrap_or(0.2), 0.0, 1.0, "")
            .map_err(|m| err("queue.backoff_jitter", m))?,
        backoff_cap_secs: range(q.backoff_cap_secs.unwrap_or(300), 1, 86_400, " s")
            .map_err(|m| err("queue.backoff_cap_secs", m))?,
        aging_secs: range(
            q.aging_secs.unwrap_or(0),
            0,
            86_400,
            " s (0 turns aging off)",
        )
        .map_err(|m| err("queue.aging_secs", m))?,
        lease_ttl_secs: range(q.lease_ttl_secs.unwrap_or(60), 5, 3600, " s")
            .map_err(|m| err("queue.lease_ttl_secs", m))?,
        cache_mb: range(q.cache_mb.unwrap_or(64), 4, 65_536, " MiB")
            .map_err(|m| err("queue.cache_mb", m))?,
        builtin_timeout_secs: range(q.builtin_timeout_secs.unwrap_or(600), 1, 86_400, " s")
            .map_err(|m| err("queue.builtin_timeout_secs", m))?,
        events_buffer: range(q.events_buffer.unwrap_or(10_000), 16, 1_000_000, " events")
            .map_err(|m| err("queue.events_buffer", m))?,
    };
    let r = l.retention;
    let retention = RetentionConfig {
        completed_days: range(r.completed_days.unwrap_or(7), 0, 36_500, " days")
            .map_err(|m| err("retention.completed_days", m))?,
        failed_days: range(r.failed_days.unwrap_or(30), 0, 36_500, " days")
            .map_err(|m| err("retention.failed_days", m))?,
        cancelled_days: range(r.cancelled_days.unwrap_or(30), 0, 36_500, " days")
            .map_err(|m| err("retention.cancelled_days", m))?,
        max_per_state: range(r.max_per_state.unwrap_or(100_000), 1, u64::MAX / 2, "")
            .map_err(|m| err("retention.max_per_state", m))?,
    };
    let m = l.ml;
    let url = m.url.filter(|u| !u.is_empty());
    if let Some(u) = &url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(err(
            "ml.url",
            format!("{u:?} is not an http:// or https:// URL"),
        ));
    }
    let ml = MlConfig {
        timeout_ms: range(m.timeout_ms.unwrap_or(300_000), 100, 86_400_000, " ms")
            .map_err(|e| err("ml.timeout_ms", e))?,
        error_threshold_pct: range(m.error_threshold_pct.unwrap_or(50), 1, 100, " %")
            .map_err(|e| err("ml.error_threshold_pct", e))?,
        reset_timeout_ms: range(m.reset_timeout_ms.unwrap_or(60_000), 100, 86_400_000, " ms")
            .map_err(|e| err("ml.reset_timeout_ms", e))?,
        min_calls: range(m.min_calls.unwrap_or(5), 1, 10_000, " calls")
            .map_err(|e| err("ml.min_calls", e))?,
        slow_call_ms: range(m.slow_call_ms.unwrap_or(300_000), 1, 86_400_000, " ms")
            .map_err(|e| err("ml.slow_call_ms", e))?,
        open_cap_ms: range(m.open_cap_ms.unwrap_or(600_000), 100, 86_400_000, " ms")
            .map_err(|e| err("ml.open_cap_ms", e))?,
        half_open_trials: range(m.half_open_trials.unwrap_or(1), 1, 100, " calls")
            .map_err(|e| err("ml.half_open_trials", e))?,
        fallback: m.fallback.unwrap_or_default(),
        share_paths: m.share_paths.unwrap_or(false),
        url,
    };
    let command = CommandConfig {
        argv: l.command.argv.unwrap_or_default(),
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
        max_width: range(lim.max_width.unwrap_or(16_384), 8, 65_535, " pixels")
            .map_err(|e| err("limits.max_width", e))?,
        max_height: range(lim.max_height.unwrap_or(16_384), 8, 65_535, " pixels")
            .map_err(|e| err("limits.max_height", e))?,
        max_megapixels: range(lim.max_megapixels.unwrap_or(64), 1, 1024, " megapixels")
            .map_err(|e| err("limits.max_megapixels", e))?,
        max_upload_mb: range(lim.max_upload_mb.unwrap_or(512), 1, 65_536, " MiB")
            .map_err(|e| err("limits.max_upload_mb", e))?,
    };
    let segmenter = l.segmenter.unwrap_or_default();
    if segmenter == SegmenterKind::Http && ml.url.is_none() {
        return Err(err(
            "segmenter",
            "the http segmenter needs ml.url (or ML_SERVICE_URL)".into(),
        ));
    }
    if segmenter == SegmenterKind::Command && command.argv.is_empty() {
        return Err(err(
            "segmenter",
            "the command segmenter needs command.argv in spheroseg.toml".into(),
        ));
    }
    Ok(Config {
        import_dirs: l.import_dirs.unwrap_or_default(),
        allowed_origins: l.allowed_origins.unwrap_or_default(),
        data_dir: l
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./spheroseg-data")),
        bind,
        workers,
        segmenter,
        shutdown_grace_secs: range(l.shutdown_grace_secs.unwrap_or(30), 0, 3600, " s")
            .map_err(|m| err("shutdown_grace_secs", m))?,
        shutdown_delay_ms: range(l.shutdown_delay_ms.unwrap_or(0), 0, 600_000, " ms")
            .map_err(|m| err("shutdown_delay_ms", m))?,
        queue,
        retention,
        ml,
        limits,
        auth: AuthConfig { token },
        command,
    })
}
