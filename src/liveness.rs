//! A [`Beat`]: the time a loop last went round, which the loop bumps at the top of each round and
//! the systemd watchdog (`systemd.rs`) reads. Only the loop itself bumps it, so a loop that is
//! stuck (awaiting something that never comes, or gone after a panic) shows as a growing age.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a loop last went round, on the monotonic clock.
#[derive(Debug)]
pub struct Beat {
    origin: Instant,
    /// Microseconds from `origin` to the last round.
    last_us: AtomicU64,
}

impl Default for Beat {
    fn default() -> Self {
        Beat {
            origin: Instant::now(),
            last_us: AtomicU64::new(0),
        }
    }
}

impl Beat {
    /// The loop went round now.
    pub fn beat(&self) {
        let us = self.origin.elapsed().as_micros() as u64;
        self.last_us.store(us, Ordering::Relaxed);
    }

    /// How long ago the loop last went round (since the beat was made, if it never did).
    pub fn age(&self) -> Duration {
        let last = Duration::from_micros(self.last_us.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_resets_the_age() {
        let b = Beat::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(b.age() >= Duration::from_millis(20));
        b.beat();
        assert!(b.age() < Duration::from_millis(20));
    }
}
