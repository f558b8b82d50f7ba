//! `GET /api/jobs/{id}/history`: what happened to a job, as the queue's writer recorded it with
//! every transition it committed (`queue/model/history.rs`): each attempt with its start, end,
//! segmenter and error, and every event of its life in order.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Authorized;
use super::error::Body as ErrorBody;
use super::{ApiError, AppState};
use crate::queue::{Attempt, Change, HistoryEntry, JobId, JobState};
use crate::view::{ErrorView, job_state_schema};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history))
}

/// A job's history. Times are milliseconds since the Unix epoch.
#[derive(Serialize, ToSchema)]
struct HistoryView {
    job_id: String,
    /// Every run of the job, oldest first.
    attempts: Vec<AttemptView>,
    /// Every transition, oldest first.
    events: Vec<EventView>,
    /// Events left out to keep the history bounded (the first one is always kept).
    dropped: u32,
}

/// The names of the changes, as `kind` and `outcome` show them.
const KINDS: [&str; 12] = [
    "queued",
    "retried",
    "started",
    "completed",
    "retrying",
    "held",
    "failed",
    "cancelled",
    "interrupted",
    "requeued",
    "priority_changed",
    "result_corrected",
];

fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(KINDS))
        .build()
}

/// One run of a job: from its lease to what ended it.
#[derive(Serialize, ToSchema)]
struct AttemptView {
    /// Attempts spent once it started; a run handed back without spending its attempt (an ML
    /// service unavailable, a shutdown) shares its number with the next one.
    number: u32,
    /// The lease it ran under, one more for every run.
    lease: u32,
    /// `builtin`, or the ML service or program it was sent to.
    segmenter: Option<String>,
    #[schema(value_type = u64)]
    started_at: u64,
    /// `null` while it runs.
    #[schema(value_type = Option<u64>)]
    ended_at: Option<u64>,
    /// What ended it (`completed`, `retrying`, `failed`, `held`, `interrupted`, `requeued`,
    /// `cancelled`); `null` while it runs.
    #[schema(value_type = Option<String>)]
    outcome: Option<&'static str>,
    /// Why its lease was given back, when `outcome` is `requeued`: `lease-expired` or `orphan`.
    reason: Option<&'static str>,
    error: Option<ErrorView>,
}

/// One transition of a job.
#[derive(Serialize, ToSchema)]
struct EventView {
    #[schema(value_type = u64)]
    at: u64,
    #[schema(schema_with = kind_schema)]
    kind: &'static str,
    /// The state it left the job in.
    #[schema(schema_with = job_state_schema)]
    state: JobState,
    /// The priority after it.
    priority: u8,
    /// Attempts spent after it.
    attempts: u32,
    /// A `requeued` event's reason: `due` (a retry wait ended), `lease-expired`, `orphan`.
    reason: Option<&'static str>,
    /// A `cancelled` event's state before it.
    #[schema(value_type = Option<String>)]
    was: Option<JobState>,
    /// A `priority_changed` event's priority before it.
    from_priority: Option<u8>,
    /// A `started` event's segmenter.
    segmenter: Option<String>,
    /// The error it recorded: a failed attempt's, an expired lease's, a hold's reason.
    error: Option<ErrorView>,
}

fn reason(change: Change) -> Option<&'static str> {
    match change {
        Change::Requeued { reason } => Some(reason.as_str()),
        _ => None,
    }
}

impl From<&HistoryEntry> for EventView {
    fn from(e: &HistoryEntry) -> Self {
        EventView {
            at: e.at,
            kind: e.change.as_str(),
            state: e.state,
            priority: e.priority.get(),
            attempts: e.attempts,
            reason: reason(e.change),
            was: match e.change {
                Change::Cancelled { was } => Some(was),
                _ => None,
            },
            from_priority: match e.change {
                Change::PriorityChanged { from } => Some(from.get()),
                _ => None,
            },
            segmenter: e.segmenter.as_ref().map(ToString::to_string),
            error: e.error.as_ref().map(ErrorView::from),
        }
    }
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        AttemptView {
            number: a.number,
            lease: a.lease.0,
            segmenter: a.segmenter.as_ref().map(ToString::to_string),
            started_at: a.started_at,
            ended_at: a.ended_at,
            outcome: a.outcome.map(Change::as_str),
            reason: a.outcome.and_then(reason),
            error: a.error.as_ref().map(ErrorView::from),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/history",
    summary = "A job's attempts, each with its start, end, segmenter and error, and every event of its life",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "the job's history (empty for a job stored before histories were kept)", body = HistoryView),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
    )
)]
async fn history(
    _: Authorized,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    let not_found = || ApiError::not_found(format!("job {id} not found"));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    let h = state.service.queue.history(job_id)?.ok_or_else(not_found)?;
    Ok(Json(HistoryView {
        job_id: job_id.to_string(),
        attempts: h.attempts().iter().map(AttemptView::from).collect(),
        events: h.entries.iter().map(EventView::from).collect(),
        dropped: h.dropped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Priority, Requeue};

    /// Every change's name is one the document lists: a change added to the queue fails to
    /// compile here until it is named.
    #[test]
    fn every_change_is_a_documented_kind() {
        let every = [
            Change::Queued,
            Change::Retried,
            Change::Started,
            Change::Completed,
            Change::Retrying,
            Change::Held,
            Change::Failed,
            Change::Cancelled {
                was: JobState::Queued,
            },
            Change::Interrupted,
            Change::Requeued {
                reason: Requeue::Due,
            },
            Change::PriorityChanged {
                from: Priority::DEFAULT,
            },
            Change::ResultVersioned {
                version: 2,
                restored_from: None,
            },
        ];
        for c in every {
            // Exhaustive, without a wildcard: a new variant must be added to `every` above.
            match c {
                Change::Queued
                | Change::Retried
                | Change::Started
                | Change::Completed
                | Change::Retrying
                | Change::Held
                | Change::Failed
                | Change::Cancelled { .. }
                | Change::Interrupted
                | Change::Requeued { .. }
                | Change::PriorityChanged { .. }
                | Change::ResultVersioned { .. } => {}
            }
            assert!(KINDS.contains(&c.as_str()), "{c:?}");
        }
        assert_eq!(every.len(), KINDS.len());
    }
}
