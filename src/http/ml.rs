//! spheroseg as an ML service: `POST /ml/segment` and `GET /ml/health` in the same contract the
//! `http` segmenter speaks, so one spheroseg can be another's ML service. A request becomes a
//! priority-10 builtin job on the worker pool (bounded, durable like any other), and the reply
//! waits for the job's final event. The image comes as multipart (part `image`), or as JSON
//! `{"image_path"}` naming a file inside the configured `import_dirs` (both machines share a
//! filesystem: the caller's `share_paths`); any other path is refused.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::{ApiError, AppState, intake};
use crate::clock::{Clock, Millis, SystemClock};
use crate::error_code::ErrorCode;
use crate::queue::{JobState, Priority};
use crate::segment::SegmenterId;
use crate::segment::http::{SegmentReply, SegmentResults, ml_reply};
use crate::segment::{Failure, SegmentParams, SegmentResult};
use crate::service::{Source, SubmitOptions};

/// The longest a request waits for its job.
const WAIT: Duration = Duration::from_secs(600);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(segment))
        .routes(routes!(health))
}

/// The ML service contract's health answer.
#[derive(Serialize, ToSchema)]
struct MlHealth {
    status: MlStatus,
    #[schema(value_type = u64)]
    timestamp: Millis,
    /// Always `null`: the builtin segmenter has no model file.
    model_path: Option<String>,
    model_exists: bool,
    segmenter: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum MlStatus {
    Healthy,
    /// Not accepting work (starting or shutting down).
    Degraded,
}

// `segment/` stays free of utoipa: this is the `http` segmenter's `SegmentReply`, serialised the
// same, converted naming every field.
/// The ML service contract's answer to `/segment`.
#[derive(Serialize, ToSchema)]
struct MlReply {
    success: bool,
    /// On success: `polygons` (the replaced ML service's polygon list: `id`, `points`, `type`
    /// `external` or `internal`, `class`, and `parentId` for holes) and `features` (the metrics
    /// of each object).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    results: Option<SegmentResults>,
    /// On failure: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<SegmentReply> for MlReply {
    fn from(r: SegmentReply) -> Self {
        let SegmentReply {
            success,
            results,
            error,
        } = r;
        MlReply {
            success,
            results,
            error,
        }
    }
}

// For the OpenAPI document only: a refusal is the contract's reply when the image could not be
// segmented, and the API's error body when the request itself could not be taken.
/// `{"success": false, "error"}`, or `{"code", "message"}` when the request itself was refused.
#[derive(ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes two bodies the handler sends")]
enum MlRefusal<'a> {
    Reply(MlReply),
    Refused(ErrorBody<'a>),
}

// For the OpenAPI document only: the handler reads the parts one at a time.
/// The parts of a segmentation request; other parts are ignored.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "describes the multipart parts that `segment` reads one by one"
)]
struct MlSegmentForm {
    /// The image file (PNG, JPEG, TIFF or BMP).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// The segmentation parameters as JSON text (the fields of `ParamsView`).
    params: Option<String>,
}

#[utoipa::path(
    get,
    path = "/ml/health",
    summary = "The ML service contract: health",
    responses(
        (status = 200, description = "accepting work", body = MlHealth),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "not accepting work", body = MlHealth),
    )
)]
async fn health(_: Authorized, State(state): State<AppState>) -> Response {
    let up = state.is_ready();
    let body = MlHealth {
        status: if up {
            MlStatus::Healthy
        } else {
            MlStatus::Degraded
        },
        timestamp: SystemClock.now(),
        model_path: None,
        model_exists: true,
        segmenter: "builtin",
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn reply(result: Result<&SegmentResult, &Failure>) -> Response {
    let (status, body) = ml_reply(result);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(MlReply::from(body)),
    )
        .into_response()
}

/// A file both machines see, instead of the image itself.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MlSegmentPath {
    /// A file inside one of the configured `import_dirs` (absolute, or relative to one).
    image_path: String,
    /// The segmentation parameters (the fields of `ParamsView`).
    #[schema(value_type = Option<crate::view::ParamsView>)]
    params: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/ml/segment",
    summary = "The ML service contract: segment one image",
    request_body(content(
        (MlSegmentForm = "multipart/form-data"),
        (MlSegmentPath = "application/json"),
    )),
    responses(
        (status = 200, description = "segmented", body = MlReply),
        (status = 400, description = "not a multipart body, or a malformed one", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 403, description = "image_path is outside the import directories, or none is configured", body = ErrorBody),
        (status = 404, description = "the job was removed before its result was read", body = ErrorBody),
        (status = 413, description = "the image or a field is over its limit", body = ErrorBody),
        (status = 422, description = "no image part, params that are not valid JSON, or an image that cannot be segmented", body = MlRefusal),
        (status = 503, description = "busy, shutting down, or the segmentation took too long", body = MlRefusal),
        (status = 507, description = "the data directory's disk is full", body = ErrorBody),
    )
)]
async fn segment(
    _: Authorized,
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (source, params) = if super::error::is_json(req.headers()) {
        let body: MlSegmentPath = intake::json_body(req).await?;
        let path = intake::importable(&state, &body.image_path, "image_path")?;
        let params = match body.params {
            Some(v) => intake::params(&v.to_string())?,
            None => SegmentParams::default(),
        };
        (Source::Path(path), params)
    } else {
        // Not multipart at all: the JSON error body, not axum's plain-text rejection.
        let mut form = Multipart::from_request(req, &state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                ErrorCode::BAD_REQUEST,
                format!(
                    "send the image as multipart/form-data, or JSON {{\"image_path\"}}: {}",
                    e.body_text()
                ),
            )
        })?;
        let (mut image, mut params) = (None, SegmentParams::default());
        while let Some(field) = form.next_field().await.map_err(intake::multipart_error)? {
            match field.name().unwrap_or_default() {
                // Streamed through a temp file past a few MiB, like `POST /api/jobs`.
                "image" => {
                    image = Some(intake::image_field(field, &state.service.images, 0).await?)
                }
                "params" => {
                    let text = intake::text_field(field, intake::MAX_FIELD).await?;
                    params = serde_json::from_str(&text)
                        .map_err(|e| ApiError::invalid("params", e.to_string()))?;
                }
                _ => {}
            }
        }
        let Some(source) = image else {
            return Ok(reply(Err(&Failure::permanent(
                ErrorCode::BAD_REQUEST,
                "no image part",
            ))));
        };
        (source, params)
    };
    let opts = SubmitOptions {
        priority: Priority::MAX,
        segmenter: Some(SegmenterId::builtin()),
        params,
        max_attempts: Some(1),
        ..SubmitOptions::default()
    };
    // Subscribed before the job exists, so its final event cannot go by unseen.
    let mut sub = state.service.events.subscribe(None);
    let done = match state.service.submit(vec![source], opts).await {
        Ok(d) => d,
        Err(e) => return Ok(reply(Err(&Failure::permanent(e.code(), e.to_string())))),
    };
    let id = done[0].job.id;
    let job_id = id.to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sub.live.recv()).await {
            Err(_) => {
                return Ok(reply(Err(&Failure::transient(
                    ErrorCode::TIMEOUT,
                    "segmentation took too long",
                ))));
            }
            Ok(Ok(e)) if e.kind.finishes(&job_id) => break,
            Ok(Ok(_)) => {}
            // Fell behind the bus: the job may have finished among what was missed.
            Ok(Err(RecvError::Lagged(_))) => {
                let state_now = state.service.queue.get(id)?.map(|j| j.state);
                if state_now.is_none_or(JobState::is_finished) {
                    break;
                }
            }
            Ok(Err(RecvError::Closed)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::QUEUE_CLOSED,
                    "spheroseg is shutting down",
                ));
            }
        }
    }
    let job = state
        .service
        .queue
        .get(id)?
        .ok_or_else(|| ApiError::not_found(format!("job {id} vanished")))?;
    if job.state == JobState::Completed {
        let bytes = state.service.queue.result(id)?.unwrap_or_default();
        return Ok(match SegmentResult::from_bytes(&bytes) {
            Some(r) => reply(Ok(&r)),
            None => reply(Err(&Failure::transient(
                ErrorCode::RESULT_UNREADABLE,
                "the result cannot be read",
            ))),
        });
    }
    let e = job
        .last_error
        .map_or_else(|| "cancelled".to_owned(), |e| e.message);
    Ok(reply(Err(&Failure::permanent(ErrorCode::FAILED, e))))
}
