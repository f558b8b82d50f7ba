//! What each part is built from: the queue's, the pool's, the decoder's and the breakers'
//! options, the segmenters jobs can name, and the limits and directories of the HTTP API. The
//! parts define their option types; this is the one place that fills them from a `Config`, so
//! `app.rs` only wires parts together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Config, Fallback, Protocol};
use crate::clock::Clock;
use crate::queue::{Backoff, Limit, QueueOptions, Retention};
use crate::segment::breaker::Breaker;
use crate::segment::command::CommandSegmenter;
use crate::segment::http::{ClientError, HttpSegmenter};
use crate::segment::oip::{OipClient, OipSettings};
use crate::segment::remote::Remote;
use crate::segment::{Builtin, MlService, SegmenterId, Segmenters};

impl Config {
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
            // The longest of the services' timeouts: each service's own ends its calls.
            ml_timeout: self
                .ml_services()
                .iter()
                .map(|s| s.timeout)
                .fold(self.ml.timeout, Duration::max),
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

    /// The segmenters jobs can name: the builtin one, the remote ML services (`ml.url` as `http`,
    /// and every `[[ml.service]]`, each with its breaker) and `command.argv` (`command`). Call
    /// inside the tokio runtime (the remote clients keep its handle).
    pub fn segmenters(&self, clock: &dyn Clock) -> Result<Segmenters, ClientError> {
        let mut ml = HashMap::new();
        let fallback = self.ml.fallback == Fallback::Builtin;
        for svc in self.ml_services() {
            let remote = match svc.protocol {
                Protocol::Spheroseg => Remote::Spheroseg(Arc::new(HttpSegmenter::new(
                    svc.name.as_str(),
                    &svc.url,
                    svc.timeout,
                    svc.share_paths,
                )?)),
                Protocol::Oip => Remote::Oip(Arc::new(OipClient::new(
                    svc.name.as_str(),
                    &svc.url,
                    svc.timeout,
                    OipSettings {
                        model: svc
                            .model
                            .clone()
                            .expect("validation requires a model for oip"),
                        version: svc.version.clone(),
                        output: svc.output.clone(),
                        threshold: svc.threshold,
                        binary: svc.binary,
                    },
                )?)),
            };
            let service = MlService::from_remote(
                remote,
                Breaker::new(svc.breaker(), clock.now()),
                fallback,
                &svc.url,
            )
            .with_limit(svc.max_in_flight as usize)
            .with_weight(svc.weight)
            .serving(svc.segmenter.clone());
            ml.insert(svc.name.clone(), Arc::new(service));
        }
        if !self.command.argv.is_empty() {
            ml.insert(
                SegmenterId::new(SegmenterId::COMMAND).expect("a valid name"),
                Arc::new(
                    MlService::new(
                        Arc::new(CommandSegmenter {
                            name: SegmenterId::COMMAND.into(),
                            argv: self.command.argv.clone(),
                            work_dir: self.data_dir.join("work"),
                        }),
                        Breaker::new(self.breaker(), clock.now()),
                        fallback,
                        &self.command.argv.join(" "),
                    )
                    .with_limit(self.command.max_parallel as usize),
                ),
            );
        }
        Ok(Segmenters {
            builtin: Arc::new(Builtin),
            ml,
        })
    }

    /// The largest HTTP request body, in bytes.
    pub fn body_limit(&self) -> usize {
        (self.limits.max_upload_mb as usize) << 20
    }

    /// The import directories that exist, canonical (a path must resolve inside one of them);
    /// one that does not is logged and left out.
    pub fn import_roots(&self) -> Arc<[PathBuf]> {
        self.import_dirs
            .iter()
            .filter_map(|d| match d.canonicalize() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "import directory not usable; ignored");
                    None
                }
            })
            .collect()
    }
}
