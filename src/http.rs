//! The HTTP API (axum): routes split by resource under `http/`, errors mapped in `http/error.rs`,
//! bearer-token auth, and `serve` taking its listener and shutdown future from the caller.
//! Only this module and its children use axum.

mod error;
mod events;
mod export;
mod guard;
mod health;
mod intake;
mod jobs;
mod ml;
mod queue;
mod system;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use error::ApiError;

use crate::error_code::ErrorCode;
pub use guard::{Guard, HostRule};

use crate::service::Service;
use crate::telemetry::SystemMonitor;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub started: Instant,
    /// False until the pool runs and again from the first moment of shutdown.
    pub ready: Arc<AtomicBool>,
    pub token: Option<Arc<str>>,
    pub bind: SocketAddr,
    /// Largest request body (uploads).
    pub body_limit: usize,
    pub system: Arc<SystemMonitor>,
    /// Canonical directories files may be imported from by path.
    pub import_dirs: Arc<[std::path::PathBuf]>,
    /// The Host check and the cross-site rules (`http/guard.rs`).
    pub guard: Arc<Guard>,
    /// A WebSocket client that has not taken a message within this long is disconnected.
    pub ws_send_timeout: std::time::Duration,
    /// The retention in force, shown on the page.
    pub retention: crate::queue::Retention,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Liveness, and the page itself (it holds no data; it asks for the token), are open.
    let path = req.uri().path();
    let open = path == "/api/health/live" || path == "/" || path.starts_with("/static/");
    if let Some(token) = &state.token
        && !open
    {
        let header_token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Browsers cannot set headers on a WebSocket: /ws also takes ?access_token=.
        let query_token = (path == "/ws")
            .then(|| req.uri().query())
            .flatten()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")));
        let given = header_token.or(query_token);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::UNAUTHORIZED,
                "this spheroseg requires Authorization: Bearer TOKEN",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// One span per request: method, matched route, status, latency; health at debug level.
async fn trace(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let status = resp.status().as_u16();
    metrics::counter!("spheroseg_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    if route.starts_with("/api/health") || route == "/metrics" {
        tracing::debug!(%method, %route, status, ms, "request");
    } else {
        tracing::info!(%method, %route, status, ms, "request");
    }
    resp
}

/// Every route with its OpenAPI description, built from the handlers' annotations.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut api) = utoipa_axum::router::OpenApiRouter::new()
        .merge(jobs::routes())
        .merge(queue::routes())
        .merge(health::routes())
        .merge(events::routes())
        .merge(ml::routes())
        .merge(export::routes())
        .merge(system::routes())
        .split_for_parts();
    api.info.title = "spheroseg".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description =
        Some("Spheroid segmentation jobs, results, queue, health and events".into());
    (router, api)
}

/// The OpenAPI 3 document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes();
    api.paths.paths.insert(
        "/api/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .response("200", utoipa::openapi::Response::new("success")),
        ),
    );
    api
}

/// Every route, ready for a listener or for `oneshot` in tests.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    let (routes, _) = routes();
    let doc = Arc::new(openapi());
    routes
        .merge(ui::routes())
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .route_layer(middleware::from_fn(trace))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn constant_time_comparison_is_still_a_comparison() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
    }
}
