//! One job's result in the lab's other tools: `GET /api/jobs/{id}/coco.json` (COCO instance
//! segmentation), `/rois.zip` (an ImageJ ROI set for Fiji's ROI Manager), `/labels.png` (a
//! 16-bit label image) and `/overlay.png` (numbered outlines on the image, for figures). Each
//! download is named after the image.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::export::{attachment, export_failed};
use super::job_results::stored_result;
use super::{ApiError, AppState};
use crate::export;
use crate::segment::SegmentResult;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(coco))
        .routes(routes!(rois))
        .routes(routes!(labels))
        .routes(routes!(overlay))
}

/// The image's file name without its extension, for the download's name.
pub(super) fn stem(r: &SegmentResult) -> String {
    std::path::Path::new(&r.image.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("result")
        .to_owned()
}

/// A download of type `kind` under the `Content-Disposition` `name`.
pub(super) fn download(kind: &str, name: String, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/coco.json",
    summary = "The objects as COCO instance-segmentation JSON (one category, spheroid)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "images, annotations (polygons; RLE for objects with holes), categories", content(("application/json"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn coco(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (job, r) = stored_result(&state, &id)?;
    let id = job.id.to_string();
    let body = export::coco::coco_json([(id.as_str(), &r)]).into_bytes();
    Ok(download(
        "application/json",
        attachment(&format!("{}.coco", stem(&r)), "json"),
        body,
    ))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/rois.zip",
    summary = "The outlines as an ImageJ ROI set (a ZIP of .roi files, holes as their own ROIs)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "one polygon ROI per outline and per hole", content(("application/zip"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn rois(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, r) = stored_result(&state, &id)?;
    let zip = export::roi::write_roi_set(std::io::Cursor::new(Vec::new()), &r)
        .map_err(|e| export_failed(e.to_string()))?;
    Ok(download(
        "application/zip",
        attachment(&format!("{}_rois", stem(&r)), "zip"),
        zip.into_inner(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/labels.png",
    summary = "The label image: 16-bit gray PNG, 0 background and holes, object i has value i",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the label image", content(("image/png"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn labels(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, r) = stored_result(&state, &id)?;
    let png = export::labels::label_png(&r).map_err(|e| export_failed(e.to_string()))?;
    Ok(download(
        "image/png",
        attachment(&format!("{}_labels", stem(&r)), "png"),
        png,
    ))
}

/// The overlay of `r` on the image `hash`, drawn on its full-size preview (decoded under the
/// decode budget, stretched, and cached).
pub(super) fn overlay_of(
    images: &crate::images::ImageStore,
    hash: &str,
    r: &SegmentResult,
) -> Result<Vec<u8>, ApiError> {
    let side = r.image.width.max(r.image.height);
    let preview = images.preview(hash, side)?;
    let preview = image::load_from_memory(&preview)
        .map_err(|e| export_failed(e.to_string()))?
        .to_luma8();
    let (w, h) = preview.dimensions();
    let gray = crate::morphology::Gray::new(
        w,
        h,
        preview.as_raw().iter().map(|&v| f32::from(v)).collect(),
    );
    export::overlay_png(&gray, r).map_err(|e| export_failed(e.to_string()))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/overlay.png",
    summary = "The image with each object's outline and number drawn on it, for figures",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the overlay, the image's size", content(("image/png"))),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or its image is gone", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
        (status = 503, description = "decoding would exceed the decode budget now: retry", body = ErrorBody),
    )
)]
async fn overlay(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (job, r) = stored_result(&state, &id)?;
    let name = attachment(&format!("{}_overlay", stem(&r)), "png");
    let images = state.service.images.clone();
    let png = tokio::task::spawn_blocking(move || overlay_of(&images, &job.image.hash, &r))
        .await
        .map_err(|e| export_failed(format!("the overlay task failed: {e}")))??;
    Ok(download("image/png", name, png))
}
