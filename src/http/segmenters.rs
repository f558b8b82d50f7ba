//! What a segmenter takes: `GET /api/segmenters/builtin/params`, the builtin segmenter's
//! parameters with their defaults, ranges and help (`view/param_fields.rs`), from which the
//! status page builds its parameter form.

use axum::Json;
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
    OpenApiRouter::new().routes(routes!(builtin_params))
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
