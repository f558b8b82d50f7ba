//! A backup's part on the writer thread: between two batches, a checkpoint (a durable redb commit
//! that includes every batch so far, so the log holds nothing the file lacks), then a copy of
//! the file, then the caller's `hold` (the image files), all before the next batch begins. No
//! write transaction runs meanwhile, so the copy is the state of one moment: every change
//! acknowledged before the backup was asked for, and perhaps a few whose answers were still on
//! their way. Readers go on; writers wait for as long as the copy takes.

use std::path::Path;
use std::time::Instant;

use super::super::QueueError;
use super::{Copied, Hold, Op, Writer};

impl Writer {
    /// Runs `ops` in order: batches of the commands between backups, each backup on its own.
    pub(super) fn run(&mut self, ops: Vec<Op>) {
        let mut batch = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Backup { to, hold, reply } => {
                    if !batch.is_empty() {
                        self.run_batch(std::mem::take(&mut batch));
                    }
                    // The caller may have gone away; the copy is then its to remove.
                    let _ = reply.send(self.backup(&to, hold));
                }
                op => batch.push(op),
            }
        }
        if !batch.is_empty() {
            self.run_batch(batch);
        }
    }

    fn backup(&mut self, to: &Path, hold: Option<Hold>) -> Result<Copied, QueueError> {
        if let Some(why) = self.refusal() {
            return Err(why.error());
        }
        let started = Instant::now();
        let store = self.slot.get()?;
        let from = store.path.clone();
        let tx = store.db.begin_write()?;
        drop(store);
        if let Err(e) = self.checkpoint(tx, false) {
            return Err(match e.classify() {
                e @ QueueError::DiskFull { .. } => self.short_of_space(e),
                e => {
                    self.fail_stop(&e);
                    e
                }
            });
        }
        let bytes = copy_synced(&from, to)?;
        if let Some(hold) = hold {
            hold().map_err(|source| QueueError::Io {
                path: to.parent().unwrap_or(to).to_owned(),
                source,
            })?;
        }
        let paused = started.elapsed();
        tracing::info!(
            to = %to.display(),
            bytes,
            paused_ms = paused.as_millis() as u64,
            "database copied for a backup"
        );
        Ok(Copied { bytes, paused })
    }
}

/// Copies `from` to a new file `to` and makes it durable.
fn copy_synced(from: &Path, to: &Path) -> Result<u64, QueueError> {
    let io = |source| QueueError::Io {
        path: to.to_owned(),
        source,
    };
    let mut src = std::fs::File::open(from).map_err(|source| QueueError::Io {
        path: from.to_owned(),
        source,
    })?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(io)?;
    let bytes = std::io::copy(&mut src, &mut dst).map_err(io)?;
    dst.sync_all().map_err(io)?;
    Ok(bytes)
}
