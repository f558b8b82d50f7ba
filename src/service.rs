//! The one door for commands, whatever interface they come from (HTTP, CLI, watch folders):
//! submit images, cancel, retry, delete, bulk actions, priority, pause and resume, result
//! versions. Each stores what it must and commits; the queue announces every transition it
//! commits (events) and wakes the dispatcher itself, so the interfaces stay thin and behave alike.
//!
//! A submission checks the segmenter, then checks and stores every image before it enqueues
//! anything, then enqueues them all in one durable commit: a refused file means no job at all.
//! Each stored image stays pinned until that commit, so the garbage collector cannot take it in
//! between; image files of a refused submission are collected once unpinned. A rerun stores
//! nothing: it pins the image its original job refers to, refuses if the image is gone, and holds
//! the pin until its own job has committed, so deleting the original in between cannot take it.

use std::path::PathBuf;

use crate::error_code::ErrorCode;
use crate::events::EventBus;
use crate::images::{ImageStore, ImageStoreError, Incoming};
use crate::pool::PoolHandle;
use crate::queue::{
    BulkAction, BulkOutcome, Enqueued, ImageRef, Job, JobId, JobState, Mark, NewJob, Priority,
    Queue, QueueError,
};
use crate::segment::{PixelSizeGiven, SegmentParams, SegmenterId};

mod projects;
#[cfg(test)]
mod tests;
mod versions;

pub use projects::{Project, ProjectSettings};
pub use versions::VersionError;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Image(#[from] ImageStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The image of the job to run again is no longer stored.
    #[error("the image of job {job} is no longer stored; upload it again")]
    ImageGone { job: JobId },
    /// A field of the submission names something this server cannot do.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A result version could not be read or made.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// A client's key already made a job of another image or other settings.
    #[error(
        "the key {key:?} already made job {job} from another request; use a new key for a new request"
    )]
    KeyReused { key: String, job: JobId },
}

impl ServiceError {
    /// A stable kebab-case code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Image(e) => e.code(),
            ServiceError::Queue(e) => e.code(),
            ServiceError::ImageGone { .. } => ErrorCode::IMAGE_MISSING,
            ServiceError::Invalid { .. } => ErrorCode::INVALID_FIELD,
            ServiceError::KeyReused { .. } => ErrorCode::KEY_REUSED,
            ServiceError::Version(VersionError::Refused(_)) => ErrorCode::BAD_POLYGONS,
            ServiceError::Version(VersionError::NoVersion { .. }) => ErrorCode::NO_RESULT,
            ServiceError::Version(VersionError::Unreadable { .. }) => ErrorCode::RESULT_UNREADABLE,
        }
    }
}

/// Where a submitted image comes from.
#[derive(Debug)]
pub enum Source {
    Bytes {
        name: String,
        bytes: Vec<u8>,
    },
    Path(PathBuf),
    /// An upload streamed to a temp file of the image store; stored, or removed when dropped.
    Upload {
        name: String,
        file: Incoming,
    },
}

/// How submitted images are to be run.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    pub priority: Priority,
    pub project: Option<String>,
    /// `None`: the configured default.
    pub segmenter: Option<SegmenterId>,
    pub params: SegmentParams,
    pub max_attempts: Option<u32>,
    /// Deduplicate each image by (content hash, segmenter, parameters), as the watch folders do.
    pub dedupe: bool,
    /// A client's key for this submission (`Idempotency-Key`, or the `dedupe_key` field): the
    /// same key again returns the jobs it made instead of new ones. Wins over `dedupe`.
    pub key: Option<String>,
}

/// The queue's dedupe key of a job of the image `hash` on `segmenter` with `params` (and the
/// page of a multi-page TIFF, when one is named): what the watch folders and `dedupe` uploads
/// share.
pub fn content_key(
    hash: &str,
    segmenter: &SegmenterId,
    params: &SegmentParams,
    page: Option<u32>,
) -> String {
    let params = serde_json::to_string(params).unwrap_or_default();
    match page {
        None => format!("{hash}:{segmenter}:{params}"),
        Some(p) => format!("{hash}:{segmenter}:{params}:page={p}"),
    }
}

/// The queue's dedupe key of image `i` of `n` of a submission a client keyed `key`: in a
/// namespace of its own, so no client key can take the place of a content key.
fn client_key(key: &str, i: usize, n: usize) -> String {
    if n == 1 {
        format!("client:{key}")
    } else {
        format!("client:{key}#{i}")
    }
}

/// How a job is to be run again: everything else is the original's.
#[derive(Clone, Debug)]
pub struct RerunOptions {
    pub params: SegmentParams,
    pub priority: Priority,
    pub segmenter: SegmenterId,
}

/// The shared operations.
#[derive(Clone)]
pub struct Service {
    pub queue: Queue,
    pub images: ImageStore,
    pub events: EventBus,
    pub pool: Option<PoolHandle>,
    pub default_segmenter: SegmenterId,
}

impl Service {
    /// Checks and stores every image, then enqueues one job per image in one commit.
    pub async fn submit(
        &self,
        sources: Vec<Source>,
        opts: SubmitOptions,
    ) -> Result<Vec<Enqueued>, ServiceError> {
        let segmenter = opts
            .segmenter
            .clone()
            .unwrap_or_else(|| self.default_segmenter.clone());
        self.check_configured(&segmenter)?;
        let params = self.with_project_pixel_size(
            opts.project.as_deref(),
            opts.params.clone(),
            PixelSizeGiven::Job,
        )?;
        let min_side = if segmenter.is_builtin() {
            crate::segment::builtin::MIN_SIDE
        } else {
            1
        };
        let images = self.images.requiring(min_side);
        // Each stored image stays pinned (out of the garbage collector's reach) until the enqueue
        // that refers to it has committed.
        let stored = tokio::task::spawn_blocking(move || {
            sources
                .into_iter()
                .map(|s| match s {
                    Source::Bytes { name, bytes } => images.put(&bytes, &name),
                    Source::Path(p) => images.put_path(&p),
                    Source::Upload { name, file } => images.put_upload(file, &name),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ServiceError::Queue(QueueError::Storage(Box::new(e))))??;
        let (refs, _pins): (Vec<_>, Vec<_>) = stored.into_iter().map(|s| (s.image, s.pin)).unzip();
        let n = refs.len();
        let keys: Vec<Option<String>> = refs
            .iter()
            .enumerate()
            .map(|(i, image)| match &opts.key {
                Some(k) => Some(client_key(k, i, n)),
                None => opts
                    .dedupe
                    .then(|| content_key(&image.hash, &segmenter, &params, None)),
            })
            .collect();
        if let Some(k) = &opts.key {
            // A key that made a job of something else is refused before anything is enqueued.
            for (key, image) in keys.iter().flatten().zip(&refs) {
                if let Some(id) = self.queue.dedupe_holder(key)?
                    && let Some(job) = self.queue.get(id)?
                    && !same_request(&job, image, &segmenter, &opts)
                {
                    return Err(ServiceError::KeyReused {
                        key: k.clone(),
                        job: id,
                    });
                }
            }
        }
        let jobs: Vec<NewJob> = refs
            .iter()
            .zip(keys)
            .map(|(image, dedupe_key)| NewJob {
                priority: opts.priority,
                max_attempts: opts.max_attempts,
                project: opts.project.clone(),
                dedupe_key,
                segmenter: segmenter.clone(),
                params: params.clone(),
                image: image.clone(),
                ..NewJob::default()
            })
            .collect();
        let done = self.queue.enqueue_batch(jobs).await?;
        let fresh = done.iter().filter(|e| !e.deduplicated).count();
        metrics::counter!("spheroseg_jobs_enqueued_total").increment(fresh as u64);
        if let Some(k) = &opts.key
            && let Some(e) = done
                .iter()
                .zip(&refs)
                .find(|(e, image)| {
                    e.deduplicated && !same_request(&e.job, image, &segmenter, &opts)
                })
                .map(|(e, _)| e)
        {
            // Two requests with one key raced past the check above.
            return Err(ServiceError::KeyReused {
                key: k.clone(),
                job: e.job.id,
            });
        }
        Ok(done)
    }

    /// Enqueues jobs of images already stored (and pinned by the caller until this returns),
    /// with the marks that record where they came from, in one durable commit (the watch
    /// folders' ledger).
    pub async fn enqueue_marked(
        &self,
        jobs: Vec<NewJob>,
        marks: Vec<Mark>,
    ) -> Result<Vec<Enqueued>, ServiceError> {
        let done = self.queue.enqueue_marked(jobs, marks).await?;
        let fresh = done.iter().filter(|e| !e.deduplicated).count();
        metrics::counter!("spheroseg_jobs_enqueued_total").increment(fresh as u64);
        Ok(done)
    }

    /// Enqueues a new job for the image of `original`, linked to it by `rerun_of`: the same image
    /// (not stored again), project, metadata and page, with the parameters, priority and
    /// segmenter of `opts`. Durable on return.
    pub async fn rerun(
        &self,
        original: &Job,
        opts: RerunOptions,
    ) -> Result<Enqueued, ServiceError> {
        self.check_configured(&opts.segmenter)?;
        let image = &original.image;
        let min_side = crate::segment::builtin::MIN_SIDE;
        if opts.segmenter.is_builtin() && image.width.min(image.height) < min_side {
            return Err(ImageStoreError::TooSmall {
                name: image.name.clone(),
                width: image.width,
                height: image.height,
                min: min_side,
            }
            .into());
        }
        // Held until the enqueue has committed: from then on the new job refers to the image.
        let _pin = self
            .images
            .pin_stored(&image.hash)
            .ok_or(ServiceError::ImageGone { job: original.id })?;
        let job = NewJob {
            priority: opts.priority,
            project: original.project.clone(),
            image: image.clone(),
            segmenter: opts.segmenter,
            params: opts.params,
            rerun_of: Some(original.id),
            metadata: original.metadata.clone(),
            page: original.page,
            ..NewJob::default()
        };
        let done = self.queue.enqueue(job).await?;
        metrics::counter!("spheroseg_jobs_enqueued_total").increment(1);
        Ok(done)
    }

    /// Refuses a segmenter that no job could run on: an ML service that is not configured.
    fn check_configured(&self, segmenter: &SegmenterId) -> Result<(), ServiceError> {
        if segmenter.is_builtin() {
            return Ok(());
        }
        let configured: Vec<String> = self
            .pool
            .as_ref()
            .map(|p| {
                let mut served: Vec<String> = p
                    .ml()
                    .iter()
                    .map(|(name, svc)| svc.segmenter_of(name).to_string())
                    .collect();
                served.dedup();
                served
            })
            .unwrap_or_default();
        if configured.iter().any(|c| c == segmenter.as_str()) {
            return Ok(());
        }
        let name = segmenter.as_str();
        let mut names = vec![SegmenterId::BUILTIN.to_owned()];
        names.extend(configured);
        names.sort();
        names.dedup();
        Err(ServiceError::Invalid {
            field: "segmenter",
            message: format!(
                "{name:?} is not configured here; this spheroseg runs {}",
                names.join(", ")
            ),
        })
    }

    /// Cancels a job; a running one is stopped as well.
    pub async fn cancel(&self, id: JobId) -> Result<Job, ServiceError> {
        let before = self.queue.cancel(id).await?;
        tracing::info!(job.id = %id, from = %before.state, "job cancelled");
        if before.state == JobState::Active {
            self.stop_running(id);
        }
        Ok(before)
    }

    /// Asks the pool to stop a job the queue no longer has active.
    fn stop_running(&self, id: JobId) {
        if let Some(p) = &self.pool {
            p.stop_job(id);
        }
    }

    /// Puts a failed or cancelled job back in the queue.
    pub async fn retry(&self, id: JobId) -> Result<Job, ServiceError> {
        Ok(self.queue.retry(id).await?)
    }

    /// Removes a finished job and its result (its image goes once no job refers to it).
    pub async fn delete(&self, id: JobId) -> Result<Job, ServiceError> {
        Ok(self.queue.delete(id).await?)
    }

    /// Pauses or resumes leasing; persisted across restarts.
    pub async fn set_paused(&self, paused: bool) -> Result<(), ServiceError> {
        Ok(self.queue.set_paused(paused).await?)
    }

    /// Applies a bulk action to the jobs `ids` names in one durable commit, however many they
    /// are; jobs it does not apply to are skipped. Returns the jobs it changed.
    pub async fn bulk(
        &self,
        action: BulkAction,
        ids: &[JobId],
    ) -> Result<Vec<BulkOutcome>, ServiceError> {
        let changed = self.queue.bulk(action, ids.to_vec()).await?;
        if action == BulkAction::Cancel {
            for o in changed.iter().filter(|o| o.before == JobState::Active) {
                self.stop_running(o.id);
            }
        }
        if !changed.is_empty() {
            tracing::info!(action = ?action, jobs = changed.len(), "bulk action applied");
        }
        Ok(changed)
    }

    pub async fn change_priority(
        &self,
        id: JobId,
        priority: Priority,
    ) -> Result<Job, ServiceError> {
        Ok(self.queue.change_priority(id, priority).await?)
    }

    /// Refuses a segmenter that no job could run on (for interfaces that check once, at start).
    pub fn check_segmenter(&self, segmenter: &SegmenterId) -> Result<(), ServiceError> {
        self.check_configured(segmenter)
    }

    /// The pool's handle, when one runs.
    pub fn pool(&self) -> Option<&PoolHandle> {
        self.pool.as_ref()
    }
}

/// Whether `job` is what a submission of `image` with `opts` on `segmenter` would make (its
/// priority may have been changed since).
fn same_request(
    job: &Job,
    image: &ImageRef,
    segmenter: &SegmenterId,
    opts: &SubmitOptions,
) -> bool {
    // A pixel size the project gave is not part of the request: the project's may have
    // changed since, and the request is the same.
    let mut asked = job.params.clone();
    if asked.pixel_size_from == PixelSizeGiven::Project {
        asked.pixel_size_um = None;
    }
    asked.pixel_size_from = PixelSizeGiven::Job;
    let mut given = opts.params.clone();
    given.pixel_size_from = PixelSizeGiven::Job;
    job.image.hash == image.hash
        && job.segmenter == *segmenter
        && asked == given
        && job.project == opts.project
}
