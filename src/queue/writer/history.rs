//! Each job's history, written from the transitions the batch recorded for the queue's listener
//! (`Batch::record`), so history and events come from the same record and cannot disagree. Once
//! per batch (`Batch::flush`): each job's record is read, extended and written once, however many
//! of its transitions the batch holds. An enqueue and a lease write nothing: the job record holds
//! them, and a lease is stored with the job's next transition (`History::catch_up`). A job
//! deleted in the batch loses its history with it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use redb::ReadableTable;

use super::Batch;
use crate::queue::QueueError;
use crate::queue::model::{
    Change, History, HistoryEntry, JobId, Millis, Priority, Requeue, Transition,
};
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
            if matches!(t.change, Change::Queued | Change::Started) || deleted.contains(&id) {
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
            let (attempts, priority) = at_start(t);
            h.catch_up(&t.job, attempts, priority);
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

/// The attempts spent and the priority when the job's current lease started, from the job as
/// the transition `t` left it: a hand-back refunded the attempt, a priority change while it ran
/// says what the priority was.
fn at_start(t: &Transition) -> (u32, Priority) {
    let j = &t.job;
    let refunded = matches!(
        t.change,
        Change::Held
            | Change::Interrupted
            | Change::Requeued {
                reason: Requeue::Orphan
            }
    );
    let priority = match t.change {
        Change::PriorityChanged { from } => from,
        _ => j.priority,
    };
    (j.attempts + u32::from(refunded), priority)
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
        // Only a lease's entry names the segmenter (`History::catch_up`).
        segmenter: None,
        error: if t.change.keeps_error() {
            j.last_error.clone()
        } else {
            None
        },
    }
}
