//! Result versions: a completed job's result corrected by hand, or an older version restored,
//! stored as a new version beside the ones before. No version is ever overwritten; only deleting
//! the job removes them.

use redb::ReadableTable;

use super::Batch;
use crate::queue::QueueError;
use crate::queue::model::{Change, Job, JobId, JobState, NewVersion, ResultVersion};

/// The most versions one job's result may have; each is listed in the job's record.
pub(crate) const MAX_VERSIONS: u32 = 1000;

impl Batch<'_> {
    pub(super) fn add_version(&mut self, id: JobId, new: NewVersion) -> Result<Job, QueueError> {
        let mut job = self.t.job(id)?;
        let refused = QueueError::InvalidState {
            id,
            state: job.state,
            action: "store a result version of",
        };
        if job.state != JobState::Completed {
            return Err(refused);
        }
        let Some(result) = job.result.as_mut() else {
            return Err(refused);
        };
        let latest = result.version();
        if new.base != latest {
            return Err(QueueError::StaleVersion {
                id,
                base: new.base,
                latest,
            });
        }
        if latest >= MAX_VERSIONS {
            return Err(QueueError::Invalid(format!(
                "the result of job {id} has {MAX_VERSIONS} versions, the most it may have"
            )));
        }
        let version = latest + 1;
        result.bytes = new.result.len() as u64;
        result.objects = new.objects;
        result.versions.push(ResultVersion {
            version,
            corrected: new.corrected,
            created_at: self.now,
            objects: new.objects,
            restored_from: new.restored_from,
        });
        job.updated_at = self.now;
        // The state and its index keys stay: only the record changes.
        self.t
            .result_versions()?
            .insert((id.0, version), new.result.as_slice())?;
        self.t.put_job(&job)?;
        self.record(
            &job,
            Change::ResultVersioned {
                version,
                restored_from: new.restored_from,
            },
        );
        Ok(job)
    }

    /// Removes every version after the first of a job that is going (the first is in `results`).
    pub(super) fn remove_versions(&mut self, job: &Job) -> Result<(), QueueError> {
        if job.result.as_ref().is_none_or(|r| r.versions.len() <= 1) {
            return Ok(());
        }
        let table = self.t.result_versions()?;
        let keys: Vec<(u128, u32)> = table
            .range((job.id.0, 0)..=(job.id.0, u32::MAX))?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            table.remove(key)?;
        }
        Ok(())
    }
}
