//! The queue's time policies: how long a job waits between attempts (exponential backoff with
//! a jitter that is a function of the job, so tests can predict it), and how long finished jobs
//! are kept (retention, per state).

use std::time::Duration;

use super::{JobId, JobState};

/// Exponential backoff with jitter between attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub factor: f64,
    /// Fraction either side, e.g. 0.2 for ±20 %.
    pub jitter: f64,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            factor: 2.0,
            jitter: 0.2,
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after the `spent`-th failed attempt (1-based). The jitter is a deterministic
    /// function of the job id and attempt, so jobs failing together spread out but a test can
    /// predict the value.
    pub fn delay(&self, id: JobId, spent: u32) -> Duration {
        let exp = self.factor.powi(spent.saturating_sub(1).min(64) as i32);
        let raw = self.base.as_secs_f64() * exp;
        let unit = splitmix64((id.0 as u64) ^ ((id.0 >> 64) as u64) ^ u64::from(spent));
        let r = (unit >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let jittered = raw * (1.0 + self.jitter * (2.0 * r - 1.0));
        Duration::from_secs_f64(jittered.min(self.cap.as_secs_f64()).max(0.0))
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How long finished jobs of one state are kept: `None` is no limit of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limit {
    /// Older than this (since they finished) go.
    pub age: Option<Duration>,
    /// Beyond the newest this many go.
    pub count: Option<u64>,
}

/// Retention of finished jobs, per state. Completed jobs hold the lab's results: by default they
/// are kept until a person deletes them. Failed and cancelled jobs go after 30 days, and beyond
/// the newest 100,000.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub completed: Limit,
    pub failed: Limit,
    pub cancelled: Limit,
}

impl Default for Retention {
    fn default() -> Self {
        let month = Limit {
            age: Some(Duration::from_secs(30 * 86_400)),
            count: Some(100_000),
        };
        Retention {
            completed: Limit::default(),
            failed: month,
            cancelled: month,
        }
    }
}

impl Retention {
    /// The limit of a finished state; `None` for the others.
    pub(crate) fn of(&self, state: JobState) -> Option<Limit> {
        match state {
            JobState::Completed => Some(self.completed),
            JobState::Failed => Some(self.failed),
            JobState::Cancelled => Some(self.cancelled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_results_are_kept_by_default() {
        let r = Retention::default();
        assert_eq!(r.completed, Limit::default(), "no age, no count limit");
        assert_eq!(r.of(JobState::Completed), Some(Limit::default()));
        assert!(r.failed.age.is_some() && r.cancelled.count.is_some());
        assert_eq!(r.of(JobState::Queued), None);
    }

    #[test]
    fn backoff_grows_by_its_factor_within_jitter_and_cap() {
        let b = Backoff::default();
        let id = JobId(42);
        for spent in 1..=12u32 {
            let d = b.delay(id, spent).as_secs_f64();
            let raw = 2.0 * 2f64.powi(spent as i32 - 1);
            assert!(d <= 300.0, "capped at 5 min, got {d}");
            if raw * 1.2 < 300.0 {
                assert!(
                    d >= raw * 0.8 && d <= raw * 1.2,
                    "attempt {spent}: {d} vs {raw}"
                );
            }
        }
        // Different jobs get different jitter.
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| b.delay(JobId(i), 1).as_millis() as u64)
            .collect();
        assert!(spread.len() > 40);
    }
}
