//! `POST /api/jobs/{id}/rerun`: a new job for a job's image with some parameters changed, linked
//! to it by `rerun_of`. The image is the one already stored (nothing is uploaded again); what the
//! body does not change is the original's: its parameters, priority and segmenter, and always its
//! project, metadata and page.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes};
use super::intake::{self, priority};
use super::jobs::{Accepted, accepted, get_job};
use super::{ApiError, AppState};
use crate::segment::PixelSizeGiven;
use crate::service::RerunOptions;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rerun))
}

/// What to change for the new job.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RerunBody {
    /// The parameters to change (fields of `ParamsView`; `null` clears an optional one); the
    /// others keep the original job's values. Absent or `{}`: the same parameters.
    #[schema(value_type = Option<crate::view::ParamsView>)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
    /// 1 (lowest) to 10 (highest); the original's when absent.
    #[schema(minimum = 1, maximum = 10)]
    priority: Option<i64>,
    /// `builtin` or the name of a configured ML service; the original's when absent.
    segmenter: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/rerun",
    summary = "Run a job's image again with changed parameters, as a new job linked by rerun_of; 202 once durable",
    params(("id" = String, Path, description = "The job to run again")),
    request_body(content = RerunBody, content_type = "application/json"),
    responses(
        (status = 202, description = "the new job is durable", body = Accepted),
        (status = 400, description = "the body is not JSON of this shape", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job's image is no longer stored", body = ErrorBody),
        (status = 413, description = "the body is over the limit", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "a field out of range: priority, segmenter, params, or an image too small for the segmenter", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
        (status = 507, description = "the data directory's disk is full", body = ErrorBody),
    )
)]
async fn rerun(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let original = get_job(&state, &id)?;
    let b: RerunBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"params\": {{...}}, \"priority\"?: N, \"segmenter\"?: NAME}}: {e}"
        ))
    })?;
    let mut params = match b.params {
        Some(patch) => intake::params_patch(&original.params, patch)?,
        None => original.params.clone(),
    };
    // A pixel size the rerun changes is the job's own; one it keeps keeps its origin.
    params.pixel_size_from = if params.pixel_size_um == original.params.pixel_size_um {
        original.params.pixel_size_from
    } else {
        PixelSizeGiven::Job
    };
    let opts = RerunOptions {
        params,
        priority: b.priority.map_or(Ok(original.priority), priority)?,
        segmenter: match &b.segmenter {
            Some(s) => intake::segmenter(s.trim())?,
            None => original.segmenter.clone(),
        },
    };
    let done = state.service.rerun(&original, opts).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(accepted(&state, std::slice::from_ref(&done))?),
    )
        .into_response())
}
