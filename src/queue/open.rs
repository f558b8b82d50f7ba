//! Opening the queue: the database opened (and migrated), the write-ahead log redone, the jobs
//! the previous process left `active` requeued, and the writer started, before any other
//! command runs. On a disk too full for the commits of opening, the queue still opens: it serves
//! what the database holds and refuses changes until the writer can finish the opening.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::stats::Recent;
use super::store::{OpenReport, Store};
use super::wal::Wal;
use super::{
    Committed, Inner, JobId, Queue, QueueError, QueueOptions, Slot, announce, reserve, writer,
};
use crate::clock::Clock;

/// What `Queue::open` recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub open: OpenReport,
    /// Jobs found `active` from the previous process, now queued again (or failed when they kept
    /// interrupting restarts).
    pub orphans: Vec<JobId>,
    /// Write-ahead log records redone: batches the previous process committed after its last
    /// checkpoint (zero after a clean shutdown).
    pub replayed: usize,
    /// The disk was too full to finish opening (redo the log, requeue orphans): the queue serves
    /// what the database holds and refuses changes with [`QueueError::DiskFull`] until the
    /// writer finishes the opening, once there is room.
    pub disk_full: Option<String>,
}

impl Queue {
    /// Opens (or creates) the database at `path`, migrates it if needed, and requeues every job the
    /// previous process left `active` before any other command runs.
    pub fn open(
        path: &Path,
        options: QueueOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Queue, Recovery), QueueError> {
        Self::open_on(crate::fsio::OsFs::shared(), path, options, clock)
    }

    /// [`Queue::open`] on the file system `fs` (the power-loss tests' simulated disk).
    pub(crate) fn open_on(
        fs: Arc<dyn crate::fsio::Fs>,
        path: &Path,
        options: QueueOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Queue, Recovery), QueueError> {
        // The storage engine panics on some damage instead of returning an error.
        crate::contain::contain(|| Self::open_inner(fs, path, options, clock)).unwrap_or_else(
            |panic| {
                Err(QueueError::Corrupt {
                    detail: format!(
                        "{}: the storage engine cannot read it ({panic})",
                        path.display()
                    ),
                })
            },
        )
    }

    fn open_inner(
        fs: Arc<dyn crate::fsio::Fs>,
        path: &Path,
        options: QueueOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Queue, Recovery), QueueError> {
        let (store, report) =
            Store::open(&*fs, path, options.cache_bytes).map_err(QueueError::classify)?;
        let recent = Arc::new(Mutex::new(Recent::default()));
        let (wal, existed) = Wal::open(&*fs, &path.with_extension("wal"), options.wal_bytes)
            .map_err(QueueError::classify)?;
        // On a disk too full for the commits of opening, the queue still opens: it serves what
        // the database holds and refuses changes until the writer can finish the opening.
        let reserve = reserve::Reserve::new(path, options.reserve_bytes);
        let mut unfinished = None;
        let open = |store: &Store| {
            writer::replay(store, &wal, existed)
                .and_then(|r| Ok((r, writer::recover_orphans(store, &options, clock.now())?)))
                .map_err(QueueError::classify)
        };
        let mut opened = open(&store);
        let mut store = store;
        if let Err(QueueError::DiskFull { detail }) = &opened
            && reserve.release()
        {
            // In the reserve's room; the queue takes changes once it can be made again.
            unfinished = Some(writer::Unfinished {
                why: detail.clone(),
                caught_up: true,
            });
            drop(store);
            store = Store::open(&*fs, path, options.cache_bytes)
                .map_err(QueueError::classify)?
                .0;
            opened = open(&store);
        }
        let (log, replayed, recovered) = match opened {
            Ok(((position, replayed), recovered)) => {
                (writer::Log::new(wal, position), replayed, recovered)
            }
            Err(QueueError::DiskFull { detail }) => {
                tracing::error!(%detail, "the disk is too full to open the queue for changes; it serves what it holds and takes changes once there is room");
                unfinished = Some(writer::Unfinished {
                    why: detail,
                    caught_up: false,
                });
                (
                    writer::Log::new(wal, writer::Position::default()),
                    0,
                    Committed::default(),
                )
            }
            Err(e) => return Err(e),
        };
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                "redid the write-ahead log of the previous process"
            );
        }
        let orphans: Vec<JobId> = recovered.transitions.iter().map(|t| t.job.id).collect();
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "requeued jobs left active by the previous process"
            );
        }
        let announcer = Arc::new(announce::Announcer::with_recovered(recovered));
        let (tx, rx) = crossbeam_channel::unbounded();
        let status = Arc::new(writer::Status::default());
        let slot = Arc::new(Slot::new(store, fs, path, options.cache_bytes));
        let disk_full = unfinished.as_ref().map(|u| u.why.clone());
        let handle = writer::spawn(
            Arc::clone(&slot),
            rx,
            options,
            Arc::clone(&clock),
            log,
            writer::Outlets {
                status: Arc::clone(&status),
                recent: Arc::clone(&recent),
                announcer: Arc::clone(&announcer),
            },
            writer::Room {
                reserve,
                unfinished,
            },
        )?;
        let queue = Queue {
            inner: Arc::new(Inner {
                store: slot,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                recent,
                clock,
                status,
                announcer,
            }),
        };
        Ok((
            queue,
            Recovery {
                open: report,
                orphans,
                replayed,
                disk_full,
            },
        ))
    }
}
