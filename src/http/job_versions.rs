//! The versions of one job's result: `GET /api/jobs/{id}/result/versions` lists them, `POST
//! /api/jobs/{id}/result/versions/{version}/restore` makes an older one the latest again, as a
//! new version (nothing is deleted). Reading one is `GET /api/jobs/{id}/result?version=N`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes};
use super::job_results::{result_body, stored_version, with_result};
use super::jobs::get_job;
use super::{ApiError, AppState};
use crate::clock::Millis;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(versions))
        .routes(routes!(restore))
}

/// One version of a job's result.
#[derive(Serialize, ToSchema)]
struct VersionView {
    /// 1 is the segmenter's; each later one is one more.
    version: u32,
    /// The outlines were corrected by hand (or restored from a version that was).
    corrected: bool,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = u64)]
    created_at: Millis,
    objects: u32,
    /// The version this one restored, if it is a restore.
    restored_from: Option<u32>,
    /// Whether this is the latest version (the one exports use).
    latest: bool,
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/result/versions",
    summary = "The versions of the result, oldest first",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "every version, oldest first; the last is the latest", body = Vec<VersionView>),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job has no result (it has not completed)", body = ErrorBody),
    )
)]
async fn versions(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    let job = with_result(&state, &id)?;
    let list = job.result.map(|r| r.versions).unwrap_or_default();
    let last = list.last().map(|v| v.version);
    Ok(Json(
        list.into_iter()
            .map(|v| VersionView {
                version: v.version,
                corrected: v.corrected,
                created_at: v.created_at,
                objects: v.objects,
                restored_from: v.restored_from,
                latest: Some(v.version) == last,
            })
            .collect(),
    ))
}

/// Which version the restore is made from.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// The latest version as the client knows it; refused with 409 if another is latest now.
    #[schema(minimum = 1)]
    base_version: u32,
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/result/versions/{version}/restore",
    summary = "Make an older version of the result the latest again, as a new version",
    params(
        ("id" = String, Path, description = "The job id"),
        ("version" = u32, Path, description = "The version to restore", minimum = 1),
    ),
    request_body = RestoreBody,
    responses(
        (status = 200, description = "the new latest version of the result", body = Object),
        (status = 400, description = "the body is not {\"base_version\": N}", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job, or no such version", body = ErrorBody),
        (status = 409, description = "the job has no result, or base_version is not the latest version", body = ErrorBody),
        (status = 413, description = "the body is over the limit", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn restore(
    _: Authorized,

    State(state): State<AppState>,
    Path((id, version)): Path<(String, String)>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let version: u32 = version
        .parse()
        .map_err(|_| ApiError::not_found(format!("job {id} has no result version {version:?}")))?;
    let b: RestoreBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"base_version\": N}}: {e}")))?;
    let job = get_job(&state, &id)?;
    state
        .service
        .restore(job.id, version, b.base_version)
        .await?;
    let (_, latest, r) = stored_version(&state, &id, None)?;
    Ok(result_body(&r, latest))
}
