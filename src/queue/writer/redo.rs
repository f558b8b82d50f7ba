//! What an open (and a writer that found room again) does before anything else writes: redo
//! the log records the last durable commit does not include, and requeue the jobs a dead process
//! left active.

use redb::ReadableTable;

use super::super::model::{Change, Committed, JobError, JobId, JobState, Millis, Requeue};
use super::super::store::{
    META_WAL_CLEAN, META_WAL_FORMAT, META_WAL_GENERATION, META_WAL_LSN, Store, Tables, due, redo,
};
use super::super::wal::Wal;
use super::super::{QueueError, QueueOptions};
use super::Position;
use super::batch::Batch;
use crate::error_code::ErrorCode;

/// Redoes the log records that the last durable commit does not include, then starts a new
/// generation, in one durable transaction. Runs at open, before anything else writes, and when
/// the writer reopens the database. Returns where the log starts and how many records were
/// redone.
pub(crate) fn replay(
    store: &Store,
    wal: &Wal,
    existed: bool,
) -> Result<(Position, usize), QueueError> {
    let tx = store.db.begin_write()?;
    let (generation, lsn, redone);
    {
        let mut t = Tables::open(&tx)?;
        let meta = |t: &mut Tables<'_>, key: &str, absent: u64| -> Result<u64, QueueError> {
            Ok(t.meta()?.get(key)?.map_or(absent, |v| v.value()))
        };
        let previous = meta(&mut t, META_WAL_GENERATION, 0)?;
        let after = meta(&mut t, META_WAL_LSN, 0)?;
        if !existed && meta(&mut t, META_WAL_CLEAN, 1)? == 0 {
            tracing::error!(
                wal = %wal.path().display(),
                "the write-ahead log is missing after an unclean shutdown: changes acknowledged since the last checkpoint are lost"
            );
        }
        let format = meta(&mut t, META_WAL_FORMAT, 1)?;
        let records = wal.replay(previous, after, format)?;
        for record in &records {
            redo(&mut t, &record.payload)?;
        }
        redone = records.len();
        generation = super::super::wal::new_generation(previous);
        lsn = after + redone as u64;
        t.meta()?.insert(META_WAL_GENERATION, generation)?;
        t.meta()?.insert(META_WAL_LSN, lsn)?;
        t.meta()?.insert(META_WAL_CLEAN, 0)?;
        t.meta()?
            .insert(META_WAL_FORMAT, super::super::wal::FORMAT)?;
    }
    tx.commit()?;
    Ok((Position { generation, lsn }, redone))
}

/// Requeues every job still `active` in the file: the process that leased it is gone. Runs in its
/// own durable transaction before the writer starts. The attempt is refunded, since the job did
/// not fail; a job that keeps being interrupted (a crash loop, say) fails after `max_attempts`.
pub(crate) fn recover_orphans(
    store: &Store,
    options: &QueueOptions,
    now: Millis,
) -> Result<Committed, QueueError> {
    let tx = store.db.begin_write()?;
    let committed;
    {
        let mut b = Batch::open(&tx, options, now)?;
        let active = due(&**b.t.leases()?, Millis::MAX)?;
        for raw in active {
            let mut job = b.t.job(JobId(raw))?;
            b.leave(&job)?;
            job.interruptions += 1;
            job.lease_until = None;
            if job.interruptions > job.max_attempts {
                job.last_error = Some(JobError::permanent(
                    ErrorCode::INTERRUPTED,
                    format!(
                        "the job was running when spheroseg stopped {} times; it may be what stops it",
                        job.interruptions
                    ),
                ));
                b.finish_as(&mut job, JobState::Failed)?;
                b.enter(&job)?;
                b.record(&job, Change::Failed);
            } else {
                job.attempts = job.attempts.saturating_sub(1);
                b.requeue(&mut job)?;
                b.enter(&job)?;
                b.record(
                    &job,
                    Change::Requeued {
                        reason: Requeue::Orphan,
                    },
                );
            }
        }
        b.flush()?;
        committed = std::mem::take(&mut b.committed);
    }
    tx.commit()?;
    Ok(committed)
}
