//! Job records as earlier versions wrote them, frozen, and their conversion to today's [`Job`].
//! Records carry a version byte, so each is converted when it is read and written back in
//! today's layout the next time it changes; nothing here may be edited except to add a version.

use serde::Deserialize;

use crate::images::ImageRef;
use crate::queue::model::{
    Job, JobError, JobId, JobState, LeaseToken, Millis, Priority, ResultRef,
};
use crate::segment::{SegmentParams, SegmenterId};

/// Record version 1: the attempt counter was the lease fence and attempts spent were
/// `attempt - attempt_base`; the segmenter an enum; the parameters postcard, in this order.
#[derive(Deserialize)]
pub(super) struct JobV1 {
    id: JobId,
    priority: Priority,
    state: JobState,
    attempt: u32,
    attempt_base: u32,
    max_attempts: u32,
    interruptions: u32,
    seq: u64,
    created_at: Millis,
    updated_at: Millis,
    queued_at: Millis,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    run_at: Option<Millis>,
    lease_until: Option<Millis>,
    progress: u8,
    last_error: Option<JobError>,
    project: Option<String>,
    dedupe_key: Option<String>,
    image: ImageRef,
    segmenter: SegmenterV1,
    params: crate::segment::ParamsV1,
    result: Option<ResultRefV1>,
}

#[derive(Deserialize)]
enum SegmenterV1 {
    Builtin,
    Http(String),
    Command(String),
}

#[derive(Deserialize)]
struct ResultRefV1 {
    bytes: u64,
}

impl From<JobV1> for Job {
    fn from(v: JobV1) -> Job {
        let segmenter = match v.segmenter {
            SegmenterV1::Builtin => SegmenterId::builtin(),
            SegmenterV1::Http(n) | SegmenterV1::Command(n) => {
                SegmenterId::new(&n).unwrap_or_default()
            }
        };
        Job {
            id: v.id,
            priority: v.priority,
            state: v.state,
            lease: LeaseToken(v.attempt),
            attempts: v.attempt.saturating_sub(v.attempt_base),
            max_attempts: v.max_attempts,
            interruptions: v.interruptions,
            seq: v.seq,
            created_at: v.created_at,
            updated_at: v.updated_at,
            queued_at: v.queued_at,
            started_at: v.started_at,
            finished_at: v.finished_at,
            run_at: v.run_at,
            lease_until: v.lease_until,
            progress: v.progress,
            last_error: v.last_error,
            project: v.project,
            dedupe_key: v.dedupe_key,
            image: v.image,
            segmenter,
            params: SegmentParams::from(v.params),
            result: v
                .result
                .map(|r| ResultRef::first(r.bytes, 0, v.finished_at.unwrap_or(v.updated_at))),
            rerun_of: None,
            metadata: Vec::new(),
            page: None,
        }
    }
}

/// Record version 2: today's fields, with a result that had one version only.
#[derive(Deserialize)]
pub(super) struct JobV2 {
    id: JobId,
    priority: Priority,
    state: JobState,
    lease: LeaseToken,
    attempts: u32,
    max_attempts: u32,
    interruptions: u32,
    seq: u64,
    created_at: Millis,
    updated_at: Millis,
    queued_at: Millis,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    run_at: Option<Millis>,
    lease_until: Option<Millis>,
    progress: u8,
    last_error: Option<JobError>,
    project: Option<String>,
    dedupe_key: Option<String>,
    image: ImageRef,
    segmenter: SegmenterId,
    #[serde(with = "crate::queue::model::params_json")]
    params: SegmentParams,
    result: Option<ResultRefV2>,
    rerun_of: Option<JobId>,
    metadata: Vec<(String, String)>,
    page: Option<u32>,
}

#[derive(Deserialize)]
struct ResultRefV2 {
    bytes: u64,
    objects: u32,
}

impl From<JobV2> for Job {
    fn from(v: JobV2) -> Job {
        let done = v.finished_at.unwrap_or(v.updated_at);
        Job {
            id: v.id,
            priority: v.priority,
            state: v.state,
            lease: v.lease,
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            interruptions: v.interruptions,
            seq: v.seq,
            created_at: v.created_at,
            updated_at: v.updated_at,
            queued_at: v.queued_at,
            started_at: v.started_at,
            finished_at: v.finished_at,
            run_at: v.run_at,
            lease_until: v.lease_until,
            progress: v.progress,
            last_error: v.last_error,
            project: v.project,
            dedupe_key: v.dedupe_key,
            image: v.image,
            segmenter: v.segmenter,
            params: v.params,
            result: v.result.map(|r| ResultRef::first(r.bytes, r.objects, done)),
            rerun_of: v.rerun_of,
            metadata: v.metadata,
            page: v.page,
        }
    }
}
