//! The queue as a whole: counts, throughput, percentiles, workers; pause and resume; the ML
//! services' breakers; and the replaced design's `/api/segmentation/queue/status`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
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

/// The queue's counters and figures, the workers, the retention and the decode budget.
#[derive(Serialize, ToSchema)]
struct QueueView {
    /// Counts per state (`counts`) and per state and priority (`by_priority`), the age of the
    /// oldest queued job, `paused`, throughput, wait and run percentiles, commit latency, the
    /// database size and the writer's counters (`log`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    stats: QueueStats,
    workers_busy: usize,
    workers_total: usize,
    retention: RetentionView,
    /// Decoded image bytes the process may hold at once, and how many it holds now.
    decode_budget_bytes: u64,
    decode_in_flight_bytes: u64,
}

/// How long finished jobs of each state are kept; `null` is no limit.
#[derive(Serialize, ToSchema)]
struct RetentionView {
    completed: LimitView,
    failed: LimitView,
    cancelled: LimitView,
}

/// The age and count limits of one state's finished jobs; `null` is no limit.
#[derive(Serialize, ToSchema)]
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

#[utoipa::path(
    get,
    path = "/api/queue",
    summary = "Counts per state and priority, throughput, wait and run percentiles, workers",
    responses(
        (status = 200, description = "the queue's figures", body = QueueView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
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

/// Whether leasing is paused.
#[derive(Serialize, ToSchema)]
struct Paused {
    paused: bool,
}

#[utoipa::path(
    post,
    path = "/api/queue/pause",
    summary = "Pause leasing (persisted)",
    responses(
        (status = 200, description = "paused", body = Paused),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn pause(_: Authorized, State(state): State<AppState>) -> Result<Json<Paused>, ApiError> {
    state.service.set_paused(true).await?;
    Ok(Json(Paused { paused: true }))
}

#[utoipa::path(
    post,
    path = "/api/queue/resume",
    summary = "Resume leasing",
    responses(
        (status = 200, description = "resumed", body = Paused),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
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

/// An ML service and its circuit breaker.
#[derive(Serialize, ToSchema)]
struct MlView {
    name: String,
    /// The service URL, or the program run.
    target: String,
    /// The breaker: `state` (`closed`, `open`, `half-open`), `enabled`, `stats` (call counters
    /// and latency percentiles), `since`, `nextProbe`, `consecutiveTrips`, `windowCalls`,
    /// `windowFailures`.
    #[schema(value_type = Object)]
    breaker: Snapshot,
    /// What a remote service's `/health` said last: `up`, `status`, `body`, `error`,
    /// `latency_ms`.
    #[schema(value_type = Option<Object>)]
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

#[utoipa::path(
    get,
    path = "/api/ml",
    summary = "Each ML service and its circuit breaker",
    responses(
        (status = 200, description = "every configured ML service", body = Vec<MlView>),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn ml(_: Authorized, State(state): State<AppState>) -> Json<Vec<MlView>> {
    Json(
        breakers(&state)
            .into_iter()
            .map(|(name, breaker)| view(&state, name, breaker))
            .collect(),
    )
}

#[utoipa::path(
    post,
    path = "/api/ml/{name}/reset",
    summary = "Close the breaker of an ML service by hand",
    params(("name" = String, Path, description = "The ML service's name")),
    responses(
        (status = 200, description = "the service with its breaker closed", body = MlView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no ML service of that name", body = ErrorBody),
    )
)]
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
        .ok_or_else(|| ApiError::not_found(format!("no ML service named {name}")))?;
    Ok(Json(view(&state, name, snapshot)))
}

/// The replaced design's queue status, same shape.
#[derive(Serialize, ToSchema)]
struct LegacyStatus {
    queue: LegacyQueue,
    /// The first ML service's breaker, as in `GET /api/ml`; `null` without one.
    #[serde(rename = "circuitBreaker")]
    #[schema(value_type = Option<Object>)]
    circuit_breaker: Option<Snapshot>,
}

/// Job counts by the replaced design's (Bull's) names.
#[derive(Serialize, ToSchema)]
struct LegacyQueue {
    waiting: u64,
    active: u64,
    completed: u64,
    failed: u64,
    delayed: u64,
    paused: bool,
}

#[utoipa::path(
    get,
    path = "/api/segmentation/queue/status",
    summary = "The queue status shape of the replaced design",
    responses(
        (status = 200, description = "the queue's status", body = LegacyStatus),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
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
