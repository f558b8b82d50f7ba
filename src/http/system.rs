//! The machine and the process: `GET /api/system` (CPU, memory, data-directory disk, process RSS
//! and uptime) and `GET /metrics` (Prometheus text, rendered by metrics-exporter-prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::queue::breakers;
use super::{ApiError, AppState};
use crate::segment::breaker::State as BreakerState;
use crate::telemetry::{SystemSnapshot, prometheus};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(system))
        .routes(routes!(render))
}

#[utoipa::path(get, path = "/api/system", summary = "CPU, memory, data-directory disk, process RSS and uptime", responses((status = 200, description = "success")))]
async fn system(_: Authorized, State(state): State<AppState>) -> Json<SystemSnapshot> {
    let monitor = state.system.clone();
    let mut snap = tokio::task::spawn_blocking(move || monitor.snapshot())
        .await
        .unwrap_or_default();
    // The queue's own refusal counts as the disk's.
    snap.disk_refused = snap
        .disk_refused
        .or_else(|| state.service.queue.disk_full());
    Json(snap)
}

#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", responses((status = 200, description = "success")))]
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
        metrics::gauge!("spheroseg_breaker_failures", "service" => name)
            .set(b.stats.failures as f64);
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
