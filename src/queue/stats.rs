//! Queue statistics: the O(1) counts come from the store's counters table; throughput and wait/run
//! percentiles come from a bounded in-memory window the writer feeds after each commit (so they
//! cover this process's life only, which is what a dashboard's "last 15 minutes" means anyway).

use std::collections::VecDeque;

use serde::Serialize;

use super::model::{JobState, Millis};

/// How many recent wait and run durations the percentiles are taken over.
const WINDOW: usize = 2048;
/// Per-minute buckets kept: the 1/5/15-minute throughput and the last hour's series.
const MINUTES: usize = 61;

/// Jobs per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StateCounts {
    pub queued: u64,
    pub delayed: u64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StateCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Delayed => self.delayed,
            JobState::Active => self.active,
            JobState::Completed => self.completed,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
        }
    }

    pub(crate) fn slot(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Queued => &mut self.queued,
            JobState::Delayed => &mut self.delayed,
            JobState::Active => &mut self.active,
            JobState::Completed => &mut self.completed,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
        }
    }

    pub fn total(&self) -> u64 {
        JobState::ALL.iter().map(|&s| self.get(s)).sum()
    }
}

/// Finished jobs over the last 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Throughput {
    pub last_1m: u64,
    pub last_5m: u64,
    pub last_15m: u64,
}

/// Median and 95th percentile in milliseconds, over the recent window; `None` before any sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub samples: usize,
}

/// Durable commit time in microseconds; `None` before any commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommitLatency {
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub samples: usize,
}

/// Everything `Queue::stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub counts: StateCounts,
    /// `by_priority[state][priority - 1]`.
    pub by_priority: Vec<(JobState, [u64; 10])>,
    /// Age of the longest-waiting queued job.
    pub oldest_queued_ms: Option<u64>,
    pub paused: bool,
    pub completed: Throughput,
    /// Jobs that failed for good (a cancellation is not a failure and is not counted).
    pub failed: Throughput,
    /// Jobs completed in each of the last 60 minutes, oldest first (the current minute last).
    pub completed_per_minute: Vec<u64>,
    /// From becoming queued to being leased.
    pub wait: Percentiles,
    /// From being leased to completing.
    pub run: Percentiles,
    /// How long durable commits took, over the recent window.
    pub commit: CommitLatency,
    pub database_bytes: u64,
    /// The writer's work since the queue opened.
    pub log: LogStats,
}

/// Counters of the writer and its write-ahead log since the queue opened. `commands / batches` is
/// how many commands a transaction carries (group commit); `commands / syncs` how many a sync does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    /// Transactions committed.
    pub batches: u64,
    /// Commands those transactions carried.
    pub commands: u64,
    /// `fdatasync` calls on the log.
    pub syncs: u64,
    /// Durable redb commits that made the log's records redundant.
    pub checkpoints: u64,
    /// Bytes of the log written since the last checkpoint.
    pub log_bytes: u64,
    pub log_capacity: u64,
}

impl QueueStats {
    pub(crate) fn from_counts(raw: [[u64; 10]; 6]) -> Self {
        let mut stats = QueueStats::default();
        for state in JobState::ALL {
            let row = raw[state.index() as usize];
            *stats.counts.slot(state) = row.iter().sum();
            stats.by_priority.push((state, row));
        }
        stats
    }
}

/// The bounded window of recent durations and per-minute finish counts.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    waits: VecDeque<u64>,
    runs: VecDeque<u64>,
    commits: VecDeque<u64>,
    /// `(minute since epoch, completed, failed)`, newest last.
    minutes: VecDeque<(u64, u64, u64)>,
}

impl Recent {
    pub(crate) fn record_commit(&mut self, us: u64) {
        push_bounded(&mut self.commits, us);
    }

    pub(crate) fn record_wait(&mut self, ms: u64) {
        push_bounded(&mut self.waits, ms);
    }

    /// A job that became `state` (completed, failed or cancelled) at `now`, after running
    /// `run_ms`. A cancellation is a person's choice, not a failure: it is in neither count, and
    /// the run it stopped is not a run time.
    pub(crate) fn record_finish(&mut self, now: Millis, run_ms: Option<u64>, state: JobState) {
        let (completed, failed) = match state {
            JobState::Completed => (1, 0),
            JobState::Failed => (0, 1),
            _ => return,
        };
        if let Some(ms) = run_ms {
            push_bounded(&mut self.runs, ms);
        }
        let minute = now / 60_000;
        match self.minutes.back_mut() {
            Some((m, c, f)) if *m == minute => {
                *c += completed;
                *f += failed;
            }
            _ => {
                self.minutes.push_back((minute, completed, failed));
                if self.minutes.len() > MINUTES {
                    self.minutes.pop_front();
                }
            }
        }
    }

    pub(crate) fn fill(&self, now: Millis, stats: &mut QueueStats) {
        let minute = now / 60_000;
        let sum = |span: u64, pick: fn(&(u64, u64, u64)) -> u64| -> u64 {
            self.minutes
                .iter()
                .filter(|e| minute.saturating_sub(e.0) < span)
                .map(pick)
                .sum()
        };
        stats.completed = Throughput {
            last_1m: sum(1, |e| e.1),
            last_5m: sum(5, |e| e.1),
            last_15m: sum(15, |e| e.1),
        };
        stats.failed = Throughput {
            last_1m: sum(1, |e| e.2),
            last_5m: sum(5, |e| e.2),
            last_15m: sum(15, |e| e.2),
        };
        stats.completed_per_minute = (0..60u64)
            .rev()
            .map(|back| {
                self.minutes
                    .iter()
                    .find(|e| e.0 + back == minute)
                    .map_or(0, |e| e.1)
            })
            .collect();
        stats.wait = percentiles(&self.waits);
        stats.run = percentiles(&self.runs);
        let p = percentiles(&self.commits);
        stats.commit = CommitLatency {
            p50_us: p.p50_ms,
            p95_us: p.p95_ms,
            samples: p.samples,
        };
    }
}

fn push_bounded(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

fn percentiles(q: &VecDeque<u64>) -> Percentiles {
    if q.is_empty() {
        return Percentiles::default();
    }
    // Two selections instead of a sort: stats() runs on every /api/queue and health request.
    let mut v: Vec<u64> = q.iter().copied().collect();
    let mut at = |p: f64| {
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        *v.select_nth_unstable(i).1
    };
    Percentiles {
        p50_ms: Some(at(0.50)),
        p95_ms: Some(at(0.95)),
        samples: q.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_by_minute_windows() {
        let mut r = Recent::default();
        let t0 = 100 * 60_000;
        r.record_finish(t0, Some(10), JobState::Completed);
        r.record_finish(t0 + 3 * 60_000, Some(20), JobState::Completed);
        r.record_finish(t0 + 10 * 60_000, Some(30), JobState::Failed);
        r.record_finish(t0 + 14 * 60_000, Some(40), JobState::Completed);
        // Cancellations count nowhere (nine of them once showed as nine failures).
        for _ in 0..9 {
            r.record_finish(t0 + 14 * 60_000, Some(50), JobState::Cancelled);
        }
        let mut s = QueueStats::default();
        r.fill(t0 + 14 * 60_000 + 5, &mut s);
        assert_eq!(
            s.completed,
            Throughput {
                last_1m: 1,
                last_5m: 1,
                last_15m: 3
            }
        );
        assert_eq!(
            s.failed,
            Throughput {
                last_1m: 0,
                last_5m: 1,
                last_15m: 1
            }
        );
        assert_eq!(s.run.samples, 4);
        assert_eq!(s.completed_per_minute.len(), 60);
        assert_eq!(s.completed_per_minute[59], 1, "this minute");
        assert_eq!(
            s.completed_per_minute[59 - 11],
            1,
            "three minutes after the first"
        );
        assert_eq!(s.completed_per_minute.iter().sum::<u64>(), 3);
        assert_eq!(s.run.p50_ms, Some(30));
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let mut r = Recent::default();
        for ms in 1..=100 {
            r.record_wait(ms);
        }
        let mut s = QueueStats::default();
        r.fill(0, &mut s);
        assert_eq!(s.wait.p50_ms, Some(51));
        assert_eq!(s.wait.p95_ms, Some(95));
        assert_eq!(s.run, Percentiles::default());
    }

    #[test]
    fn window_is_bounded() {
        let mut r = Recent::default();
        for ms in 0..(WINDOW as u64 * 3) {
            r.record_wait(ms);
        }
        assert_eq!(r.waits.len(), WINDOW);
    }
}
