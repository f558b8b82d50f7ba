//! Wiring: opens the data directory, the queue and the image store, builds the segmenters from the
//! configuration, starts the worker pool and the maintenance task, and stops them in the order
//! DESIGN.md fixes ("Shutdown order"): the pool stops leasing and gives running jobs their grace,
//! its threads are joined, maintenance stops, then the queue's writer commits and the database
//! closes. (The HTTP server, #5, stops first once it lands.)

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Fallback};
use crate::events::EventBus;
use crate::http::AppState;
use crate::images::ImageStore;
use crate::pool::{Pool, PoolConfig};
use crate::queue::{Queue, Retention};
use crate::segment::breaker::{Breaker, BreakerConfig};
use crate::segment::command::CommandSegmenter;
use crate::segment::http::HttpSegmenter;
use crate::segment::{Builtin, DecodeBudget, SegmenterId};
use crate::segment::{MlService, Segmenters};
use crate::service::Service;

/// A WebSocket client that takes no message for this long is disconnected.
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often finished jobs past their retention, and then unreferenced images, are removed.
const MAINTAIN_EVERY: Duration = Duration::from_secs(600);
/// Most jobs one retention pass removes (keeps each transaction short).
const RETAIN_BATCH: usize = 5_000;

/// The circuit breaker settings of an ML service, from the configuration.
pub fn breaker_config(config: &Config) -> BreakerConfig {
    BreakerConfig {
        min_calls: config.ml.min_calls,
        failure_threshold: f64::from(config.ml.error_threshold_pct) / 100.0,
        slow_call: Duration::from_millis(config.ml.slow_call_ms),
        open_base: Duration::from_millis(config.ml.reset_timeout_ms),
        open_cap: Duration::from_millis(config.ml.open_cap_ms),
        half_open_trials: config.ml.half_open_trials,
        ..BreakerConfig::default()
    }
}

/// The segmenters jobs can name, from the configuration. Call inside the tokio runtime (the http
/// segmenter keeps its handle).
pub fn segmenters(config: &Config, clock: &dyn Clock) -> anyhow::Result<Segmenters> {
    let mut ml = HashMap::new();
    if let Some(url) = &config.ml.url {
        let timeout = Duration::from_millis(config.ml.timeout_ms);
        ml.insert(
            SegmenterId::new(SegmenterId::HTTP).expect("a valid name"),
            Arc::new(MlService::remote(
                Arc::new(
                    HttpSegmenter::new("http", url, timeout, config.ml.share_paths)
                        .context("cannot build the HTTP client for the ML service")?,
                ),
                Breaker::new(breaker_config(config), clock.now()),
                config.ml.fallback == Fallback::Builtin,
                url,
            )),
        );
    }
    if !config.command.argv.is_empty() {
        ml.insert(
            SegmenterId::new(SegmenterId::COMMAND).expect("a valid name"),
            Arc::new(MlService::new(
                Arc::new(CommandSegmenter {
                    name: "command".into(),
                    argv: config.command.argv.clone(),
                    work_dir: config.data_dir.join("work"),
                }),
                Breaker::new(breaker_config(config), clock.now()),
                config.ml.fallback == Fallback::Builtin,
                &config.command.argv.join(" "),
            )),
        );
    }
    Ok(Segmenters {
        builtin: Arc::new(Builtin),
        ml,
    })
}

/// Binds the configured address and runs until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another program using it?",
                config.bind
            )
        })?;
    run(config, listener, shutdown).await
}

/// Runs spheroseg on `listener` until `shutdown` resolves, then shuts down in order: readiness
/// false, HTTP drains, the pool stops, maintenance stops, the database closes.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let path = config.database_path();
    let options = config.queue_options();
    let open_clock = Arc::clone(&clock);
    let (queue, recovery) =
        tokio::task::spawn_blocking(move || Queue::open(&path, options, open_clock))
            .await
            .context("queue open task failed")??;
    let budget = DecodeBudget::new(config.decode_budget_bytes());
    let images =
        ImageStore::open(&config.data_dir, config.decode_limits())?.with_budget(budget.clone());
    let events = EventBus::new(config.queue.events_buffer, Arc::clone(&clock));
    // Every commit's transitions become events, published by the queue in commit order.
    let bus = events.clone();
    queue.listen(Arc::new(move |c| bus.publish_commit(c)));
    let segmenters = segmenters(&config, clock.as_ref())?;
    let stats = queue.stats()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        bind = %config.bind,
        workers = config.workers,
        segmenter = ?config.segmenter,
        ml_services = ?segmenters.ml.keys().collect::<Vec<_>>(),
        ml_url = config.ml.url.as_deref().unwrap_or("none"),
        aging_secs = config.queue.aging_secs,
        max_attempts = config.queue.max_attempts,
        decode_budget_mb = budget.total() >> 20,
        created = recovery.open.created,
        migrated_from = ?recovery.open.migrated_from,
        orphans_requeued = recovery.orphans.len(),
        queued = stats.counts.queued,
        delayed = stats.counts.delayed,
        paused = stats.paused,
        "spheroseg started"
    );

    let pool = Pool::start(
        queue.clone(),
        images.clone(),
        events.clone(),
        segmenters,
        PoolConfig {
            workers: config.workers,
            lease_ttl: config.lease_ttl(),
            builtin_timeout: Duration::from_secs(config.queue.builtin_timeout_secs),
            ml_timeout: Duration::from_millis(config.ml.timeout_ms),
            limits: config.decode_limits(),
            budget: budget.clone(),
        },
        Arc::clone(&clock),
    )
    .context("cannot start the worker threads")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let health_poller = tokio::spawn(poll_ml_health(pool.handle(), stop_rx.clone()));
    let maintenance = tokio::spawn(maintain(
        queue.clone(),
        images.clone(),
        config.retention(),
        stop_rx,
    ));

    let service = Service {
        queue: queue.clone(),
        images,
        events,
        pool: Some(pool.handle()),
        default_segmenter: config.segmenter.clone(),
    };
    let ready = Arc::new(AtomicBool::new(true));
    let local = listener.local_addr().context("listener has no address")?;
    let state = AppState {
        service,
        started: Instant::now(),
        ready: Arc::clone(&ready),
        token: config.auth.token.as_deref().map(Arc::from),
        bind: local,
        body_limit: (config.limits.max_upload_mb as usize) << 20,
        system: Arc::new(crate::telemetry::SystemMonitor::new(&config.data_dir)),
        import_dirs: config
            .import_dirs
            .iter()
            .filter_map(|d| match d.canonicalize() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "import directory not usable; ignored");
                    None
                }
            })
            .collect(),
        guard: Arc::new(crate::http::Guard::new(
            local,
            config
                .allowed_hosts
                .iter()
                .filter_map(|h| crate::http::HostRule::parse(h).ok())
                .collect(),
            config.allowed_origins.clone(),
        )),
        ws_send_timeout: WS_SEND_TIMEOUT,
        retention: config.retention(),
    };
    // Install the recorder before the first job is counted.
    let _ = crate::telemetry::prometheus();
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(crate::http::serve(listener, state, async {
        let _ = http_stopped.await;
    }));
    tracing::info!(address = %local, "listening");

    shutdown.await;
    tracing::info!("shutting down");
    // Readiness turns false before the listener closes, so a balancer stops sending first.
    ready.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(config.shutdown_delay_ms)).await;
    let _ = http_stop.send(());
    match http.await {
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
        Err(e) => tracing::error!(error = %e, "HTTP task failed"),
        Ok(Ok(())) => {}
    }
    pool.shutdown(Duration::from_secs(config.shutdown_grace_secs))
        .await;
    let _ = stop_tx.send(true);
    let _ = health_poller.await;
    if let Err(e) = maintenance.await {
        tracing::error!(error = %e, "maintenance task failed");
    }
    // The writer commits what it has, then the database closes.
    tokio::task::spawn_blocking(move || queue.close())
        .await
        .context("queue close task failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// How often remote ML services' `/health` is asked.
const ML_HEALTH_EVERY: Duration = Duration::from_secs(30);

/// Asks every remote ML service's `/health` now and every 30 s, keeping the answers for the API.
async fn poll_ml_health(pool: crate::pool::PoolHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ML_HEALTH_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                for svc in pool.ml().values() {
                    svc.check_health().await;
                }
            }
        }
    }
}

/// Applies retention and then collects unreferenced images, every ten minutes, until told to stop.
async fn maintain(
    queue: Queue,
    images: ImageStore,
    retention: Retention,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(MAINTAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                match queue.retain(retention, RETAIN_BATCH).await {
                    Ok(r) if !r.removed.is_empty() => {
                        tracing::info!(removed = r.removed.len(), "retention removed finished jobs");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
                let (q, im) = (queue.clone(), images.clone());
                let removed = tokio::task::spawn_blocking(move || {
                    // A read error keeps the file: never collect what might be referenced.
                    im.collect_garbage(|hash| q.image_referenced(hash).unwrap_or(true))
                })
                .await
                .unwrap_or(0);
                if removed > 0 {
                    tracing::info!(removed, "removed images no job refers to");
                }
            }
        }
    }
}

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once (the database is safe:
/// every acknowledged write is already durable). The signal handlers are installed when this is
/// called, not when the future is first polled, so a signal during start-up is not lost (nor
/// fatal). Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let mut first = Signals::install();
    async move {
        first.recv().await;
        let mut second = Signals::install();
        tokio::spawn(async move {
            second.recv().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    }
}

/// SIGTERM and SIGINT, listened to from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(signal = name, error = %e, "cannot listen for a signal");
                    None
                }
            };
            Signals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
