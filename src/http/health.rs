//! The five health endpoints the replaced design promised, answering for real.
//!
//! - live: the process answers; checks nothing else.
//! - ready: the database is open and takes changes, the worker pool runs, the data directory's
//!   file system is above its low-water mark with no write refused for lack of space since the
//!   last that succeeded, and shutdown has not begun (it turns false first thing on shutdown,
//!   before the listener closes).
//! - health / detailed: storage, queue, workers, ml, disk; an open breaker is `degraded`, not
//!   `unhealthy`, while the builtin segmenter still works. 503 only when unhealthy.
//! - services/{name}: one of them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::queue::breakers;
use crate::clock::{Clock, Millis, SystemClock};
use crate::segment::breaker::State as BreakerState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(detailed))
        .routes(routes!(service))
}

/// `degraded` still works (a breaker open, the queue paused, disk or memory low); `unhealthy`
/// answers 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

struct Check {
    name: &'static str,
    status: Status,
    details: Value,
}

/// The process answers.
#[derive(Serialize, ToSchema)]
struct Live {
    alive: bool,
    #[schema(value_type = u64)]
    timestamp: Millis,
}

/// Whether spheroseg accepts work, and what that needs.
#[derive(Serialize, ToSchema)]
struct Ready {
    ready: bool,
    services: ReadyServices,
    disk: ReadyDisk,
}

/// The data directory's file system, as readiness judges it.
#[derive(Serialize, ToSchema)]
struct ReadyDisk {
    available_bytes: u64,
    /// Under this much free space spheroseg is not ready.
    low_water_bytes: u64,
    /// Why a write was refused for lack of space, until one succeeds again.
    refused: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ReadyServices {
    /// The database answers.
    storage: bool,
    /// The worker pool runs.
    workers: bool,
    /// Shutdown has not begun.
    accepting: bool,
    /// The data directory's file system is above its low-water mark, and no write was refused
    /// for lack of space since the last that succeeded.
    disk: bool,
}

/// The overall health and each service's status.
#[derive(Serialize, ToSchema)]
struct Summary {
    status: Status,
    #[schema(value_type = u64)]
    timestamp: Millis,
    /// Seconds since the server started.
    uptime: u64,
    version: &'static str,
    /// `storage`, `queue`, `workers`, `disk`, `memory`, `ml`.
    services: BTreeMap<&'static str, Status>,
}

/// The overall health and each service's status with its details.
#[derive(Serialize, ToSchema)]
struct Detailed {
    status: Status,
    #[schema(value_type = u64)]
    timestamp: Millis,
    /// Seconds since the server started.
    uptime: u64,
    version: &'static str,
    /// `storage`, `queue`, `workers`, `disk`, `memory`, `ml`.
    services: BTreeMap<&'static str, CheckDetails>,
}

/// One service's status and what it was judged on.
#[derive(Serialize, ToSchema)]
struct CheckDetails {
    status: Status,
    #[schema(value_type = Object)]
    details: Value,
}

/// One service's health.
#[derive(Serialize, ToSchema)]
struct ServiceHealth {
    name: &'static str,
    status: Status,
    #[schema(value_type = Object)]
    details: Value,
}

/// The replaced design's answer for a service it does not know.
#[derive(Serialize, ToSchema)]
struct UnknownService {
    error: String,
}

#[utoipa::path(
    get,
    path = "/api/health/live",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "alive", body = Live))
)]
async fn live() -> Json<Live> {
    Json(Live {
        alive: true,
        timestamp: SystemClock.now(),
    })
}

#[utoipa::path(
    get,
    path = "/api/health/ready",
    summary = "Readiness: accepting work (false first on shutdown)",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "not ready: starting, shutting down, the database or the pool is down, or the disk is (nearly) full", body = Ready),
    )
)]
async fn ready(_: Authorized, State(state): State<AppState>) -> Response {
    let queue = &state.service.queue;
    let storage = queue.stats().is_ok();
    let workers = state.service.pool().is_some();
    let monitor = state.system.clone();
    let disk = tokio::task::spawn_blocking(move || monitor.disk().status())
        .await
        .unwrap_or_default();
    let queue_full = queue.disk_full();
    let room = !disk.low && disk.refused.is_none() && queue_full.is_none();
    let ready = state.is_ready() && storage && workers && room;
    let body = Ready {
        ready,
        services: ReadyServices {
            storage,
            workers,
            accepting: state.is_ready(),
            disk: room,
        },
        disk: ReadyDisk {
            available_bytes: disk.filesystem.available_bytes,
            low_water_bytes: disk.low_water_bytes,
            refused: disk.refused.or(queue_full),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn checks(state: &AppState) -> Vec<Check> {
    let mut out = Vec::new();
    match state.service.queue.stats() {
        Ok(s) => {
            out.push(Check {
                name: "storage",
                status: Status::Healthy,
                details: json!({"database_bytes": s.database_bytes, "commit_latency": s.commit}),
            });
            out.push(Check {
                name: "queue",
                status: if s.paused { Status::Degraded } else { Status::Healthy },
                details: json!({"counts": s.counts, "paused": s.paused, "oldest_queued_ms": s.oldest_queued_ms}),
            });
        }
        Err(e) => {
            for name in ["storage", "queue"] {
                out.push(Check {
                    name,
                    status: Status::Unhealthy,
                    details: json!({"error": e.to_string()}),
                });
            }
        }
    }
    let (busy, total) = state.service.pool().map_or((0, 0), |p| p.workers());
    out.push(Check {
        name: "workers",
        status: if total > 0 {
            Status::Healthy
        } else {
            Status::Unhealthy
        },
        details: json!({"busy": busy, "total": total}),
    });
    let sys = state.system.snapshot();
    let queue_full = state.service.queue.disk_full();
    let refused = sys.disk_refused.clone().or(queue_full);
    out.push(Check {
        name: "disk",
        status: if sys.disk_low() || refused.is_some() {
            Status::Degraded
        } else {
            Status::Healthy
        },
        details: json!({
            "path": state.system.disk().dir(),
            "mount": sys.disk_mount,
            "fs_type": sys.disk_fs_type,
            "available_bytes": sys.disk_available_bytes,
            "total_bytes": sys.disk_total_bytes,
            "low_water_bytes": sys.disk_low_water_bytes,
            "refused": refused,
        }),
    });
    out.push(Check {
        name: "memory",
        status: if sys.memory_low() { Status::Degraded } else { Status::Healthy },
        details: json!({"available_bytes": sys.memory_available_bytes, "total_bytes": sys.memory_total_bytes, "process_rss_bytes": sys.process_rss_bytes}),
    });
    let breakers = breakers(state);
    let open = breakers
        .iter()
        .any(|(_, b)| b.state != BreakerState::Closed);
    out.push(Check {
        name: "ml",
        status: if open {
            Status::Degraded
        } else {
            Status::Healthy
        },
        // Per service: its breaker's snapshot, with its segmenter, readiness and calls in flight.
        details: json!(
            super::queue::ml_views(state)
                .into_iter()
                .map(|(n, mut v)| {
                    let mut b = v["breaker"].take();
                    if let (Some(b), Some(view)) = (b.as_object_mut(), v.as_object()) {
                        for (k, x) in view.iter().filter(|(k, _)| *k != "breaker" && *k != "name") {
                            b.insert(k.clone(), x.clone());
                        }
                    }
                    (n, b)
                })
                .collect::<serde_json::Map<_, _>>()
        ),
    });
    out
}

fn overall(checks: &[Check]) -> Status {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Healthy)
}

/// 503 when unhealthy, else 200.
fn code_of(status: Status) -> StatusCode {
    if status == Status::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

#[utoipa::path(
    get,
    path = "/api/health",
    summary = "Overall health: healthy, degraded or unhealthy",
    responses(
        (status = 200, description = "healthy or degraded", body = Summary),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "unhealthy", body = Summary),
    )
)]
async fn summary(_: Authorized, State(state): State<AppState>) -> Response {
    let checks = checks(&state);
    let status = overall(&checks);
    let body = Summary {
        status,
        timestamp: SystemClock.now(),
        uptime: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        services: checks.iter().map(|c| (c.name, c.status)).collect(),
    };
    (code_of(status), Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/api/health/detailed",
    summary = "Health with the details of every service",
    responses(
        (status = 200, description = "healthy or degraded", body = Detailed),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "unhealthy", body = Detailed),
    )
)]
async fn detailed(_: Authorized, State(state): State<AppState>) -> Response {
    let checks = checks(&state);
    let status = overall(&checks);
    let body = Detailed {
        status,
        timestamp: SystemClock.now(),
        uptime: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        services: checks
            .into_iter()
            .map(|c| {
                let details = CheckDetails {
                    status: c.status,
                    details: c.details,
                };
                (c.name, details)
            })
            .collect(),
    };
    (code_of(status), Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/api/health/services/{name}",
    summary = "The health of one service",
    params(("name" = String, Path, description = "storage, queue, workers, disk, memory or ml")),
    responses(
        (status = 200, description = "healthy or degraded", body = ServiceHealth),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no service of that name (the replaced design's body)", body = UnknownService),
        (status = 503, description = "unhealthy", body = ServiceHealth),
    )
)]
async fn service(
    _: Authorized,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    match checks(&state).into_iter().find(|c| c.name == name) {
        Some(c) => (
            code_of(c.status),
            Json(ServiceHealth {
                name: c.name,
                status: c.status,
                details: c.details,
            }),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(UnknownService {
                error: format!("Unknown service: {name}"),
            }),
        )
            .into_response(),
    }
}
