//! The queue's plain data: job ids, priorities, states, the job record and what callers pass in.
//!
//! Nothing here touches storage. A `Job` is what the store keeps (postcard-encoded behind a version
//! byte, see `queue/store.rs`); every field that an index is built from is also in the record, so the
//! indexes can always be rebuilt from the `jobs` table alone. What a commit did is in
//! `model/commit.rs`, what a job's history keeps of it in `model/history.rs`; backoff and retention, the queue's time policies, in `model/policy.rs`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::clock::Millis;
use crate::error_code::ErrorCode;
pub use crate::images::ImageRef;
use crate::segment::{SegmentParams, SegmenterId};

mod commit;
mod history;
mod policy;

pub use commit::{Change, Committed, Requeue, Transition};
pub use history::{Attempt, History, HistoryEntry};
pub use policy::{Backoff, Limit, Retention};

/// A job's id: a UUIDv7, so ids sort by creation time; shown as the hyphenated string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u128);

impl JobId {
    /// A fresh time-ordered id.
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7().as_u128())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(JobId(uuid::Uuid::parse_str(s)?.as_u128()))
    }
}

/// Priority 1..=10; **higher runs sooner**; 5 by default. Construct with [`Priority::new`], which
/// refuses out-of-range values instead of clamping them.
///
/// Read back (a stored record, a replayed log) it is checked like any other input: a byte
/// outside 1..=10 is an error, not a priority that indexes past the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(u8);

impl TryFrom<u8> for Priority {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Priority::new(i64::from(value)).ok_or_else(|| format!("priority {value} is not in 1..=10"))
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl Priority {
    pub const MIN: Priority = Priority(1);
    pub const MAX: Priority = Priority(10);
    pub const DEFAULT: Priority = Priority(5);

    /// `Some` for 1..=10, `None` otherwise.
    pub fn new(value: i64) -> Option<Self> {
        (1..=10).contains(&value).then_some(Priority(value as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life. `Delayed` waits out a retry backoff and becomes `Queued`; the last
/// three are final until a person retries the job. (Serialised lowercase in JSON; postcard stores
/// the variant index, so the names may change without a migration, the order may not.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Delayed,
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Delayed,
        JobState::Active,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The stable lowercase name used in the API, the CLI and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Completed, failed and cancelled: the job holds no lease and waits for nothing.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    pub(crate) fn index(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown job state {s:?}: expected queued, delayed, active, completed, failed or cancelled")
            })
    }
}

/// Why an attempt failed, as the job keeps it (the dead-letter view shows it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// What went wrong, for a person.
    pub message: String,
    /// A stable kebab-case code, e.g. `decode-failed`, `ml-timeout`, `lease-expired`.
    pub code: String,
    /// Whether another attempt may succeed (timeouts, 5xx, out of GPU memory).
    pub transient: bool,
}

impl JobError {
    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            code: code.as_str().to_owned(),
            transient: true,
        }
    }

    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            code: code.as_str().to_owned(),
            transient: false,
        }
    }
}

/// The lease number of a job: one more at every lease and never lowered, so it fences a late
/// finisher out (a worker reports with the token its lease gave it).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LeaseToken(pub u32);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a finished job's result is: the `results` table holds the segmenter's (version 1)
/// under the job id, `result_versions` every later one under (job id, version). A version is
/// never changed or removed while the job lives; the last one is the latest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRef {
    /// Size of the latest version.
    pub bytes: u64,
    /// Objects in the latest version.
    pub objects: u32,
    /// Every version, oldest first; never empty (version 1 is the segmenter's).
    pub versions: Vec<ResultVersion>,
}

impl ResultRef {
    /// The segmenter's result, the only version of a job nobody corrected.
    pub fn first(bytes: u64, objects: u32, created_at: Millis) -> Self {
        ResultRef {
            bytes,
            objects,
            versions: vec![ResultVersion {
                version: 1,
                corrected: false,
                created_at,
                objects,
                restored_from: None,
            }],
        }
    }

    /// The number of the latest version.
    pub fn version(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.version)
    }

    /// Whether the latest version was corrected by hand.
    pub fn corrected(&self) -> bool {
        self.versions.last().is_some_and(|v| v.corrected)
    }
}

/// One version of a result, as the job's record lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultVersion {
    /// 1, 2, ...: one more than the version before.
    pub version: u32,
    /// Outlines corrected by hand (or restored from a version that was).
    pub corrected: bool,
    pub created_at: Millis,
    pub objects: u32,
    /// The older version this one copies, when a person restored it.
    pub restored_from: Option<u32>,
}

/// A new version of a completed job's result, stored beside the ones before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVersion {
    /// The version it was made from: refused unless that is still the latest.
    pub base: u32,
    /// The stored result bytes.
    pub result: Vec<u8>,
    pub objects: u32,
    pub corrected: bool,
    pub restored_from: Option<u32>,
}

/// One job, as stored (postcard, behind a record version byte: see `queue/store.rs`; the
/// parameters as JSON text inside it, so a new parameter with a default needs no migration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub priority: Priority,
    pub state: JobState,
    /// The current lease's token; the next lease takes the one after it.
    pub lease: LeaseToken,
    /// Attempts spent against `max_attempts`: a lease spends one, a hand-back (breaker open, a
    /// restart under the job) refunds it, a manual retry starts again from zero.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Times the job was found `active` at startup (its process died under it).
    pub interruptions: u32,
    /// Position in its priority level's FIFO; a fresh number each time the job becomes queued.
    pub seq: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the job last became queued: wait time and aging count from here.
    pub queued_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// When a delayed job becomes queued again.
    pub run_at: Option<Millis>,
    /// When an active job's lease runs out unless renewed.
    pub lease_until: Option<Millis>,
    /// 0..=100, reported by the segmenter.
    pub progress: u8,
    pub last_error: Option<JobError>,
    pub project: Option<String>,
    pub dedupe_key: Option<String>,
    pub image: ImageRef,
    pub segmenter: SegmenterId,
    #[serde(with = "params_json")]
    pub params: SegmentParams,
    pub result: Option<ResultRef>,
    /// The job this one runs again (same image, other parameters).
    pub rerun_of: Option<JobId>,
    /// Named values from where the image came from, e.g. plate and well from its file name.
    pub metadata: Vec<(String, String)>,
    /// The page of a multi-page TIFF this job segments (0-based); `None` is the first.
    pub page: Option<u32>,
}

/// Parameters inside a job record as JSON text: fields added later take their defaults. The
/// defaults themselves (most jobs) are stored as an empty text.
pub(crate) mod params_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::segment::SegmentParams;

    pub fn serialize<S: Serializer>(p: &SegmentParams, s: S) -> Result<S::Ok, S::Error> {
        if *p == SegmentParams::default() {
            return s.serialize_str("");
        }
        let text = serde_json::to_string(p).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SegmentParams, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(SegmentParams::default());
        }
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// What a caller submits.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NewJob {
    pub priority: Priority,
    pub max_attempts: Option<u32>,
    pub project: Option<String>,
    pub dedupe_key: Option<String>,
    pub image: ImageRef,
    pub segmenter: SegmenterId,
    pub params: SegmentParams,
    /// Start delayed until this time instead of queued now.
    pub run_at: Option<Millis>,
    pub rerun_of: Option<JobId>,
    pub metadata: Vec<(String, String)>,
    pub page: Option<u32>,
}

/// A record another part of spheroseg keeps beside the jobs (the watch folders' ledger of the
/// files they took), committed in the same transaction as the jobs it belongs to, so the two
/// cannot disagree after a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// 1 to 4096 bytes, unique among all marks; each user keeps to a prefix of its own.
    pub key: String,
    /// Stored as given (at most 1 MiB), followed by the id of each job that `jobs` names, 16
    /// bytes little-endian each, in order; `None` removes the key.
    pub value: Option<Vec<u8>>,
    /// Indices into the jobs enqueued by the same call; for a deduplicated job, the id of the
    /// job that holds its dedupe key.
    pub jobs: Vec<usize>,
}

/// The answer to an enqueue: the job, and whether it already existed under its dedupe key.
#[derive(Clone, Debug, PartialEq)]
pub struct Enqueued {
    pub job: Job,
    pub deduplicated: bool,
}

/// A job handed to a worker, with the token that fences its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub job: Job,
    pub token: LeaseToken,
}

/// What a bulk action does to each job it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Failed and cancelled jobs go back in the queue.
    Retry,
    /// Queued, delayed and active jobs are cancelled.
    Cancel,
    /// Finished jobs and their results are removed.
    Delete,
}

impl BulkAction {
    /// Whether the action applies to a job in `state` (the others are skipped).
    pub fn applies_to(self, state: JobState) -> bool {
        match self {
            BulkAction::Retry => matches!(state, JobState::Failed | JobState::Cancelled),
            BulkAction::Cancel => !state.is_finished(),
            BulkAction::Delete => state.is_finished(),
        }
    }
}

/// One job a bulk action changed: its state before, and after (`None` once deleted). States
/// only, so an action over many jobs holds 24 bytes a job; the events carry the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkOutcome {
    pub id: JobId,
    pub before: JobState,
    pub after: Option<JobState>,
}

/// What happened to a job that failed an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// It waits out a backoff, then runs again.
    Retrying { run_at: Millis },
    /// Its attempts are spent or the error is permanent.
    Failed,
}

/// Filters for listing jobs; all present filters must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub project: Option<String>,
    /// Only jobs whose image's file name contains this, ignoring case (a search: every job of
    /// the view is read until a page is full).
    pub name: Option<String>,
}

impl JobFilter {
    /// Whether `job` passes the filters a listing does not answer from an index.
    pub(crate) fn admits(&self, job: &Job) -> bool {
        self.state.is_none_or(|s| s == job.state)
            && self
                .name
                .as_deref()
                .is_none_or(|n| job.image.name.to_lowercase().contains(&n.to_lowercase()))
    }
}

/// One page of a listing; `next` is the opaque cursor of the following page, `None` at the end.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub jobs: Vec<Job>,
    pub next: Option<String>,
}

/// What `sweep` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Delayed jobs whose backoff ended.
    pub promoted: Vec<JobId>,
    /// Active jobs whose lease ran out: requeued, or failed when their attempts were spent.
    pub expired: Vec<JobId>,
}

/// What the retention pass removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionReport {
    pub removed: Vec<JobId>,
    /// Image hashes no job refers to any more; the image store deletes their files.
    pub orphaned_images: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_refuses_out_of_range() {
        assert_eq!(Priority::new(0), None);
        assert_eq!(Priority::new(11), None);
        assert_eq!(Priority::new(-3), None);
        assert_eq!(Priority::new(1).map(Priority::get), Some(1));
        assert_eq!(Priority::new(10).map(Priority::get), Some(10));
        assert_eq!(Priority::default().get(), 5);
    }

    #[test]
    fn job_id_round_trips_through_its_string() {
        let id = JobId::new();
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(s.parse::<JobId>().expect("valid uuid"), id);
        assert!("not-a-uuid".parse::<JobId>().is_err());
    }

    #[test]
    fn job_ids_sort_by_creation() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
    }

    #[test]
    fn state_names_round_trip() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>(), Ok(st));
            assert_eq!(JobState::ALL[st.index() as usize], st);
        }
        assert!("running".parse::<JobState>().is_err());
    }
}
