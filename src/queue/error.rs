//! What can go wrong in the queue, each error with its stable code and whether it is transient.

use std::path::PathBuf;

use super::model::{JobId, JobState, LeaseToken};
use crate::error_code::ErrorCode;

/// Everything that can go wrong in the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No job has this id (it never existed or retention removed it).
    #[error("job {0} not found")]
    NotFound(JobId),
    /// A worker reported with a lease that is no longer the job's current one.
    #[error("lease {token} of job {id} is no longer current (the job is {state}, lease {current})")]
    Stale {
        id: JobId,
        token: LeaseToken,
        current: LeaseToken,
        state: JobState,
    },
    /// The action does not apply to a job in this state.
    #[error("cannot {action} job {id}: it is {state}")]
    InvalidState {
        id: JobId,
        state: JobState,
        action: &'static str,
    },
    /// A new result version was made from one that is no longer the latest.
    #[error(
        "the result of job {id} was made from version {base}, but version {latest} is the latest: load the latest and make the change again"
    )]
    StaleVersion { id: JobId, base: u32, latest: u32 },
    /// A submitted value is out of range.
    #[error("invalid job: {0}")]
    Invalid(String),
    /// Another process holds the database file.
    #[error(
        "database {} is in use by another spheroseg process; stop it or choose another --data-dir",
        path.display()
    )]
    AlreadyOpen { path: PathBuf },
    /// The file was written by a newer spheroseg.
    #[error(
        "database {} has schema version {found}, but this spheroseg supports up to version {supported}: \
         it was written by a newer spheroseg; upgrade, or restore an older backup",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// The file or a record in it cannot be read.
    #[error(
        "database is damaged or not a spheroseg database: {detail}; restore the data directory from a backup, or move spheroseg.redb and spheroseg.wal aside to start with an empty queue"
    )]
    Corrupt { detail: String },
    /// Reading or copying a file failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A write failed for lack of space; nothing of the command was kept, and the queue takes
    /// changes again once there is room.
    #[error("disk full: {detail}; free some space on the disk that holds the data directory")]
    DiskFull { detail: String },
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
    /// The writer thread has stopped (the queue was closed or the writer failed).
    #[error("the queue is closed")]
    Closed,
}

impl QueueError {
    /// A stable kebab-case code for the API.
    pub fn code(&self) -> ErrorCode {
        match self {
            QueueError::NotFound(_) => ErrorCode::JOB_NOT_FOUND,
            QueueError::Stale { .. } => ErrorCode::STALE_ATTEMPT,
            QueueError::StaleVersion { .. } => ErrorCode::STALE_VERSION,
            QueueError::InvalidState { .. } => ErrorCode::INVALID_STATE,
            QueueError::Invalid(_) => ErrorCode::INVALID_JOB,
            QueueError::AlreadyOpen { .. } => ErrorCode::DATABASE_IN_USE,
            QueueError::NewerSchema { .. } => ErrorCode::DATABASE_TOO_NEW,
            QueueError::Corrupt { .. } => ErrorCode::DATABASE_CORRUPT,
            QueueError::Io { .. } => ErrorCode::IO_ERROR,
            QueueError::DiskFull { .. } => ErrorCode::DISK_FULL,
            QueueError::Storage(_) => ErrorCode::STORAGE_ERROR,
            QueueError::Closed => ErrorCode::QUEUE_CLOSED,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Storage(_) | QueueError::Io { .. } | QueueError::DiskFull { .. }
        )
    }

    /// Whether this error is a lack of space (whatever layer reported it).
    pub fn is_disk_full(&self) -> bool {
        match self {
            QueueError::DiskFull { .. } => true,
            QueueError::Io { source, .. } => crate::disk::is_full(source),
            QueueError::Storage(e) => crate::disk::caused_by_full(e.as_ref()),
            _ => false,
        }
    }

    /// The same error, as [`QueueError::DiskFull`] if it is a lack of space.
    pub(crate) fn classify(self) -> QueueError {
        if self.is_disk_full() && !matches!(self, QueueError::DiskFull { .. }) {
            QueueError::DiskFull {
                detail: self.to_string(),
            }
        } else {
            self
        }
    }
}
