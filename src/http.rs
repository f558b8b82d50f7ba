//! The HTTP API (axum): routes split by resource under `http/`, errors mapped in `http/error.rs`,
//! who may call checked first (`http/guard.rs`), the bearer token as an extractor of every data
//! handler (`http/auth.rs`), and `serve` taking its listener and shutdown future from the caller.
//! Only this module and its children use axum.

mod admin;
mod auth;
mod error;
mod events;
mod export;
mod gallery;
mod guard;
mod health;
mod intake;
mod job_exports;
mod job_images;
mod job_results;
mod job_thumbnail;
mod job_versions;
mod jobs;
mod ml;
mod projects;
mod queue;
mod rerun;
mod segmenters;
mod system;
mod ui;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use error::ApiError;

pub use crate::config::HostRule;
pub use guard::Guard;

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
    /// The watched folders' status.
    pub watch: crate::watch::Watching,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// One line per request, at debug: method, matched route, status, latency.
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
    // At debug: a page that polls would fill the log at info (5xx are logged where they are made).
    tracing::debug!(%method, %route, status, ms, "request");
    resp
}

/// Every route with its OpenAPI description, built from the handlers' annotations.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut api) = utoipa_axum::router::OpenApiRouter::new()
        .merge(jobs::routes())
        .merge(job_results::routes())
        .merge(job_versions::routes())
        .merge(job_images::routes())
        .merge(job_thumbnail::routes())
        .merge(gallery::routes())
        .merge(job_exports::routes())
        .merge(rerun::routes())
        .merge(segmenters::routes())
        .merge(queue::routes())
        .merge(health::routes())
        .merge(events::routes())
        .merge(ml::routes())
        .merge(export::routes())
        .merge(system::routes())
        .merge(watch::routes())
        .merge(projects::routes())
        .merge(admin::routes())
        .split_for_parts();
    api.info.title = "spheroseg".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description =
        Some("Spheroid segmentation jobs, results, queue, health and events".into());
    (router, api)
}

/// The OpenAPI 3 document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = routes();
    document(api)
}

/// The handlers' document completed with what no handler annotates: the document's own route and
/// the guard's refusals.
fn document(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::ToSchema;
    use utoipa::openapi::{Content, Object, Ref, ResponseBuilder};
    let error = ResponseBuilder::new()
        .description("a token is configured and the request lacks it")
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(error::Body::name()))),
        );
    api.paths.paths.insert(
        "/api/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .operation_id(Some("openapi"))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("the OpenAPI document")
                        .content("application/json", Content::new(Some(Object::new()))),
                )
                .response("401", error),
        ),
    );
    guard::document(&mut api);
    api
}

/// Every route, ready for a listener or for `oneshot` in tests.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    let (routes, api) = routes();
    let doc = Arc::new(document(api));
    routes
        .merge(ui::routes())
        .route(
            "/api/openapi.json",
            axum::routing::get(move |_: auth::Authorized| {
                let doc = Arc::clone(&doc);
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::compression::CompressionLayer::new())
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
