//! Marks (`model::Mark`): records another part of spheroseg keeps beside the jobs, written in
//! the same transaction as the jobs they name. Checked whole before the first write, like every
//! operation, so a refused call leaves nothing behind.

use super::Batch;
use crate::queue::QueueError;
use crate::queue::model::{Enqueued, Mark, NewJob};

/// The longest mark key.
const MAX_KEY: usize = 4096;
/// The largest mark value (before the job ids).
const MAX_VALUE: usize = 1 << 20;

impl Batch<'_> {
    /// Enqueues `jobs` as [`Batch::enqueue`] does, then stores or removes each mark, the ids of
    /// the jobs it names appended to its value.
    pub(super) fn enqueue_marked(
        &mut self,
        jobs: Vec<NewJob>,
        marks: Vec<Mark>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        for (i, m) in marks.iter().enumerate() {
            check(m, jobs.len())
                .map_err(|e| QueueError::Invalid(format!("mark {}: {e}", i + 1)))?;
        }
        let done = if jobs.is_empty() {
            Vec::new()
        } else {
            self.enqueue(jobs)?
        };
        for m in marks {
            match m.value {
                None => {
                    self.t.marks()?.remove(m.key.as_str())?;
                }
                Some(mut value) => {
                    for &i in &m.jobs {
                        value.extend_from_slice(&done[i].job.id.0.to_le_bytes());
                    }
                    self.t.marks()?.insert(m.key.as_str(), value.as_slice())?;
                }
            }
        }
        Ok(done)
    }
}

fn check(m: &Mark, jobs: usize) -> Result<(), String> {
    if m.key.is_empty() || m.key.len() > MAX_KEY {
        return Err(format!("the key must be 1 to {MAX_KEY} bytes long"));
    }
    if m.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
        return Err(format!("the value is larger than {MAX_VALUE} bytes"));
    }
    if m.value.is_none() && !m.jobs.is_empty() {
        return Err("a removal names no jobs".into());
    }
    if let Some(&i) = m.jobs.iter().find(|&&i| i >= jobs) {
        return Err(format!("names job {i} of an enqueue of {jobs}"));
    }
    Ok(())
}
