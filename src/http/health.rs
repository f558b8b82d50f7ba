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

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authorized;
use super::queue::breakers;
use crate::clock::{Clock, SystemClock};
use crate::segment::breaker::State as BreakerState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(detailed))
        .routes(routes!(service))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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

#[utoipa::path(get, path = "/api/health/live", summary = "Liveness: the process answers", responses((status = 200, description = "success")))]
async fn live() -> Json<Value> {
    Json(json!({"alive": true, "timestamp": SystemClock.now()}))
}

#[utoipa::path(get, path = "/api/health/ready", summary = "Readiness: accepting work (false first on shutdown)", responses((status = 200, description = "success")))]
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
    let body = json!({
        "ready": ready,
        "services": {"storage": storage, "workers": workers, "accepting": state.is_ready(), "disk": room},
        "disk": {
            "available_bytes": disk.filesystem.available_bytes,
            "low_water_bytes": disk.low_water_bytes,
            "refused": disk.refused.or(queue_full),
        },
    });
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
        details: json!(
            breakers
                .iter()
                .map(|(n, b)| (n.clone(), json!(b)))
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

fn body(state: &AppState, checks: &[Check], details: bool) -> (StatusCode, Value) {
    let status = overall(checks);
    let services: serde_json::Map<String, Value> = checks
        .iter()
        .map(|c| {
            let v = if details {
                json!({"status": c.status, "details": c.details})
            } else {
                json!(c.status)
            };
            (c.name.to_owned(), v)
        })
        .collect();
    let code = if status == Status::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        json!({
            "status": status,
            "timestamp": SystemClock.now(),
            "uptime": state.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
            "services": services,
        }),
    )
}

#[utoipa::path(get, path = "/api/health", summary = "Overall health: healthy, degraded or unhealthy", responses((status = 200, description = "success")))]
async fn summary(_: Authorized, State(state): State<AppState>) -> Response {
    let checks = checks(&state);
    let (code, v) = body(&state, &checks, false);
    (code, Json(v)).into_response()
}

#[utoipa::path(get, path = "/api/health/detailed", summary = "Health with the details of every service", responses((status = 200, description = "success")))]
async fn detailed(_: Authorized, State(state): State<AppState>) -> Response {
    let checks = checks(&state);
    let (code, v) = body(&state, &checks, true);
    (code, Json(v)).into_response()
}

#[utoipa::path(get, path = "/api/health/services/{name}", summary = "The health of one service", params(("name" = String, Path)), responses((status = 200, description = "success")))]
async fn service(
    _: Authorized,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    match checks(&state).into_iter().find(|c| c.name == name) {
        Some(c) => {
            let code = if c.status == Status::Unhealthy {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (
                code,
                Json(json!({"name": c.name, "status": c.status, "details": c.details})),
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("Unknown service: {name}")})),
        )
            .into_response(),
    }
}
