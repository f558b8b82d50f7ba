//! The segmenters: `GET /api/segmenters`, those jobs may name on this server (builtin and each
//! configured ML service or program), from which the upload form offers its choices; and what a
//! segmenter takes, `GET /api/segmenters/builtin/params`, the builtin segmenter's parameters with
//! their defaults, ranges and help (`view/param_fields.rs`), from which the status page builds
//! its parameter form.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authorized;
use super::error::Body as ErrorBody;
use crate::segment::SegmenterId;
use crate::view::{ParamField, param_fields};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(builtin_params))
}

/// The segmenters jobs may name here, and the one a job gets when it names none.
#[derive(Serialize, ToSchema)]
struct SegmenterList {
    default: String,
    /// `builtin` first, then the configured ones by name.
    segmenters: Vec<SegmenterView>,
}

/// A segmenter jobs may name.
#[derive(Serialize, ToSchema)]
struct SegmenterView {
    name: String,
    /// `builtin`, `remote` (an ML service over HTTP) or `program` (a local ML program).
    #[schema(value_type = String)]
    kind: &'static str,
    /// The service URL or the program run (the URLs of every service serving it, comma-separated);
    /// `null` for builtin.
    target: Option<String>,
    /// Its jobs run on the builtin segmenter while it is unavailable.
    fallback_builtin: bool,
}

#[utoipa::path(
    get,
    path = "/api/segmenters",
    summary = "The segmenters jobs may name here: builtin and each configured ML service or program",
    responses(
        (status = 200, description = "every segmenter a job may name, and the default", body = SegmenterList),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn list(_: Authorized, State(state): State<AppState>) -> Json<SegmenterList> {
    let mut segmenters = vec![SegmenterView {
        name: SegmenterId::BUILTIN.into(),
        kind: "builtin",
        target: None,
        fallback_builtin: false,
    }];
    // A job names a segmenter; several services may serve one, each shown once under it.
    let mut ml: Vec<SegmenterView> = Vec::new();
    if let Some(p) = state.service.pool() {
        let mut services: Vec<_> = p.ml().iter().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        for (id, svc) in services {
            let name = svc.serves.as_ref().unwrap_or(id).to_string();
            let kind = if svc.remote.is_some() {
                "remote"
            } else {
                "program"
            };
            match ml.iter_mut().find(|v| v.name == name) {
                Some(v) => {
                    let targets = v.target.get_or_insert_with(String::new);
                    targets.push_str(", ");
                    targets.push_str(&svc.target);
                    v.fallback_builtin |= svc.fallback_builtin;
                }
                None => ml.push(SegmenterView {
                    name,
                    kind,
                    target: Some(svc.target.clone()),
                    fallback_builtin: svc.fallback_builtin,
                }),
            }
        }
    }
    ml.sort_by(|a, b| a.name.cmp(&b.name));
    segmenters.extend(ml);
    Json(SegmenterList {
        default: state.service.default_segmenter.to_string(),
        segmenters,
    })
}

/// A segmenter's parameters.
#[derive(Serialize, ToSchema)]
struct SegmenterParams {
    segmenter: &'static str,
    /// One entry per field of `params`, in the order a form shows them.
    fields: Vec<ParamField>,
}

#[utoipa::path(
    get,
    path = "/api/segmenters/builtin/params",
    summary = "The builtin segmenter's parameters: type, default, range or choices, help",
    responses(
        (status = 200, description = "every parameter a job's params may set", body = SegmenterParams),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn builtin_params(_: Authorized) -> Json<SegmenterParams> {
    Json(SegmenterParams {
        segmenter: SegmenterId::BUILTIN,
        fields: param_fields(),
    })
}
