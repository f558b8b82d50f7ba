//! Listing jobs: one page at a time, in the order each view calls for, with an opaque cursor.

use super::{
    BY_PROJECT, DELAYED, FINISHED, JOBS, LEASES, READY, READY_TAIL, ReadyEntry, Store, decode,
};
use crate::queue::QueueError;
use crate::queue::model::{Job, JobFilter, JobId, JobState, Page};

impl Store {
    /// One page of jobs matching `filter`, at most `limit`, continuing after `cursor` (the `next`
    /// of the previous page; opaque to callers). The order is the one a person expects of each view:
    /// - no filter, a project or a name: newest first;
    /// - queued: the order they will be leased in;
    /// - delayed: the next to become queued first;
    /// - active: the lease that runs out first, first;
    /// - completed, failed, cancelled: the most recently finished first.
    pub(crate) fn list(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, QueueError> {
        let tx = self.read()?;
        let jobs = tx.open_table(JOBS)?;
        let bad = || {
            QueueError::Invalid(format!(
                "cursor {:?} is not one this listing gave",
                cursor.unwrap_or_default()
            ))
        };
        let mut out: Vec<Job> = Vec::new();
        let mut next: Option<String> = None;
        // Collects a job if it matches; stops at `limit` and returns the cursor of the last one.
        let mut take = |id: u128, key: String, out: &mut Vec<Job>| -> Result<bool, QueueError> {
            if let Some(v) = jobs.get(id)? {
                let job: Job = decode(v.value(), "job record")?;
                if filter.admits(&job) {
                    out.push(job);
                    if out.len() >= limit {
                        next = Some(key);
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        if limit == 0 {
            return Ok(Page {
                jobs: out,
                next: None,
            });
        }
        match (filter.project.as_deref(), filter.state) {
            (Some(project), _) => {
                let below = cursor.map_or(Ok(u128::MAX), |c| parse_id(c).ok_or_else(bad))?;
                let idx = tx.open_table(BY_PROJECT)?;
                for entry in idx.range((project, 0)..(project, below))?.rev() {
                    let id = entry?.0.value().1;
                    if !take(id, JobId(id).to_string(), &mut out)? {
                        break;
                    }
                }
            }
            (None, None) => {
                let below = cursor.map_or(Ok(u128::MAX), |c| parse_id(c).ok_or_else(bad))?;
                for entry in jobs.range(0..below)?.rev() {
                    let (k, v) = entry?;
                    let job: Job = decode(v.value(), "job record")?;
                    if !filter.admits(&job) {
                        continue;
                    }
                    out.push(job);
                    if out.len() >= limit {
                        next = Some(JobId(k.value()).to_string());
                        break;
                    }
                }
            }
            (None, Some(JobState::Queued)) => {
                let after = cursor.map(|c| parse_pair(c).ok_or_else(bad)).transpose()?;
                let start = after.map_or((0u8, 0u64), |(a, b)| (a as u8, b as u64 + 1));
                // The tail holds at most a spill's worth: read it whole and merge it in.
                let tail: Vec<ReadyEntry> = tx
                    .open_table(READY_TAIL)?
                    .range(start..)?
                    .map(|e| e.map(|(k, v)| (k.value(), v.value())))
                    .collect::<Result<_, _>>()?;
                let mut tail = tail.into_iter().peekable();
                let idx = tx.open_table(READY)?;
                let mut main = idx
                    .range(start..)?
                    .map(|e| e.map(|(k, v)| (k.value(), v.value())))
                    .peekable();
                loop {
                    let from_tail = match (main.peek(), tail.peek()) {
                        (Some(Ok(m)), Some(t)) => t.0 < m.0,
                        (Some(_), _) => false,
                        (None, Some(_)) => true,
                        (None, None) => break,
                    };
                    let ((inv, seq), (id, _)) = if from_tail {
                        tail.next().expect("peeked")
                    } else {
                        main.next().expect("peeked")?
                    };
                    if !take(id, format!("{inv}-{seq}"), &mut out)? {
                        break;
                    }
                }
            }
            (None, Some(state @ (JobState::Delayed | JobState::Active))) => {
                let after = cursor.map(|c| parse_pair(c).ok_or_else(bad)).transpose()?;
                let idx = tx.open_table(if state == JobState::Delayed {
                    DELAYED
                } else {
                    LEASES
                })?;
                let start = after.map_or((0u64, 0u128), |(a, b)| (a as u64, b + 1));
                for entry in idx.range(start..)? {
                    let (at, id) = entry?.0.value();
                    if !take(id, format!("{at}-{id}"), &mut out)? {
                        break;
                    }
                }
            }
            (None, Some(state)) => {
                let s = state.index();
                let before = cursor.map(|c| parse_pair(c).ok_or_else(bad)).transpose()?;
                let end = before.map_or((s, u64::MAX, u128::MAX), |(a, b)| (s, a as u64, b));
                let idx = tx.open_table(FINISHED)?;
                for entry in idx.range((s, 0, 0)..end)?.rev() {
                    let (_, at, id) = entry?.0.value();
                    if !take(id, format!("{at}-{id}"), &mut out)? {
                        break;
                    }
                }
            }
        }
        Ok(Page { jobs: out, next })
    }
}

fn parse_id(cursor: &str) -> Option<u128> {
    cursor.parse::<JobId>().ok().map(|id| id.0)
}

/// A cursor of two numbers, `a-b`.
fn parse_pair(cursor: &str) -> Option<(u128, u128)> {
    let (a, b) = cursor.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
