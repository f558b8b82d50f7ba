//! The machine and the process: `GET /api/system` (CPU, memory, data-directory disk, process RSS
//! and uptime) and `GET /metrics` (Prometheus text, rendered by metrics-exporter-prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::queue::breakers;
use super::{ApiError, AppState};
use crate::segment::breaker::State as BreakerState;
use crate::telemetry::{SystemSnapshot, prometheus};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(system))
        .routes(routes!(render))
}

// `telemetry.rs` stays free of utoipa: this is its `SystemSnapshot`, serialised the same, and the
// conversion names every field so none can be left out.
/// A moment's view of the machine and the process.
#[derive(Serialize, ToSchema)]
struct SystemView {
    /// Of all cores together, 0 to 100.
    cpu_percent: f32,
    cores: usize,
    memory_total_bytes: u64,
    memory_available_bytes: u64,
    process_rss_bytes: u64,
    /// Of the file system holding the data directory (statvfs of the directory itself).
    disk_total_bytes: u64,
    disk_available_bytes: u64,
    /// Where that file system is mounted; `null` when it was not found.
    #[schema(value_type = Option<String>)]
    disk_mount: Option<std::path::PathBuf>,
    /// Its type, e.g. `ext4` or `tmpfs`.
    disk_fs_type: Option<String>,
    /// Under this much free space no image is taken and spheroseg is not ready.
    disk_low_water_bytes: u64,
    /// Free space is under the low-water mark.
    disk_low: bool,
    /// Why a write (an image, or a queue commit) was refused for lack of space, until one
    /// succeeds again.
    disk_refused: Option<String>,
    /// Seconds since the process started.
    uptime_secs: u64,
}

impl From<SystemSnapshot> for SystemView {
    fn from(s: SystemSnapshot) -> Self {
        let SystemSnapshot {
            cpu_percent,
            cores,
            memory_total_bytes,
            memory_available_bytes,
            process_rss_bytes,
            disk_total_bytes,
            disk_available_bytes,
            disk_mount,
            disk_fs_type,
            disk_low_water_bytes,
            disk_low,
            disk_refused,
            uptime_secs,
        } = s;
        SystemView {
            cpu_percent,
            cores,
            memory_total_bytes,
            memory_available_bytes,
            process_rss_bytes,
            disk_total_bytes,
            disk_available_bytes,
            disk_mount,
            disk_fs_type,
            disk_low_water_bytes,
            disk_low,
            disk_refused,
            uptime_secs,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/system",
    summary = "CPU, memory, data-directory disk, process RSS and uptime",
    responses(
        (status = 200, description = "the machine and the process", body = SystemView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn system(_: Authorized, State(state): State<AppState>) -> Json<SystemView> {
    let monitor = state.system.clone();
    let mut snap = tokio::task::spawn_blocking(move || monitor.snapshot())
        .await
        .unwrap_or_default();
    // The queue's own refusal counts as the disk's.
    snap.disk_refused = snap
        .disk_refused
        .or_else(|| state.service.queue.disk_full());
    Json(snap.into())
}

#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "the Prometheus text format", content(("text/plain"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn render(_: Authorized, State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.service.queue.stats()?;
    for (st, row) in &stats.by_priority {
        for (i, n) in row.iter().enumerate() {
            metrics::gauge!("spheroseg_jobs", "state" => st.as_str(), "priority" => (i + 1).to_string()).set(*n as f64);
        }
    }
    metrics::gauge!("spheroseg_queue_paused").set(f64::from(u8::from(stats.paused)));
    metrics::gauge!("spheroseg_queue_oldest_waiting_seconds")
        .set(stats.oldest_queued_ms.map_or(0.0, |ms| ms as f64 / 1e3));
    metrics::gauge!("spheroseg_database_bytes").set(stats.database_bytes as f64);
    let log = stats.log;
    metrics::counter!("spheroseg_queue_transactions_total").absolute(log.batches);
    metrics::counter!("spheroseg_queue_commands_total").absolute(log.commands);
    metrics::counter!("spheroseg_wal_syncs_total").absolute(log.syncs);
    metrics::counter!("spheroseg_wal_checkpoints_total").absolute(log.checkpoints);
    metrics::gauge!("spheroseg_wal_bytes").set(log.log_bytes as f64);
    metrics::gauge!("spheroseg_wal_capacity_bytes").set(log.log_capacity as f64);
    let (busy, total) = state.service.pool().map_or((0, 0), |p| p.workers());
    metrics::gauge!("spheroseg_workers_busy").set(busy as f64);
    metrics::gauge!("spheroseg_workers_total").set(total as f64);
    for (name, b) in breakers(&state) {
        let code = match b.state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("spheroseg_breaker_state", "service" => name.clone()).set(code);
        metrics::gauge!("spheroseg_breaker_calls", "service" => name.clone())
            .set(b.stats.fires as f64);
        metrics::gauge!("spheroseg_breaker_failures", "service" => name.clone())
            .set(b.stats.failures as f64);
        if let Some(svc) = state
            .service
            .pool()
            .and_then(|p| p.ml().get(name.as_str()).cloned())
        {
            let in_flight = svc.in_flight.load(std::sync::atomic::Ordering::SeqCst);
            metrics::gauge!("spheroseg_ml_in_flight", "service" => name.clone())
                .set(in_flight as f64);
            metrics::gauge!("spheroseg_ml_max_in_flight", "service" => name.clone())
                .set(svc.limit as f64);
            let ready = svc
                .last_health
                .lock()
                .expect("health lock")
                .as_ref()
                .map(|h| h.up);
            if let Some(up) = ready {
                metrics::gauge!("spheroseg_ml_ready", "service" => name)
                    .set(f64::from(u8::from(up)));
            }
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus().render(),
    )
        .into_response())
}
