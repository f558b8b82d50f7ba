//! A consistent copy of the open database, for `spheroseg db backup` (through a running server or
//! on a stopped data directory): the writer checkpoints and copies the file between two batches
//! (`writer/backup.rs`), then the copy is opened once on its own and closed cleanly, marked as a
//! queue whose log is empty, so that `serve --data-dir` on the backup's directory opens it
//! without a log and without the warning about a missing one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::store::{META, META_WAL_CLEAN};
use super::writer::Op;
use super::{Queue, QueueError};

/// The page cache of the one open that seals a copy.
const SEAL_CACHE_BYTES: usize = 8 << 20;

/// What a backup does beside the database copy while no change can be made (copy the image
/// files), so that both are of the same moment.
pub type Hold = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// What a backup of the database did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Size of the copied database file.
    pub bytes: u64,
    /// How long the writer took no batch: the checkpoint, the copy and the caller's hold.
    pub paused: Duration,
    /// The whole backup of the database, sealing the copy included.
    pub took: Duration,
}

impl Queue {
    /// Copies the database to `to` (a file that must not exist), as of every change made before
    /// this call, and runs `hold` while no change can be made (for files that must be of the same
    /// moment). Blocks: call it from a blocking thread, never from inside an async runtime.
    pub fn backup_blocking(&self, to: &Path, hold: Option<Hold>) -> Result<Backup, QueueError> {
        let started = Instant::now();
        let to_owned: PathBuf = to.to_owned();
        let copied = self.call_blocking(|reply| Op::Backup {
            to: to_owned,
            hold,
            reply,
        })?;
        seal(to)?;
        Ok(Backup {
            bytes: copied.bytes,
            paused: copied.paused,
            took: started.elapsed(),
        })
    }

    /// [`Queue::backup_blocking`] on a blocking thread.
    pub async fn backup(&self, to: PathBuf, hold: Option<Hold>) -> Result<Backup, QueueError> {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || queue.backup_blocking(&to, hold))
            .await
            .map_err(|e| QueueError::Storage(format!("the backup task failed: {e}").into()))?
    }
}

/// Opens the copy (the storage engine recovers it as after a crash: it was copied while open)
/// and closes it cleanly, recorded as a queue closed with its log empty, which it is: the copy
/// was made right after a checkpoint.
fn seal(path: &Path) -> Result<(), QueueError> {
    let db = crate::contain::contain(|| {
        let mut builder = redb::Database::builder();
        builder.set_cache_size(SEAL_CACHE_BYTES);
        builder.create(path)
    })
    .map_err(|panic| QueueError::Corrupt {
        detail: format!("{}: the copy cannot be read ({panic})", path.display()),
    })?
    .map_err(|e| QueueError::Storage(Box::new(e)))?;
    let mut tx = db.begin_write()?;
    tx.set_quick_repair(true);
    tx.open_table(META)?.insert(META_WAL_CLEAN, 1)?;
    tx.commit()?;
    db.close().map_err(|e| QueueError::Storage(Box::new(e)))?;
    Ok(())
}
