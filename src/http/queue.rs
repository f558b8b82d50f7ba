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
use crate::clock::Clock;
use crate::queue::{
    CommitLatency, JobState, Limit, LogStats, Percentiles, QueueStats, StateCounts, Throughput,
};
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
    #[serde(flatten)]
    stats: StatsView,
    workers_busy: usize,
    workers_total: usize,
    retention: RetentionView,
    /// Decoded image bytes the process may hold at once, and how many it holds now.
    decode_budget_bytes: u64,
    decode_in_flight_bytes: u64,
}

// `queue/` stays free of utoipa: `StatsView` and its parts are `QueueStats` and its parts,
// serialised the same (a test compares them), each built by naming every field so none can be
// left out.

/// The queue's counters and figures.
#[derive(Serialize, ToSchema)]
struct StatsView {
    counts: CountsView,
    /// For each state, `[state, [jobs at priority 1, 2, ..., 10]]`.
    #[schema(schema_with = by_priority_schema)]
    by_priority: Vec<(JobState, [u64; 10])>,
    /// Age of the longest-waiting queued job; `null` when none waits.
    oldest_queued_ms: Option<u64>,
    paused: bool,
    /// Jobs completed over the last 1, 5 and 15 minutes.
    completed: ThroughputView,
    /// Jobs failed over the last 1, 5 and 15 minutes.
    failed: ThroughputView,
    /// Jobs completed in each of the last 60 minutes, oldest first (the current minute last).
    completed_per_minute: Vec<u64>,
    /// From becoming queued to being leased.
    wait: PercentilesView,
    /// From being leased to completing.
    run: PercentilesView,
    /// How long durable commits took.
    commit: CommitView,
    database_bytes: u64,
    /// The writer's work since the queue opened.
    log: LogView,
}

/// Jobs per state.
#[derive(Serialize, ToSchema)]
struct CountsView {
    queued: u64,
    delayed: u64,
    active: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
}

/// Jobs finished over the last 1, 5 and 15 minutes.
#[derive(Serialize, ToSchema)]
struct ThroughputView {
    last_1m: u64,
    last_5m: u64,
    last_15m: u64,
}

/// Median and 95th percentile in milliseconds over the recent window; `null` before any sample.
#[derive(Serialize, ToSchema)]
struct PercentilesView {
    p50_ms: Option<u64>,
    p95_ms: Option<u64>,
    samples: usize,
}

/// Durable commit time in microseconds over the recent window; `null` before any commit.
#[derive(Serialize, ToSchema)]
struct CommitView {
    p50_us: Option<u64>,
    p95_us: Option<u64>,
    samples: usize,
}

/// Counters of the queue's writer and its write-ahead log since the queue opened.
#[derive(Serialize, ToSchema)]
struct LogView {
    /// Transactions committed.
    batches: u64,
    /// Commands those transactions carried.
    commands: u64,
    /// Syncs of the log.
    syncs: u64,
    /// Durable database commits that made the log's records redundant.
    checkpoints: u64,
    /// Bytes of the log written since the last checkpoint.
    log_bytes: u64,
    log_capacity: u64,
}

/// `[state, [10 counts]]`: a two-item array of a state name and one count per priority.
fn by_priority_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
    let counts = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .min_items(Some(10))
        .max_items(Some(10));
    let row = ArrayBuilder::new()
        .prefix_items([
            utoipa::openapi::Schema::Object(crate::view::job_state_schema()),
            counts.build().into(),
        ])
        .items(ArrayItems::False)
        .min_items(Some(2))
        .max_items(Some(2));
    ArrayBuilder::new().items(row).build()
}

impl From<QueueStats> for StatsView {
    fn from(s: QueueStats) -> Self {
        let QueueStats {
            counts,
            by_priority,
            oldest_queued_ms,
            paused,
            completed,
            failed,
            completed_per_minute,
            wait,
            run,
            commit,
            database_bytes,
            log,
        } = s;
        StatsView {
            counts: counts.into(),
            by_priority,
            oldest_queued_ms,
            paused,
            completed: completed.into(),
            failed: failed.into(),
            completed_per_minute,
            wait: wait.into(),
            run: run.into(),
            commit: commit.into(),
            database_bytes,
            log: log.into(),
        }
    }
}

impl From<StateCounts> for CountsView {
    fn from(c: StateCounts) -> Self {
        let StateCounts {
            queued,
            delayed,
            active,
            completed,
            failed,
            cancelled,
        } = c;
        CountsView {
            queued,
            delayed,
            active,
            completed,
            failed,
            cancelled,
        }
    }
}

impl From<Throughput> for ThroughputView {
    fn from(t: Throughput) -> Self {
        let Throughput {
            last_1m,
            last_5m,
            last_15m,
        } = t;
        ThroughputView {
            last_1m,
            last_5m,
            last_15m,
        }
    }
}

impl From<Percentiles> for PercentilesView {
    fn from(p: Percentiles) -> Self {
        let Percentiles {
            p50_ms,
            p95_ms,
            samples,
        } = p;
        PercentilesView {
            p50_ms,
            p95_ms,
            samples,
        }
    }
}

impl From<CommitLatency> for CommitView {
    fn from(c: CommitLatency) -> Self {
        let CommitLatency {
            p50_us,
            p95_us,
            samples,
        } = c;
        CommitView {
            p50_us,
            p95_us,
            samples,
        }
    }
}

impl From<LogStats> for LogView {
    fn from(l: LogStats) -> Self {
        let LogStats {
            batches,
            commands,
            syncs,
            checkpoints,
            log_bytes,
            log_capacity,
        } = l;
        LogView {
            batches,
            commands,
            syncs,
            checkpoints,
            log_bytes,
            log_capacity,
        }
    }
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
        stats: stats.into(),
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
    /// The segmenter whose jobs it takes (jobs name this).
    segmenter: String,
    /// `spheroseg` or `oip` for a remote service, `command` for the local program.
    protocol: &'static str,
    /// The service URL, or the program run.
    target: String,
    /// Its share of its segmenter's calls.
    weight: u32,
    /// Calls (runs) at once at most, and now.
    max_in_flight: usize,
    in_flight: usize,
    /// Whether its readiness probe said it is ready, when last asked; `null` before the first
    /// probe and for the local program.
    ready: Option<bool>,
    /// It asked not to be called before this (ms since the epoch; `Retry-After`), if it still
    /// waits.
    #[schema(value_type = Option<u64>)]
    wait_until: Option<crate::clock::Millis>,
    /// The breaker: `state` (`closed`, `open`, `half-open`), `enabled`, `stats` (call counters
    /// and latency percentiles), `since`, `nextProbe`, `consecutiveTrips`, `windowCalls`,
    /// `windowFailures`.
    #[schema(value_type = Object)]
    breaker: Snapshot,
    /// What its readiness probe said last: `up`, `status`, `body`, `error`, `latency_ms`.
    #[schema(value_type = Option<Object>)]
    last_health: Option<crate::segment::http::Health>,
}

fn view(state: &AppState, name: String, breaker: Snapshot) -> MlView {
    let svc = state
        .service
        .pool()
        .and_then(|p| p.ml().get(name.as_str()).cloned());
    let last_health = svc
        .as_ref()
        .and_then(|s| s.last_health.lock().expect("health lock").clone());
    let now = crate::clock::SystemClock.now();
    let wait = svc
        .as_ref()
        .map(|s| s.skip_until.load(std::sync::atomic::Ordering::SeqCst));
    MlView {
        segmenter: svc
            .as_ref()
            .and_then(|s| s.serves.as_ref())
            .map_or_else(|| name.clone(), ToString::to_string),
        protocol: svc
            .as_ref()
            .and_then(|s| s.remote.as_ref())
            .map_or("command", |r| r.protocol()),
        target: svc.as_ref().map(|s| s.target.clone()).unwrap_or_default(),
        weight: svc.as_ref().map_or(1, |s| s.weight),
        max_in_flight: svc.as_ref().map_or(0, |s| s.limit),
        in_flight: svc
            .as_ref()
            .map_or(0, |s| s.in_flight.load(std::sync::atomic::Ordering::SeqCst)),
        ready: last_health.as_ref().map(|h| h.up),
        wait_until: wait.filter(|&w| w > now),
        last_health,
        name,
        breaker,
    }
}

/// Each ML service's view as JSON, by name (for the health details).
pub(super) fn ml_views(state: &AppState) -> Vec<(String, serde_json::Value)> {
    breakers(state)
        .into_iter()
        .map(|(name, b)| {
            let v = serde_json::to_value(view(state, name.clone(), b)).expect("plain struct");
            (name, v)
        })
        .collect()
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
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The view writes exactly the JSON `QueueStats` writes.
    #[test]
    fn stats_view_serialises_as_queue_stats() {
        let mut stats = QueueStats::from_counts([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]; 6]);
        stats.oldest_queued_ms = Some(1500);
        stats.paused = true;
        stats.completed.last_5m = 7;
        stats.completed_per_minute = vec![0, 3, 4];
        stats.wait.p50_ms = Some(12);
        stats.commit.samples = 2;
        stats.log.log_capacity = 1 << 20;
        assert_eq!(
            serde_json::to_value(StatsView::from(stats.clone())).expect("json"),
            serde_json::to_value(&stats).expect("json")
        );
    }
}
