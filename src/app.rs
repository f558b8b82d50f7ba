//! Wiring: opens the data directory and the queue, starts the owned background tasks, and stops
//! them in the order DESIGN.md fixes ("Shutdown order"). HTTP (#5) and the worker pool (#4) join
//! this sequence as they land.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::queue::{Queue, Retention};

/// How often delayed jobs are promoted and expired leases requeued.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often finished jobs past their retention are removed.
const RETAIN_EVERY: Duration = Duration::from_secs(600);
/// Most jobs one retention pass removes (keeps each transaction short).
const RETAIN_BATCH: usize = 5_000;

/// Runs spheroseg until `shutdown` resolves, then shuts down in order.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.database_path();
    let options = config.queue_options();
    let (queue, recovery) =
        tokio::task::spawn_blocking(move || Queue::open(&path, options, Arc::new(SystemClock)))
            .await
            .context("queue open task failed")??;
    let stats = queue.stats()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        bind = %config.bind,
        workers = config.workers,
        segmenter = ?config.segmenter,
        ml_url = config.ml.url.as_deref().unwrap_or("none"),
        aging_secs = config.queue.aging_secs,
        max_attempts = config.queue.max_attempts,
        created = recovery.open.created,
        migrated_from = ?recovery.open.migrated_from,
        orphans_requeued = recovery.orphans.len(),
        queued = stats.counts.queued,
        delayed = stats.counts.delayed,
        paused = stats.paused,
        "spheroseg started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = tokio::spawn(maintain(queue.clone(), config.retention(), stop_rx));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
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

/// Sweeps delayed jobs and expired leases every second and applies retention every ten minutes,
/// until told to stop.
async fn maintain(queue: Queue, retention: Retention, mut stop: watch::Receiver<bool>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut retain = tokio::time::interval(RETAIN_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = sweep.tick() => {
                match queue.sweep().await {
                    Ok(r) if !r.expired.is_empty() => {
                        tracing::warn!(count = r.expired.len(), "leases expired; jobs requeued");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
            _ = retain.tick() => {
                match queue.retain(retention, RETAIN_BATCH).await {
                    Ok(r) if !r.removed.is_empty() => {
                        tracing::info!(removed = r.removed.len(), images_released = r.orphaned_images.len(), "retention removed finished jobs");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
            }
        }
    }
}

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once (the database is safe:
/// every acknowledged write is already durable).
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops spheroseg");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
