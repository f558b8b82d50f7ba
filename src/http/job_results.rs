//! One job's result: `GET /api/jobs/{id}/result` (polygons and metrics as JSON),
//! `/result.csv` (the objects, images or legacy table) and `/mask.png` (the binary mask). A job
//! without a result is `409`; a stored result that cannot be read is a `500`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, Query};
use super::jobs::get_job;
use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::export;
use crate::queue::Job;
use crate::segment::SegmentResult;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(result_json))
        .routes(routes!(result_csv))
        .routes(routes!(mask))
}

/// The job `raw` names and its stored result.
pub(super) fn stored_result(state: &AppState, raw: &str) -> Result<(Job, SegmentResult), ApiError> {
    let job = get_job(state, raw)?;
    let bytes = result_bytes(state, &job)?;
    let result = decode_result(&job, &bytes)?;
    Ok((job, result))
}

/// The stored bytes of `job`'s result; `409` when it has none.
pub(super) fn result_bytes(state: &AppState, job: &Job) -> Result<Vec<u8>, ApiError> {
    state.service.queue.result(job.id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NO_RESULT,
            format!("job {} has no result: it is {}", job.id, job.state),
        )
    })
}

/// `job`'s result from its stored `bytes`; `500` when they cannot be read.
pub(super) fn decode_result(job: &Job, bytes: &[u8]) -> Result<SegmentResult, ApiError> {
    SegmentResult::from_bytes(bytes).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::RESULT_UNREADABLE,
            format!("the stored result of job {} cannot be read", job.id),
        )
    })
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/result",
    summary = "The result: polygons and metrics",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the result: image, segmenter, params, decisions, polygons, metrics per polygon, timings", body = Object),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn result_json(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, r) = stored_result(&state, &id)?;
    Ok(Json(r.to_json()).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TableQuery {
    /// `objects` (default; one row per object, units in the headers), `images` (one row) or
    /// `legacy` (the replaced design's 16 columns).
    #[param(schema_with = super::export::export_table_schema)]
    table: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/result.csv",
    summary = "The objects or images table as CSV, named after the image",
    params(("id" = String, Path, description = "The job id"), TableQuery),
    responses(
        (status = 200, description = "one row per object (objects, legacy) or one row (images)", content(("text/csv"))),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
        (status = 422, description = "an unknown table", body = ErrorBody),
    )
)]
async fn result_csv(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TableQuery>,
) -> Result<Response, ApiError> {
    let table: export::table::Table = q
        .table
        .as_deref()
        .unwrap_or("objects")
        .parse()
        .map_err(|e: String| ApiError::invalid("table", e))?;
    let (job, r) = stored_result(&state, &id)?;
    let mut out = Vec::new();
    let id = job.id.to_string();
    let written = match table {
        // One job's legacy CSV has the calibrated columns only when it is calibrated, as before.
        export::table::Table::Legacy => {
            export::write_csv(&mut out, [(id.as_str(), &r)], r.pixel_size.is_some())
        }
        t => export::table::write_csv(&mut out, t, [(id.as_str(), &r)], true),
    };
    written.map_err(|e| super::export::export_failed(e.to_string()))?;
    Ok(super::job_exports::download(
        "text/csv; charset=utf-8",
        super::export::attachment(&super::job_exports::stem(&r), "csv"),
        out,
    ))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/mask.png",
    summary = "The binary mask as PNG, holes cut out",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the mask", content(("image/png"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn mask(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, r) = stored_result(&state, &id)?;
    let png = export::mask_png(&r).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::EXPORT_FAILED,
            e.to_string(),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}
