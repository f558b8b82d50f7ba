//! Jobs: upload, list, show, cancel, retry, change priority, and the replaced design's
//! `/api/segmentation/job/{id}`. A job's result is in `http/job_results.rs`, its image in
//! `http/job_images.rs`.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::{Body as ErrorBody, JsonBytes, Query};
use super::intake::{self, ImportBody, UploadForm, priority};
use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::queue::{Enqueued, Job, JobFilter, JobId, JobState};
use crate::view::{JobView, job_state_schema};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, upload))
        .routes(routes!(show, cancel, change_priority))
        .routes(routes!(retry))
        .routes(routes!(legacy_job))
}

/// A job as the API shows it, with a running job's live progress from the pool.
pub(super) fn view(state: &AppState, job: &Job) -> JobView {
    let mut v = JobView::from(job);
    if job.state == JobState::Active
        && let Some(p) = state.service.pool().and_then(|p| p.progress(job.id))
    {
        v.progress = p;
    }
    v
}

pub(super) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("job {raw} not found: not a job id")))
}

/// The answer to a submission: one entry per image, in the order sent.
#[derive(Serialize, ToSchema)]
pub(super) struct Accepted {
    jobs: Vec<AcceptedJob>,
}

/// A job a submission made.
#[derive(Serialize, ToSchema)]
struct AcceptedJob {
    id: String,
    #[schema(schema_with = job_state_schema)]
    state: JobState,
    priority: u8,
    /// Queued jobs ahead of this one when it was accepted.
    position: Option<u64>,
    /// An existing job with the same image and settings was given instead of a new one.
    deduplicated: bool,
}

/// The most images one request may carry.
const MAX_FILES: usize = 1000;

/// `POST /api/jobs`: multipart with `image` parts and optional `priority`, `project`,
/// `segmenter`, `params`, `dedupe_key`; or JSON `{"paths": [...], ...}` for files under
/// `import_dirs`. 202 once the jobs are durable. An `Idempotency-Key` header (or `dedupe_key`)
/// sent again returns the jobs that key made first.
#[utoipa::path(
    post,
    path = "/api/jobs",
    summary = "Submit images (multipart) or import files by path (JSON); 202 once durable",
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (ImportBody = "application/json"),
    )),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "a key for this submission (1 to 255 visible ASCII characters, e.g. a UUID): sent again, it returns the jobs it made first instead of new ones, while they are kept and have not failed or been cancelled"),
    ),
    responses(
        (status = 202, description = "the jobs are durable (or, for a repeated key, the jobs it made first)", body = Accepted),
        (status = 400, description = "no image, a malformed body or an unknown form field", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 403, description = "importing by path is off, or a path is outside the import directories", body = ErrorBody),
        (status = 413, description = "too many images, or an image, a field or the body over its limit", body = ErrorBody),
        (status = 415, description = "neither multipart nor JSON, or a file that is not a readable image", body = ErrorBody),
        (status = 422, description = "a field out of range: priority, segmenter, params, a path that does not exist, an image too small; or a key that made a job of another request", body = ErrorBody),
        (status = 503, description = "busy (see Retry-After) or shutting down", body = ErrorBody),
        (status = 507, description = "the data directory's disk is full", body = ErrorBody),
    )
)]
async fn upload(
    _: Authorized,
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let header_key = req
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key: not ASCII text"))
                .and_then(|k| intake::client_key(k, "Idempotency-Key"))
        })
        .transpose()?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (sources, opts) = if super::error::is_json(req.headers()) {
        intake::import(&state, req).await?
    } else if !multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UNSUPPORTED_MEDIA_TYPE,
            "send images as multipart/form-data (parts named image), or JSON {\"paths\": [...]} with Content-Type: application/json",
        ));
    } else {
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let form = Multipart::from_request(req, &state).await.map_err(|e| {
            ApiError::bad_request(format!(
                "expected multipart/form-data or application/json: {e}"
            ))
        })?;
        intake::form(form, &state.service.images, length).await?
    };
    if sources.is_empty() {
        return Err(ApiError::bad_request(
            "no image: send multipart parts named image, or JSON {\"paths\": [...]}",
        ));
    }
    let mut opts = opts;
    match (&header_key, &opts.key) {
        (Some(h), Some(f)) if h != f => {
            return Err(ApiError::bad_request(
                "the Idempotency-Key header and the dedupe_key field differ; send one",
            ));
        }
        (Some(h), _) => opts.key = Some(h.clone()),
        _ => {}
    }
    if sources.len() > MAX_FILES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TOO_MANY_FILES,
            format!(
                "{} images in one request; the limit is {MAX_FILES}",
                sources.len()
            ),
        ));
    }
    let done = state.service.submit(sources, opts).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted(&state, &done)?)).into_response())
}

/// The answer to a submission of the jobs `done`, each with its place in the queue.
pub(super) fn accepted(state: &AppState, done: &[Enqueued]) -> Result<Accepted, ApiError> {
    let stats = state.service.queue.stats()?;
    let queued_at_or_above = |p: u8| -> u64 {
        stats
            .by_priority
            .iter()
            .find(|(s, _)| *s == JobState::Queued)
            .map_or(0, |(_, row)| row[p as usize - 1..].iter().sum())
    };
    let jobs = done
        .iter()
        .map(|e| AcceptedJob {
            id: e.job.id.to_string(),
            state: e.job.state,
            priority: e.job.priority.get(),
            position: (e.job.state == JobState::Queued)
                .then(|| queued_at_or_above(e.job.priority.get()).saturating_sub(1)),
            deduplicated: e.deduplicated,
        })
        .collect();
    Ok(Accepted { jobs })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only jobs in this state (empty: all).
    #[param(schema_with = job_state_schema)]
    state: Option<String>,
    /// Only jobs of this project (empty: all).
    project: Option<String>,
    /// Only jobs whose image's file name contains this, ignoring case (empty: all).
    #[param(max_length = 255)]
    name: Option<String>,
    /// Jobs per page (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// One page of jobs, and the cursor of the next page (`null` on the last).
#[derive(Serialize, ToSchema)]
struct ListPage {
    jobs: Vec<JobView>,
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/jobs",
    summary = "List jobs, filtered by state, project and file name, one page at a time",
    params(ListQuery),
    responses(
        (status = 200, description = "one page of jobs", body = ListPage),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 422, description = "an unknown state, a name longer than 255 characters, a limit outside 1 to 1000, or a cursor this listing did not give", body = ErrorBody),
    )
)]
async fn list(
    _: Authorized,

    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListPage>, ApiError> {
    let filter = JobFilter {
        state: q
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<JobState>()
                    .map_err(|e| ApiError::invalid("state", e))
            })
            .transpose()?,
        project: q.project.filter(|p| !p.is_empty()),
        name: q
            .name
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_owned()),
    };
    if filter
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 255)
    {
        return Err(ApiError::invalid(
            "name",
            "is longer than a file name (255)",
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit}: use 1 to 1000"),
        ));
    }
    let page = state
        .service
        .queue
        .list(&filter, q.cursor.as_deref(), limit)?;
    Ok(Json(ListPage {
        jobs: page.jobs.iter().map(|j| view(&state, j)).collect(),
        next: page.next,
    }))
}

pub(super) fn get_job(state: &AppState, raw: &str) -> Result<Job, ApiError> {
    let id = job_id(raw)?;
    state
        .service
        .queue
        .get(id)?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    summary = "One job",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the job", body = JobView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
    )
)]
async fn show(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(view(&state, &get_job(&state, &id)?)))
}

#[utoipa::path(
    delete,
    path = "/api/jobs/{id}",
    summary = "Cancel a job (a running one is stopped)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the job, cancelled", body = JobView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job is already finished", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn cancel(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    state.service.cancel(id).await?;
    Ok(Json(view(&state, &get_job(&state, &id.to_string())?)))
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/retry",
    summary = "Put a failed or cancelled job back in the queue",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the job, queued again", body = JobView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job is neither failed nor cancelled", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn retry(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.service.retry(job_id(&id)?).await?;
    Ok(Json(view(&state, &job)))
}

/// The body of a priority change.
#[derive(Deserialize, ToSchema)]
struct PriorityBody {
    /// 1 (lowest) to 10 (highest).
    #[schema(minimum = 1, maximum = 10)]
    priority: i64,
}

#[utoipa::path(
    patch,
    path = "/api/jobs/{id}",
    summary = "Change the priority (1-10, higher runs sooner)",
    params(("id" = String, Path, description = "The job id")),
    request_body = PriorityBody,
    responses(
        (status = 200, description = "the job with its new priority", body = JobView),
        (status = 400, description = "the body is not {\"priority\": N}", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "the job is finished", body = ErrorBody),
        (status = 413, description = "the body is over the limit", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 422, description = "the priority is outside 1 to 10", body = ErrorBody),
        (status = 503, description = "shutting down", body = ErrorBody),
    )
)]
async fn change_priority(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<JobView>, ApiError> {
    let b: PriorityBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"priority\": N}}: {e}")))?;
    let job = state
        .service
        .change_priority(job_id(&id)?, priority(b.priority)?)
        .await?;
    Ok(Json(view(&state, &job)))
}

/// A state by the replaced design's (Bull's) names: waiting, delayed, active, completed, failed;
/// and cancelled, which Bull did not have.
fn bull_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "waiting",
        JobState::Delayed => "delayed",
        JobState::Active => "active",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn legacy_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(JobState::ALL.map(bull_name)))
        .build()
}

/// The replaced design's job route, same shape.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LegacyJob {
    job_id: String,
    #[schema(schema_with = legacy_status_schema)]
    status: &'static str,
    progress: u8,
    is_completed: bool,
    is_failed: bool,
    failed_reason: Option<String>,
    created_at: u64,
    updated_at: u64,
}

#[utoipa::path(
    get,
    path = "/api/segmentation/job/{id}",
    summary = "The job status shape of the replaced design",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the job's status", body = LegacyJob),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
    )
)]
async fn legacy_job(
    _: Authorized,

    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LegacyJob>, ApiError> {
    let j = get_job(&state, &id)?;
    Ok(Json(LegacyJob {
        job_id: j.id.to_string(),
        status: bull_name(j.state),
        progress: j.progress,
        is_completed: j.state == JobState::Completed,
        is_failed: j.state == JobState::Failed,
        failed_reason: j.last_error.map(|e| e.message),
        created_at: j.created_at,
        updated_at: j.updated_at,
    }))
}
