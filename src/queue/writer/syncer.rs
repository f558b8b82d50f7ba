//! The sync thread: makes the write-ahead log durable and sends every batch's replies, in commit
//! order, once what the batch depends on is on disk.
//!
//! The writer asks for a sync as soon as a durable batch's record is written, before it commits
//! redb, so the `fdatasync` runs while redb commits; then it hands over the batch's replies with
//! the log sequence number they wait for. The writer goes on with the next batch while a sync
//! runs, so under load one `fdatasync` covers many batches and the writer never waits on the disk.
//!
//! Replies of batches that need no sync (leases, heartbeats) pass through here too, so that no
//! caller hears of a change before the changes committed ahead of it are durable.
//!
//! A failed sync (of any kind: EIO, or ENOSPC from a file system that allocates at writeback)
//! stops the queue for good: after a failed `fdatasync` the kernel may have dropped
//! the unwritten pages and a later sync can report success without them, so nothing may be
//! acknowledged after it. Every later batch gets the error until spheroseg is restarted (the
//! restart replays what did reach the log).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Finish, Refusal, Status, Waiter};
use crate::queue::QueueError;
use crate::queue::announce::Announcer;
use crate::queue::model::Committed;
use crate::queue::stats::Recent;

enum Msg {
    /// Make every record up to this sequence number durable.
    Sync(u64),
    /// The log was rewound to this sequence number (a record was taken back, or the log started
    /// over after a reopen): numbers after it will be records not yet synced. Answered once done.
    Rewind(u64, std::sync::mpsc::Sender<()>),
    /// Send these replies once every record up to `after` is durable. `durable_since` is when a
    /// durable batch began, for the commit latency statistics.
    Reply {
        after: u64,
        durable_since: Option<Instant>,
        finishes: Vec<Finish>,
        committed: Committed,
        wake: bool,
    },
}

/// The handle the writer keeps.
pub(super) struct Syncer {
    tx: Option<crossbeam_channel::Sender<Msg>>,
    handle: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread. Every record up to `synced` is already durable.
    pub(super) fn spawn(
        file: Arc<dyn crate::fsio::FileIo>,
        path: PathBuf,
        synced: u64,
        status: Arc<Status>,
        recent: Arc<Mutex<Recent>>,
        announcer: Arc<Announcer>,
    ) -> Result<Syncer, QueueError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("queue-sync".into())
            .spawn(move || {
                let mut thread = Thread {
                    file,
                    path,
                    synced,
                    status,
                    recent,
                    announcer,
                };
                let mut waiter = Waiter::default();
                while let Some(msgs) = waiter.batch(&rx, usize::MAX) {
                    thread.round(msgs);
                }
            })
            .map_err(|source| QueueError::Io {
                path: "queue-sync thread".into(),
                source,
            })?;
        Ok(Syncer {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Starts making every record up to `lsn` durable.
    pub(super) fn sync(&self, lsn: u64) {
        self.send(Msg::Sync(lsn));
    }

    /// Forgets that anything after `lsn` was synced: the writer will write new records there.
    /// Returns once the thread has (so no sync in flight can report the old records durable).
    pub(super) fn rewind(&self, lsn: u64) {
        let (done, wait) = std::sync::mpsc::channel();
        self.send(Msg::Rewind(lsn, done));
        let _ = wait.recv();
    }

    /// Once every record up to `after` is durable: announces `committed` (and `wake`), then
    /// sends `finishes` their answers.
    pub(super) fn reply(
        &self,
        after: u64,
        durable_since: Option<Instant>,
        finishes: Vec<Finish>,
        committed: Committed,
        wake: bool,
    ) {
        self.send(Msg::Reply {
            after,
            durable_since,
            finishes,
            committed,
            wake,
        });
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx
            && let Err(crossbeam_channel::SendError(msg)) = tx.send(msg)
        {
            // The thread is gone (it panicked): nobody will sync, so nobody may hear success.
            if let Msg::Reply { finishes, .. } = msg {
                for f in finishes {
                    f(Some(&Refusal::Storage(
                        "the queue's sync thread stopped; restart spheroseg".into(),
                    )));
                }
            }
        }
    }

    /// Sends every reply still waiting (after a last sync) and stops the thread.
    pub(super) fn stop(&mut self) {
        self.tx.take();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("queue sync thread panicked");
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Thread {
    file: Arc<dyn crate::fsio::FileIo>,
    path: PathBuf,
    /// Every record up to here is durable.
    synced: u64,
    status: Arc<Status>,
    recent: Arc<Mutex<Recent>>,
    announcer: Arc<Announcer>,
}

impl Thread {
    /// One `fdatasync` for everything the messages wait for, then their replies in order. A
    /// rewind splits the round: what came before it is synced and answered first.
    fn round(&mut self, msgs: Vec<Msg>) {
        let mut part = Vec::with_capacity(msgs.len());
        for msg in msgs {
            if let Msg::Rewind(lsn, done) = msg {
                self.part(std::mem::take(&mut part));
                self.synced = self.synced.min(lsn);
                self.status.set_synced_lsn(self.synced);
                let _ = done.send(());
            } else {
                part.push(msg);
            }
        }
        self.part(part);
    }

    fn part(&mut self, msgs: Vec<Msg>) {
        let target = msgs
            .iter()
            .map(|m| match m {
                Msg::Sync(lsn) => *lsn,
                Msg::Reply { after, .. } => *after,
                Msg::Rewind(..) => 0,
            })
            .max()
            .unwrap_or(0);
        let outcome = match self.status.failure() {
            Some(msg) => Err(Refusal::Storage(msg)),
            None if target > self.synced => match self.file.sync_data() {
                Ok(()) => {
                    self.synced = target;
                    self.status.synced();
                    self.status.set_synced_lsn(target);
                    Ok(())
                }
                Err(e) => {
                    let msg = format!(
                        "the write-ahead log {} could not be synced ({e}); the queue accepts no more changes: restart spheroseg",
                        self.path.display()
                    );
                    tracing::error!(error = %e, wal = %self.path.display(), "write-ahead log sync failed; the queue stopped");
                    self.status.fail(msg.clone());
                    Err(Refusal::Storage(msg))
                }
            },
            None => Ok(()),
        };
        for msg in msgs {
            let Msg::Reply {
                durable_since,
                finishes,
                committed,
                wake,
                ..
            } = msg
            else {
                continue;
            };
            match &outcome {
                Ok(()) => {
                    // Events before answers: a caller that hears of its change can count on
                    // its event being out.
                    self.announcer.announce(&committed, wake);
                    if let Some(since) = durable_since {
                        let us = since.elapsed().as_micros() as u64;
                        self.recent
                            .lock()
                            .expect("recent stats lock")
                            .record_commit(us);
                    }
                    for f in finishes {
                        f(None);
                    }
                }
                Err(why) => {
                    for f in finishes {
                        f(Some(why));
                    }
                }
            }
        }
    }
}
