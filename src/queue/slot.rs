//! The open database, shared by the readers and the writer thread, which can close and reopen it
//! in place: after the storage engine fails a write (a full disk), it refuses every later
//! operation until it is opened again. Readers wait for the reopen; it takes milliseconds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::QueueError;
use super::store::Store;
use crate::fsio::Fs;

/// How long a reopen waits for reads in progress to let go of the old database.
const READERS_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) struct Slot {
    /// `None` once closed (or after a reopen that failed), so the file is released.
    store: RwLock<Option<Arc<Store>>>,
    fs: Arc<dyn Fs>,
    path: PathBuf,
    cache_bytes: usize,
}

impl Slot {
    pub(crate) fn new(store: Store, fs: Arc<dyn Fs>, path: &Path, cache_bytes: usize) -> Slot {
        Slot {
            store: RwLock::new(Some(Arc::new(store))),
            fs,
            path: path.to_owned(),
            cache_bytes,
        }
    }

    /// The database, for one read or one batch; [`QueueError::Closed`] once closed.
    pub(crate) fn get(&self) -> Result<Arc<Store>, QueueError> {
        self.store
            .read()
            .expect("queue store lock")
            .clone()
            .ok_or(QueueError::Closed)
    }

    /// Releases the database file (once the last read in progress is done).
    pub(crate) fn close(&self) {
        self.store.write().expect("queue store lock").take();
    }

    /// Closes the database and opens it again. The caller holds no [`Slot::get`] of its own.
    pub(crate) fn reopen(&self) -> Result<(), QueueError> {
        let mut slot = self.store.write().expect("queue store lock");
        if let Some(mut old) = slot.take() {
            // New reads wait on the lock; the ones in progress finish and let go.
            let deadline = Instant::now() + READERS_DEADLINE;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(store) => {
                        drop(store);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(shared) => {
                        *slot = Some(shared);
                        return Err(QueueError::Storage(
                            "cannot reopen the database: reads in progress do not finish".into(),
                        ));
                    }
                }
            }
        }
        let (store, _) = Store::open(&*self.fs, &self.path, self.cache_bytes)?;
        *slot = Some(Arc::new(store));
        tracing::info!(path = %self.path.display(), "database reopened");
        Ok(())
    }
}
