//! Result versions: outlines corrected by hand, measured again on the job's image and stored as a
//! new version; an older version restored as a new one. Nothing is overwritten or deleted: the
//! queue keeps every version until the job goes.

use super::{Service, ServiceError};
use crate::outline::Polygon;
use crate::queue::{Job, JobId, JobState, NewVersion, QueueError};
use crate::segment::{CorrectionError, SegmentResult, SegmenterId, checked, corrected};

/// Why a version could not be made, beyond the queue's and the image store's reasons.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The polygons are not outlines the server can measure.
    #[error(transparent)]
    Refused(#[from] CorrectionError),
    /// The job has no result, or not the version asked for.
    #[error("job {job} has no result version {version}")]
    NoVersion { job: JobId, version: u32 },
    /// A stored result cannot be read.
    #[error("the stored result of job {job} (version {version}) cannot be read")]
    Unreadable { job: JobId, version: u32 },
}

impl Service {
    /// Version `version` of a job's result (`None`: the latest), with its number.
    pub fn result_at(
        &self,
        id: JobId,
        version: Option<u32>,
    ) -> Result<(Job, u32, SegmentResult), ServiceError> {
        let job = self
            .queue
            .get(id)?
            .ok_or(ServiceError::Queue(QueueError::NotFound(id)))?;
        let latest = job.result.as_ref().map(|r| r.version());
        let version = match (version, latest) {
            (_, None) => {
                return Err(ServiceError::Queue(QueueError::InvalidState {
                    id,
                    state: job.state,
                    action: "read the result of",
                }));
            }
            (Some(v), Some(_)) => v,
            (None, Some(l)) => l,
        };
        let bytes = self
            .queue
            .result_version(id, version)?
            .ok_or(VersionError::NoVersion { job: id, version })?;
        let result = SegmentResult::from_bytes(&bytes)
            .ok_or(VersionError::Unreadable { job: id, version })?;
        Ok((job, version, result))
    }

    /// Stores `polygons` as a new version of job `id`'s result, made from version `base`: checked
    /// and measured again on the job's image with `base`'s pixel size. Refused unless `base` is
    /// the latest.
    pub async fn correct(
        &self,
        id: JobId,
        base: u32,
        polygons: Vec<Polygon>,
    ) -> Result<Job, ServiceError> {
        let (job, latest, before) = self.result_at(id, None)?;
        if base != latest {
            // Checked again by the queue's writer; refused here before the image is decoded.
            return Err(QueueError::StaleVersion { id, base, latest }.into());
        }
        let images = self.images.clone();
        let hash = job.image.hash.clone();
        // The page the result was measured on: the job's, for the builtin segmenter; an ML
        // service's outlines are measured on the first.
        let page = job
            .page
            .filter(|_| before.segmenter == SegmenterId::BUILTIN);
        let after = tokio::task::spawn_blocking(move || {
            // Checked before the image is decoded: a refusal costs no decode.
            let objects = checked(&before, &polygons).map_err(VersionError::from)?;
            let after = images.with_decoded(&hash, page.unwrap_or(0), |decoded| {
                corrected(&before, objects, decoded)
            })?;
            Ok::<_, ServiceError>(after)
        })
        .await
        .map_err(|e| {
            QueueError::Storage(format!("measuring the correction stopped: {e}").into())
        })??;
        self.add_version(id, base, &after, None).await
    }

    /// Makes version `version` of job `id`'s result the latest again, as a new version (made
    /// from `base`, which must be the latest); the versions in between stay.
    pub async fn restore(&self, id: JobId, version: u32, base: u32) -> Result<Job, ServiceError> {
        let (_, _, old) = self.result_at(id, Some(version))?;
        self.add_version(id, base, &old, Some(version)).await
    }

    async fn add_version(
        &self,
        id: JobId,
        base: u32,
        result: &SegmentResult,
        restored_from: Option<u32>,
    ) -> Result<Job, ServiceError> {
        let job = self
            .queue
            .add_version(
                id,
                NewVersion {
                    base,
                    result: result.to_bytes(),
                    objects: result.objects.len() as u32,
                    corrected: result.corrected,
                    restored_from,
                },
            )
            .await?;
        debug_assert_eq!(job.state, JobState::Completed);
        Ok(job)
    }
}
