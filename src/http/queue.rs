//! The queue as a whole: counts, throughput, percentiles, workers; pause and resume; the ML
//! services' breakers; and the replaced design's `/api/segmentation/queue/status`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::{ApiError, AppState};
use crate::queue::{Limit, QueueStats};
use crate::segment::breaker::Snapshot;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queue))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(ml))
        .routes(routes!(reset))
        .routes(routes!(legacy_status))
}

#[derive(Serialize)]
struct QueueView {
    #[serde(flatten)]
    stats: QueueStats,
    workers_busy: usize,
    workers_total: usize,
    retention: RetentionView,
    /// Decoded image bytes the process may hold at once, and how many it holds now.
    decode_budget_bytes: u64,
    decode_in_flight_bytes: u64,
}

/// How long finished jobs of each state are kept; `null` is no limit.
#[derive(Serialize)]
struct RetentionView {
    completed: LimitView,
    failed: LimitView,
    cancelled: LimitView,
}

#[derive(Serialize)]
struct LimitView {
    max_age_days: Option<f64>,
    max_count: Option<u64>,
}

impl From<Limit> for LimitView {
    fn from(l: Limit) -> Self {
        LimitView {
            max_age_days: l.age.map(|a| a.as_secs_f64() / 86_400.0),
            max_count: l.count,
        }
    }
}

#[utoipa::path(get, path = "/api/queue", summary = "Counts per state and priority, throughput, wait and run percentiles, workers", responses((status = 200, description = "success")))]
async fn queue(_: Authorized, State(state): State<AppState>) -> Result<Json<QueueView>, ApiError> {
    let stats = state.service.queue.stats()?;
    let (workers_busy, workers_total) = state.service.pool().map_or((0, 0), |p| p.workers());
    let r = state.retention;
    Ok(Json(QueueView {
        stats,
        workers_busy,
        workers_total,
        retention: RetentionView {
            completed: r.completed.into(),
            failed: r.failed.into(),
            cancelled: r.cancelled.into(),
        },
        decode_budget_bytes: state.service.images.budget().total(),
        decode_in_flight_bytes: state.service.images.budget().in_use(),
    }))
}

#[derive(Serialize)]
struct Paused {
    paused: bool,
}

#[utoipa::path(post, path = "/api/queue/pause", summary = "Pause leasing (persisted)", responses((status = 200, description = "success")))]
async fn pause(_: Authorized, State(state): State<AppState>) -> Result<Json<Paused>, ApiError> {
    state.service.set_paused(true).await?;
    Ok(Json(Paused { paused: true }))
}

#[utoipa::path(post, path = "/api/queue/resume", summary = "Resume leasing", responses((status = 200, description = "success")))]
async fn resume(_: Authorized, State(state): State<AppState>) -> Result<Json<Paused>, ApiError> {
    state.service.set_paused(false).await?;
    Ok(Json(Paused { paused: false }))
}

/// Every configured ML service's breaker, on the pool's clock.
pub(super) fn breakers(state: &AppState) -> Vec<(String, Snapshot)> {
    state
        .service
        .pool()
        .map(|p| p.breakers())
        .unwrap_or_default()
}

#[derive(Serialize)]
struct MlView {
    name: String,
    /// The service URL, or the program run.
    target: String,
    breaker: Snapshot,
    /// What a remote service's `/health` said last.
    last_health: Option<crate::segment::http::Health>,
}

fn view(state: &AppState, name: String, breaker: Snapshot) -> MlView {
    let svc = state
        .service
        .pool()
        .and_then(|p| p.ml().get(name.as_str()).cloned());
    MlView {
        target: svc.as_ref().map(|s| s.target.clone()).unwrap_or_default(),
        last_health: svc.and_then(|s| s.last_health.lock().expect("health lock").clone()),
        name,
        breaker,
    }
}

#[utoipa::path(get, path = "/api/ml", summary = "Each ML service and its circuit breaker", responses((status = 200, description = "success")))]
async fn ml(_: Authorized, State(state): State<AppState>) -> Json<Vec<MlView>> {
    Json(
        breakers(&state)
            .into_iter()
            .map(|(name, breaker)| view(&state, name, breaker))
            .collect(),
    )
}

#[utoipa::path(post, path = "/api/ml/{name}/reset", summary = "Close the breaker of an ML service by hand", params(("name" = String, Path)), responses((status = 200, description = "success")))]
async fn reset(
    _: Authorized,

    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MlView>, ApiError> {
    let pool = state
        .service
        .pool()
        .ok_or_else(|| ApiError::not_found(format!("no ML service named {name}")))?;
    let snapshot = pool
        .reset_breaker(&name)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no ML service named {name}")))?;
    Ok(Json(view(&state, name, snapshot)))
}

#[derive(Serialize)]
struct LegacyStatus {
    queue: LegacyQueue,
    #[serde(rename = "circuitBreaker")]
    circuit_breaker: Option<Snapshot>,
}

#[derive(Serialize)]
struct LegacyQueue {
    waiting: u64,
    active: u64,
    completed: u64,
    failed: u64,
    delayed: u64,
    paused: bool,
}

#[utoipa::path(get, path = "/api/segmentation/queue/status", summary = "The queue status shape of the replaced design", responses((status = 200, description = "success")))]
async fn legacy_status(
    _: Authorized,
    State(state): State<AppState>,
) -> Result<Json<LegacyStatus>, ApiError> {
    let s = state.service.queue.stats()?;
    Ok(Json(LegacyStatus {
        queue: LegacyQueue {
            waiting: s.counts.queued,
            active: s.counts.active,
            completed: s.counts.completed,
            failed: s.counts.failed,
            delayed: s.counts.delayed,
            paused: s.paused,
        },
        circuit_breaker: breakers(&state).into_iter().next().map(|(_, b)| b),
    }))
}
