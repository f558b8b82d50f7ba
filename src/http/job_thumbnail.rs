//! `GET /api/jobs/{id}/thumbnail`: a completed job's image, small (256 px on its long side unless
//! `size` says otherwise, 16 to 512), with its outlines drawn, as JPEG, for the page's gallery.
//!
//! Invariants: a thumbnail is named by its size, its image and its result's latest version
//! (number, time and size; a version is never changed, only added), so a result that changes (a
//! corrected or restored version) gets a new ETag and a new cache file, and a revalidation reads
//! nothing but the job's record; the cache lives beside
//! the image's previews (`ImageStore::keep_thumbnail`) and goes with the image. A request whose
//! `If-None-Match` names the current ETag gets `304` without drawing anything.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, Query};
use super::export::export_failed;
use super::job_images::task_failed;
use super::job_results::{decode_result, no_result, result_bytes};
use super::jobs::get_job;
use super::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(thumbnail))
}

/// The long side of a thumbnail unless the request asks for another.
pub const THUMBNAIL_SIDE: u32 = 256;
/// The sizes a request may ask for.
pub const THUMBNAIL_SIDES: std::ops::RangeInclusive<u32> = 16..=512;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ThumbnailQuery {
    /// The long side in pixels, 16 to 512 (default 256); an image smaller than that is not
    /// enlarged.
    #[param(minimum = 16, maximum = 512)]
    size: Option<u32>,
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/thumbnail",
    summary = "A small JPEG of the image with its outlines drawn, cached, with an ETag",
    params(("id" = String, Path, description = "The job id"), ThumbnailQuery),
    responses(
        (status = 200, description = "the thumbnail", content(("image/jpeg"))),
        (status = 304, description = "the thumbnail named by If-None-Match is still current"),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or its image is gone (`image-missing`)", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
        (status = 413, description = "the image is over the size limits or the decode budget", body = ErrorBody),
        (status = 415, description = "the stored image cannot be decoded", body = ErrorBody),
        (status = 422, description = "a size outside 16 to 512", body = ErrorBody),
        (status = 503, description = "busy decoding other images (see Retry-After)", body = ErrorBody),
    )
)]
async fn thumbnail(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ThumbnailQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let size = q.size.unwrap_or(THUMBNAIL_SIDE);
    if !THUMBNAIL_SIDES.contains(&size) {
        return Err(ApiError::invalid(
            "size",
            format!(
                "{size}: use {} to {} pixels",
                THUMBNAIL_SIDES.start(),
                THUMBNAIL_SIDES.end()
            ),
        ));
    }
    let job = get_job(&state, &id)?;
    // Named by what changes the picture: its size, the image, and the result's latest version
    // (a job's versions are never changed, only added), so a revalidation reads nothing.
    let latest = job
        .result
        .as_ref()
        .and_then(|r| Some((r.bytes, *r.versions.last()?)));
    let Some((bytes, version)) = latest else {
        return Err(no_result(&job));
    };
    let key = format!(
        "{size}-{}-{}-{}-{bytes}",
        &job.image.hash[..16],
        version.version,
        version.created_at
    );
    let etag = format!("\"{key}\"");
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_owned()),
    ];
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let images = state.service.images.clone();
    let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let hash = &job.image.hash;
        if let Some(cached) = images.cached_thumbnail(hash, &key) {
            return Ok(cached);
        }
        let r = decode_result(&job, &result_bytes(&state, &job)?)?;
        let preview = images.preview(hash, size)?;
        let background = image::load_from_memory(&preview)
            .map_err(|e| export_failed(e.to_string()))?
            .to_luma8();
        let jpeg = crate::export::thumbnail_jpeg(&background, &r)
            .map_err(|e| export_failed(e.to_string()))?;
        images.keep_thumbnail(hash, &key, &jpeg);
        Ok(jpeg)
    })
    .await
    .map_err(task_failed)??;
    Ok((
        [(header::CONTENT_TYPE, "image/jpeg".to_owned())],
        cache,
        jpeg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_the_etag_in_a_list_weakly_or_as_any() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, v.parse().expect("header"));
            h
        };
        let etag = "\"256-ab\"";
        assert!(not_modified(&with("\"256-ab\""), etag));
        assert!(not_modified(&with("\"x\", W/\"256-ab\""), etag));
        assert!(not_modified(&with("*"), etag));
        assert!(!not_modified(&with("\"64-ab\""), etag));
        assert!(!not_modified(&HeaderMap::new(), etag));
    }
}
