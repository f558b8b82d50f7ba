//! Each job's history, written from the transitions the batch recorded for the queue's listener
//! (`Batch::record`), so history and events come from the same record and cannot disagree. Once
//! per batch (`Batch::flush`): each job's record is read, extended and written once, however many
//! of its transitions the batch holds. An enqueue writes nothing (the job record says when it
//! was queued: `History::with_enqueue`). A job deleted in the batch loses its history with it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use redb::ReadableTable;

use super::Batch;
use crate::queue::QueueError;
use crate::queue::model::{Change, History, HistoryEntry, JobId, Millis, Transition};
use crate::queue::store::{decode_history, encode_history};

impl Batch<'_> {
    /// Appends the transitions recorded since the last call to their jobs' histories, and
    /// removes the histories of the jobs deleted since then.
    pub(super) fn write_history(&mut self) -> Result<(), QueueError> {
        let (from, deleted_from) = self.history_at;
        let transitions = &self.committed.transitions[from..];
        let deleted: HashSet<JobId> = self.committed.deleted[deleted_from..]
            .iter()
            .copied()
            .collect();
        let mut changed: HashMap<JobId, History> = HashMap::new();
        // First-seen order, so the writes (and the log record) do not depend on hashing.
        let mut order: Vec<JobId> = Vec::new();
        for t in transitions {
            let id = t.job.id;
            if t.change == Change::Queued || deleted.contains(&id) {
                continue;
            }
            let h = match changed.entry(id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    order.push(id);
                    e.insert(match self.t.history()?.get(id.0)? {
                        Some(v) => decode_history(v.value())?,
                        None => History::default(),
                    })
                }
            };
            h.push(entry(t, self.now));
        }
        for id in order {
            if let Some(h) = changed.get(&id) {
                self.t
                    .history()?
                    .insert(id.0, encode_history(h).as_slice())?;
            }
        }
        for id in &deleted {
            self.t.history()?.remove(id.0)?;
        }
        self.history_at = (
            self.committed.transitions.len(),
            self.committed.deleted.len(),
        );
        Ok(())
    }
}

/// What a job's history keeps of a transition committed at `now`.
fn entry(t: &Transition, now: Millis) -> HistoryEntry {
    let j = &t.job;
    HistoryEntry {
        at: now,
        change: t.change,
        state: j.state,
        priority: j.priority,
        attempts: j.attempts,
        lease: j.lease,
        segmenter: (t.change == Change::Started).then(|| j.segmenter.clone()),
        error: if t.change.keeps_error() {
            j.last_error.clone()
        } else {
            None
        },
    }
}
