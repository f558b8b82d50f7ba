//! A job as clients see it: the body of `GET /api/jobs/{id}`, each row of the listing, and the
//! `job` of every job event, so the page can draw a row from an event without asking again.

use serde::Serialize;

use crate::clock::Millis;
use crate::queue::{Job, JobState};
use crate::segment::SegmentParams;

/// A job as the API and the events show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobView {
    pub id: String,
    pub state: JobState,
    pub priority: u8,
    pub progress: u8,
    /// Attempts spent of `max_attempts`.
    pub attempts: u32,
    pub max_attempts: u32,
    pub project: Option<String>,
    pub image: ImageView,
    pub segmenter: String,
    pub params: SegmentParams,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub queued_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub run_at: Option<Millis>,
    pub error: Option<ErrorView>,
    pub result_bytes: Option<u64>,
    /// Objects in the result, once completed.
    pub objects: Option<u32>,
    /// The job this one runs again, if it is a rerun.
    pub rerun_of: Option<String>,
    /// Named values from where the image came from (plate, well).
    pub metadata: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageView {
    pub name: String,
    pub hash: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
    pub transient: bool,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            id: j.id.to_string(),
            state: j.state,
            priority: j.priority.get(),
            progress: j.progress,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            project: j.project.clone(),
            image: ImageView {
                name: j.image.name.clone(),
                hash: j.image.hash.clone(),
                width: j.image.width,
                height: j.image.height,
                bytes: j.image.bytes,
            },
            segmenter: j.segmenter.to_string(),
            params: j.params.clone(),
            created_at: j.created_at,
            updated_at: j.updated_at,
            queued_at: j.queued_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            run_at: j.run_at,
            error: j.last_error.as_ref().map(|e| ErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
                transient: e.transient,
            }),
            result_bytes: j.result.as_ref().map(|r| r.bytes),
            objects: j.result.as_ref().map(|r| r.objects),
            rerun_of: j.rerun_of.map(|id| id.to_string()),
            metadata: j.metadata.clone(),
        }
    }
}
