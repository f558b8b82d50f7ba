//! One job's image: `GET /api/jobs/{id}/image` (the bytes as submitted, with their type) and
//! `/preview.png` (an 8-bit PNG browsers can show, even of a 16-bit TIFF).

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::jobs::get_job;
use super::{ApiError, AppState};
use crate::error_code::ErrorCode;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(original))
        .routes(routes!(preview))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/image",
    summary = "The original image bytes",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the image as it was submitted", content(
            ("image/png"),
            ("image/jpeg"),
            ("image/tiff"),
            ("image/bmp"),
            ("application/octet-stream"),
        )),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or its image is gone (`image-missing`)", body = ErrorBody),
    )
)]
async fn original(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = get_job(&state, &id)?;
    let images = state.service.images.clone();
    let hash = job.image.hash.clone();
    let bytes = tokio::task::spawn_blocking(move || images.read(&hash))
        .await
        .map_err(task_failed)??;
    let kind = crate::segment::decode::probe(&bytes, &crate::segment::DecodeLimits::default())
        .map(|h| match h.format {
            "PNG" => "image/png",
            "JPEG" => "image/jpeg",
            "TIFF" => "image/tiff",
            _ => "image/bmp",
        })
        .unwrap_or("application/octet-stream");
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// The original as an 8-bit PNG of at most 2048 px, which browsers can show even for 16-bit TIFF.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/preview.png",
    summary = "An 8-bit preview PNG of at most 2048 px",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the preview", content(("image/png"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or its image is gone (`image-missing`)", body = ErrorBody),
        (status = 413, description = "the image is over the size limits or the decode budget", body = ErrorBody),
        (status = 415, description = "the stored image cannot be decoded", body = ErrorBody),
        (status = 503, description = "busy decoding other images (see Retry-After)", body = ErrorBody),
    )
)]
async fn preview(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = get_job(&state, &id)?;
    let images = state.service.images.clone();
    let png = tokio::task::spawn_blocking(move || images.preview(&job.image.hash, 2048))
        .await
        .map_err(task_failed)??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        png,
    )
        .into_response())
}

/// A blocking read of the image store that did not finish (it panicked or was cancelled).
pub(super) fn task_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::IO_ERROR,
        e.to_string(),
    )
}
