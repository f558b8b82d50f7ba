//! spheroseg as an ML service: `POST /ml/segment` and `GET /ml/health` in the same contract the
//! `http` segmenter speaks, so one spheroseg can be another's ML service. A request becomes a
//! priority-10 builtin job on the worker pool (bounded, durable like any other), and the reply
//! waits for the job's final event.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use axum::Json;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::{ApiError, AppState, intake};
use crate::clock::{Clock, SystemClock};
use crate::error_code::ErrorCode;
use crate::queue::{JobState, Priority};
use crate::segment::SegmenterId;
use crate::segment::http::ml_reply;
use crate::segment::{Failure, SegmentParams, SegmentResult};
use crate::service::SubmitOptions;

/// The longest a request waits for its job.
const WAIT: Duration = Duration::from_secs(600);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(segment))
        .routes(routes!(health))
}

#[utoipa::path(get, path = "/ml/health", summary = "The ML service contract: health", responses((status = 200, description = "success")))]
async fn health(_: Authorized, State(state): State<AppState>) -> Response {
    let up = state.is_ready();
    let body = json!({
        "status": if up { "healthy" } else { "degraded" },
        "timestamp": SystemClock.now(),
        "model_path": null,
        "model_exists": true,
        "segmenter": "builtin",
    });
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
        Json(body),
    )
        .into_response()
}

#[utoipa::path(post, path = "/ml/segment", summary = "The ML service contract: segment one image", responses((status = 200, description = "success")))]
async fn segment(
    _: Authorized,
    State(state): State<AppState>,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    let (mut image, mut params) = (None, SegmentParams::default());
    while let Some(field) = form.next_field().await.map_err(intake::multipart_error)? {
        match field.name().unwrap_or_default() {
            // Streamed through a temp file past a few MiB, like `POST /api/jobs`.
            "image" => image = Some(intake::image_field(field, &state.service.images).await?),
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
