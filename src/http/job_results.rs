//! One job's result: `GET /api/jobs/{id}/result` (polygons and metrics as JSON, the latest
//! version or `?version=N`), `PUT` of the same (outlines corrected by hand, a new version),
//! `/result.csv` (the objects, images or legacy table) and `/mask.png` (the binary mask). A job
//! without a result is `409`; a stored result that cannot be read is a `500`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes, Query};
use super::jobs::get_job;
use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::export;
use crate::outline::Polygon;
use crate::queue::Job;
use crate::segment::SegmentResult;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(result_json, put_result))
        .routes(routes!(result_csv))
        .routes(routes!(mask))
}

/// The job `raw` names and the latest version of its stored result.
pub(super) fn stored_result(state: &AppState, raw: &str) -> Result<(Job, SegmentResult), ApiError> {
    stored_version(state, raw, None).map(|(job, _, r)| (job, r))
}

/// The job `raw` names, and version `version` of its stored result (`None`: the latest) with
/// its number.
pub(super) fn stored_version(
    state: &AppState,
    raw: &str,
    version: Option<u32>,
) -> Result<(Job, u32, SegmentResult), ApiError> {
    let job = with_result(state, raw)?;
    Ok(state.service.result_at(job.id, version)?)
}

/// The job `raw` names; `409` unless it has a result.
pub(super) fn with_result(state: &AppState, raw: &str) -> Result<Job, ApiError> {
    let job = get_job(state, raw)?;
    if job.result.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NO_RESULT,
            format!("job {} has no result: it is {}", job.id, job.state),
        ));
    }
    Ok(job)
}

/// The stored bytes of `job`'s latest result version; `409` when it has none.
pub(super) fn result_bytes(state: &AppState, job: &Job) -> Result<Vec<u8>, ApiError> {
    state
        .service
        .queue
        .result(job.id)?
        .ok_or_else(|| no_result(job))
}

/// `409 no-result`: `job` has not completed.
pub(super) fn no_result(job: &Job) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::NO_RESULT,
        format!("job {} has no result: it is {}", job.id, job.state),
    )
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

/// A result as JSON, with the version it is.
pub(super) fn result_body(r: &SegmentResult, version: u32) -> Response {
    let mut json = r.to_json();
    json.version = Some(version);
    Json(json).into_response()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionQuery {
    /// The result version (1 is the segmenter's); the latest when absent.
    #[param(minimum = 1)]
    version: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/result",
    summary = "The result: polygons and metrics",
    params(("id" = String, Path, description = "The job id"), VersionQuery),
    responses(
        (status = 200, description = "the result: image, segmenter, params, decisions, polygons, metrics per polygon, timings, corrected, version", body = Object),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or no such version of its result", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn result_json(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    let (_, version, r) = stored_version(&state, &id, q.version)?;
    Ok(result_body(&r, version))
}

/// One entry of the polygon list (the schema of `outline::Polygon`, which `[x, y]` pairs as
/// points also fit).
#[derive(ToSchema)]
#[allow(dead_code)]
struct PolygonSchema {
    /// Unique in the list; a hole's `parentId` names its outline's.
    id: String,
    /// At least three, in original-image pixels; the ring closes by itself.
    points: Vec<PointSchema>,
    #[schema(rename = "type")]
    kind: PolygonKindSchema,
    /// `spheroid` for an outline, `hole` for a hole.
    class: String,
    /// Required on holes: the id of the outline listed before it.
    #[schema(rename = "parentId")]
    parent_id: Option<String>,
    /// Cosmetic.
    color: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PointSchema {
    x: f64,
    y: f64,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum PolygonKindSchema {
    External,
    Internal,
}

/// Outlines corrected by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    /// The version the outlines were edited from; refused with 409 unless it is the latest.
    #[schema(minimum = 1)]
    base_version: u32,
    /// Every object of the corrected result, in the polygon format of the results (each
    /// external polygon followed by its holes, `parentId` naming it).
    #[schema(value_type = Vec<PolygonSchema>)]
    polygons: Vec<Polygon>,
}

#[utoipa::path(
    put,
    path = "/api/jobs/{id}/result",
    summary = "Store outlines corrected by hand as a new result version",
    description = "The server checks the polygons, measures every metric again on the job's image and stores them as a new version beside the earlier ones, which are kept.",
    params(("id" = String, Path, description = "The job id")),
    request_body = CorrectionBody,
    responses(
        (status = 200, description = "the new latest version of the result", body = Object),
        (status = 400, description = "the body is not {\"base_version\": N, \"polygons\": [...]}", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result, or base_version is not the latest version", body = ErrorBody),
        (status = 413, description = "the body is over the limit", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "a polygon is refused (the message names it): too few points, no area, outside the image, crossing itself", body = ErrorBody),
        (status = 503, description = "busy decoding other images (see Retry-After), or shutting down", body = ErrorBody),
    )
)]
async fn put_result(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let b: CorrectionBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"base_version\": N, \"polygons\": [...]}}: {e}"
        ))
    })?;
    let job = get_job(&state, &id)?;
    state
        .service
        .correct(job.id, b.base_version, b.polygons)
        .await?;
    let (_, version, r) = stored_version(&state, &id, None)?;
    Ok(result_body(&r, version))
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
