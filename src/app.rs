//! Wiring: [`App::start`] opens the data directory, the queue and the image store, connects the
//! queue to the event bus, takes the segmenters the configuration builds, and starts the worker
//! pool, the background tasks (the watched folders among them) and the HTTP server on the
//! caller's listener. [`App::shutdown`]
//! stops them in the order DESIGN.md fixes ("Shutdown order"): readiness false, the HTTP server
//! drains, the pool stops leasing and gives running jobs their grace, its threads are joined, the
//! background tasks end, and the queue's writer commits and the database closes. One stop signal
//! reaches every task; each task and thread has an owner that joins it. Under systemd it says
//! when it is ready and when it stops, and keeps the watchdog fed (`systemd.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::disk::Disk;
use crate::events::EventBus;
use crate::http::{AppState, Guard};
use crate::images::ImageStore;
use crate::pool::Pool;
use crate::queue::{Queue, Retention};
use crate::segment::DecodeBudget;
use crate::service::Service;

pub use signal::shutdown_signal;

/// How often finished jobs past their retention, and then unreferenced images, are removed.
const MAINTAIN_EVERY: Duration = Duration::from_secs(600);
/// Most jobs one retention pass removes (keeps each transaction short).
const RETAIN_BATCH: usize = 5_000;
/// How often remote ML services' `/health` is asked.
const ML_HEALTH_EVERY: Duration = Duration::from_secs(30);
/// A WebSocket client that takes no message for this long is disconnected.
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A running spheroseg: the queue, the pool, the background tasks and the HTTP server.
pub struct App {
    state: AppState,
    addr: SocketAddr,
    queue: Queue,
    pool: Pool,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown_grace: Duration,
    shutdown_delay: Duration,
}

impl App {
    /// Opens everything `config` names and serves on `listener`. Ready when it returns.
    pub async fn start(config: Config, listener: tokio::net::TcpListener) -> anyhow::Result<App> {
        crate::heap::keep_freed_memory();
        let created = !config.data_dir.exists();
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        if created && let Some(parent) = config.data_dir.parent() {
            // Its name must survive a power cut with what goes in it.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        // Backups staged by the previous process (`http/admin.rs`) were never finished.
        let _ = std::fs::remove_dir_all(config.data_dir.join(crate::backup::STAGING));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let path = config.database_path();
        let options = config.queue_options();
        let open_clock = Arc::clone(&clock);
        let (queue, recovery) =
            tokio::task::spawn_blocking(move || Queue::open(&path, options, open_clock))
                .await
                .context("queue open task failed")??;
        let budget = DecodeBudget::new(config.decode_budget_bytes());
        let disk = Arc::new(Disk::new(&config.data_dir, config.limits.disk_low_water_mb));
        let images = ImageStore::open(&config.data_dir, config.decode_limits())?
            .with_budget(budget.clone())
            .with_disk(Arc::clone(&disk));
        let events = EventBus::new(config.queue.events_buffer, Arc::clone(&clock));
        // Every commit's transitions become events, published by the queue in commit order.
        let bus = events.clone();
        queue.listen(Arc::new(move |c| bus.publish_commit(c)));
        let segmenters = config.segmenters(clock.as_ref())?;
        let stats = queue.stats()?;
        let addr = listener.local_addr().context("listener has no address")?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            data_dir = %config.data_dir.display(),
            bind = %addr,
            workers = config.workers,
            segmenter = %config.segmenter,
            ml_services = ?segmenters.ml.keys().map(ToString::to_string).collect::<Vec<_>>(),
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
        let space = disk.status();
        if space.low || recovery.disk_full.is_some() {
            tracing::warn!(
                available_bytes = space.filesystem.available_bytes,
                low_water_bytes = space.low_water_bytes,
                queue = ?recovery.disk_full,
                "the disk is nearly full: results are served, new images are refused until there is room"
            );
        }

        let pool = Pool::start(
            queue.clone(),
            images.clone(),
            events.clone(),
            segmenters,
            config.pool_options(budget),
            Arc::clone(&clock),
        )
        .context("cannot start the worker threads")?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(poll_ml_health(pool.handle(), stopped.clone())),
            tokio::spawn(maintain(
                queue.clone(),
                images.clone(),
                config.retention(),
                stopped.clone(),
            )),
        ];
        let service = Service {
            queue: queue.clone(),
            images,
            events,
            pool: Some(pool.handle()),
            default_segmenter: config.segmenter.clone(),
        };
        // The folders' start-up scans run in their tasks: the server answers meanwhile.
        let (watching, watchers) = crate::watch::start(&service, &config.watch, &stopped);
        tasks.extend(watchers);
        let state = AppState {
            service,
            watch: watching,
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(true)),
            token: config.auth.token.as_deref().map(Arc::from),
            bind: addr,
            body_limit: config.body_limit(),
            system: Arc::new(crate::telemetry::SystemMonitor::with_disk(disk)),
            import_dirs: config.import_roots(),
            guard: Arc::new(Guard::new(
                addr,
                config.allowed_hosts.clone(),
                config.allowed_origins.clone(),
            )),
            ws_send_timeout: WS_SEND_TIMEOUT,
            retention: config.retention(),
        };
        // Install the recorder before the first job is counted.
        let _ = crate::telemetry::prometheus();
        let mut http_stopped = stopped.clone();
        let http = tokio::spawn(crate::http::serve(listener, state.clone(), async move {
            let _ = http_stopped.changed().await;
        }));
        tracing::info!(address = %addr, "listening");
        // The queue is open, the pool runs and the listener accepts: ready, for systemd too.
        let parts = crate::systemd::Parts {
            queue: queue.clone(),
            pool: pool.handle(),
            http: addr,
        };
        tasks.extend(crate::systemd::ready(&parts, &stopped));
        Ok(App {
            state,
            addr,
            queue,
            pool,
            stop,
            http,
            tasks,
            shutdown_grace: config.shutdown_grace,
            shutdown_delay: config.shutdown_delay,
        })
    }

    /// What the HTTP handlers share (tests send requests to `http::router` with it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the HTTP server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops everything in order (see the module doc) and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        crate::systemd::stopping();
        // Readiness turns false before the listener closes, so a balancer stops sending first.
        self.state.ready.store(false, Ordering::SeqCst);
        tokio::time::sleep(self.shutdown_delay).await;
        let _ = self.stop.send(true);
        match self.http.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP task failed"),
            Ok(Ok(())) => {}
        }
        self.pool.shutdown(self.shutdown_grace).await;
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "background task failed");
            }
        }
        // The writer commits what it has, then the database closes.
        let queue = self.queue;
        tokio::task::spawn_blocking(move || queue.close())
            .await
            .context("queue close task failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Binds the configured address and runs until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = bind(&config).await?;
    run(config, listener, shutdown).await
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another program using it?",
                config.bind
            )
        })
}

/// Runs spheroseg on `listener` until `shutdown` resolves, then shuts down in order.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = App::start(config, listener).await?;
    shutdown.await;
    app.shutdown().await
}

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

mod signal;
