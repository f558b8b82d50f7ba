//! The circuit breaker in front of an ML service: a plain state machine; every method takes the
//! current time, so tests drive it with made-up clocks.
//!
//! - closed → open when, inside the rolling window, at least `min_calls` calls were made and the
//!   share of failures reaches `failure_threshold`. Failures are transient errors, timeouts and
//!   calls slower than `slow_call`; permanent errors (the service said no to this image) count as
//!   calls but not as failures, since the service is working.
//! - open → half-open once the open time has passed. The open time starts at `open_base`
//!   (`ML_RESET_TIMEOUT`) and doubles with each consecutive trip up to `open_cap`; closing resets it.
//! - half-open lets `half_open_trials` calls through; as many successes close it, one failure opens
//!   it again (with the longer open time).
//! - `reset` closes it by hand, `force_open` opens it by hand.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Millis;

/// Settings of one breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    pub window: Duration,
    pub buckets: u32,
    pub min_calls: u32,
    /// 0..=1.
    pub failure_threshold: f64,
    pub slow_call: Duration,
    pub open_base: Duration,
    pub open_cap: Duration,
    pub half_open_trials: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(60),
            buckets: 10,
            min_calls: 5,
            failure_threshold: 0.5,
            slow_call: Duration::from_secs(300),
            open_base: Duration::from_secs(60),
            open_cap: Duration::from_secs(600),
            half_open_trials: 1,
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Worth retrying: refused, reset, 5xx, 429, out of GPU memory.
    Transient,
    Timeout,
    /// The service answered but refused this input: not the service's fault.
    Permanent,
}

/// A state change, for logs and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// A call was not let through; the next trial is possible at `retry_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub retry_at: Millis,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    start: Millis,
    calls: u32,
    failures: u32,
}

/// Counters since the breaker was made (or reset).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub fires: u64,
    pub successes: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub rejects: u64,
    pub slow_calls: u64,
    pub permanent_errors: u64,
    pub latency_mean: f64,
    /// Latency percentiles in ms: p50, p95, p99.
    pub percentiles: Percentiles,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    #[serde(rename = "50")]
    pub p50: f64,
    #[serde(rename = "95")]
    pub p95: f64,
    #[serde(rename = "99")]
    pub p99: f64,
}

/// What the API shows: the replaced design's shape plus our fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub state: State,
    pub enabled: bool,
    pub stats: Stats,
    /// When the current state began.
    pub since: Millis,
    /// When an open breaker lets a trial through.
    pub next_probe: Option<Millis>,
    pub consecutive_trips: u32,
    pub window_calls: u32,
    pub window_failures: u32,
}

/// One breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    since: Millis,
    open_until: Millis,
    trips: u32,
    trials_in_flight: u32,
    trial_successes: u32,
    buckets: VecDeque<Bucket>,
    stats: Stats,
    latencies: VecDeque<f64>,
    latency_sum: f64,
}

const LATENCY_WINDOW: usize = 1024;

impl Breaker {
    pub fn new(config: BreakerConfig, now: Millis) -> Self {
        Breaker {
            config,
            state: State::Closed,
            since: now,
            open_until: 0,
            trips: 0,
            trials_in_flight: 0,
            trial_successes: 0,
            buckets: VecDeque::new(),
            stats: Stats::default(),
            latencies: VecDeque::new(),
            latency_sum: 0.0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    fn set(&mut self, to: State, now: Millis) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.since = now;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        Some(Transition { from, to })
    }

    fn open_time(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.trips.min(16));
        (self.config.open_base * factor).min(self.config.open_cap)
    }

    fn trip(&mut self, now: Millis) -> Option<Transition> {
        self.open_until = now + self.open_time().as_millis() as u64;
        self.trips += 1;
        self.buckets.clear();
        self.set(State::Open, now)
    }

    /// Moves an open breaker whose time is up to half-open.
    pub fn tick(&mut self, now: Millis) -> Option<Transition> {
        if self.state == State::Open && now >= self.open_until {
            return self.set(State::HalfOpen, now);
        }
        None
    }

    /// Asks to make a call. `Ok` carries a state change the ask caused (open → half-open).
    pub fn acquire(&mut self, now: Millis) -> Result<Option<Transition>, Rejected> {
        let changed = self.tick(now);
        match self.state {
            State::Closed => Ok(changed),
            State::HalfOpen if self.trials_in_flight < self.config.half_open_trials => {
                self.trials_in_flight += 1;
                Ok(changed)
            }
            State::HalfOpen => {
                self.stats.rejects += 1;
                Err(Rejected {
                    retry_at: now + 1000,
                })
            }
            State::Open => {
                self.stats.rejects += 1;
                Err(Rejected {
                    retry_at: self.open_until,
                })
            }
        }
    }

    /// Whether a call would be let through now, without taking a trial slot.
    pub fn would_allow(&self, now: Millis) -> bool {
        match self.state {
            State::Closed => true,
            State::HalfOpen => self.trials_in_flight < self.config.half_open_trials,
            State::Open => now >= self.open_until,
        }
    }

    /// When an open breaker next lets a call through.
    pub fn next_probe(&self) -> Option<Millis> {
        (self.state == State::Open).then_some(self.open_until)
    }

    fn window_totals(&mut self, now: Millis) -> (u32, u32) {
        let window = self.config.window.as_millis() as u64;
        while self
            .buckets
            .front()
            .is_some_and(|b| b.start + window <= now)
        {
            self.buckets.pop_front();
        }
        self.buckets
            .iter()
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    /// Records how a call that was let through ended, and how long it took.
    pub fn record(
        &mut self,
        now: Millis,
        outcome: Outcome,
        latency: Duration,
    ) -> Option<Transition> {
        let slow = latency >= self.config.slow_call;
        let failed = slow || matches!(outcome, Outcome::Transient | Outcome::Timeout);
        self.stats.fires += 1;
        match outcome {
            Outcome::Success => self.stats.successes += 1,
            Outcome::Transient => self.stats.failures += 1,
            Outcome::Timeout => {
                self.stats.failures += 1;
                self.stats.timeouts += 1;
            }
            Outcome::Permanent => self.stats.permanent_errors += 1,
        }
        if slow {
            self.stats.slow_calls += 1;
        }
        let ms = latency.as_secs_f64() * 1e3;
        self.latencies.push_back(ms);
        self.latency_sum += ms;
        if self.latencies.len() > LATENCY_WINDOW
            && let Some(old) = self.latencies.pop_front()
        {
            self.latency_sum -= old;
        }

        match self.state {
            State::HalfOpen => {
                self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
                if failed {
                    self.trip(now)
                } else {
                    self.trial_successes += 1;
                    if self.trial_successes >= self.config.half_open_trials {
                        self.trips = 0;
                        self.buckets.clear();
                        self.set(State::Closed, now)
                    } else {
                        None
                    }
                }
            }
            // A call let through before the breaker opened ends while it is open: it is counted in
            // the stats but moves nothing.
            State::Open => None,
            State::Closed => {
                let width = (self.config.window.as_millis() as u64
                    / u64::from(self.config.buckets.max(1)))
                .max(1);
                let start = now - now % width;
                match self.buckets.back_mut() {
                    Some(b) if b.start == start => {
                        b.calls += 1;
                        b.failures += u32::from(failed);
                    }
                    _ => self.buckets.push_back(Bucket {
                        start,
                        calls: 1,
                        failures: u32::from(failed),
                    }),
                }
                let (calls, failures) = self.window_totals(now);
                if calls >= self.config.min_calls
                    && f64::from(failures) >= self.config.failure_threshold * f64::from(calls)
                {
                    self.trip(now)
                } else {
                    None
                }
            }
        }
    }

    /// Closes the breaker by hand and forgets the window and the trips.
    pub fn reset(&mut self, now: Millis) -> Option<Transition> {
        self.trips = 0;
        self.buckets.clear();
        self.set(State::Closed, now)
    }

    /// Opens the breaker by hand for the current open time.
    pub fn force_open(&mut self, now: Millis) -> Option<Transition> {
        self.trip(now)
    }

    pub fn snapshot(&mut self, now: Millis) -> Snapshot {
        self.tick(now);
        let (window_calls, window_failures) = self.window_totals(now);
        let mut stats = self.stats.clone();
        let mut v: Vec<f64> = self.latencies.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        stats.latency_mean = if v.is_empty() {
            0.0
        } else {
            self.latency_sum / v.len() as f64
        };
        stats.percentiles = Percentiles {
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
        };
        Snapshot {
            state: self.state,
            enabled: true,
            stats,
            since: self.since,
            next_probe: self.next_probe(),
            consecutive_trips: self.trips,
            window_calls,
            window_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(20);

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default(), 0)
    }

    fn call(b: &mut Breaker, now: Millis, o: Outcome) -> Option<Transition> {
        b.acquire(now).expect("let through");
        b.record(now, o, MS)
    }

    #[test]
    fn needs_the_minimum_calls_before_it_may_open() {
        let mut b = breaker();
        for i in 0..4 {
            assert_eq!(
                call(&mut b, i, Outcome::Transient),
                None,
                "call {i}: below the minimum"
            );
        }
        assert_eq!(b.state(), State::Closed);
        let t = call(&mut b, 5, Outcome::Transient);
        assert_eq!(
            t,
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        assert_eq!(
            b.acquire(6),
            Err(Rejected {
                retry_at: 5 + 60_000
            })
        );
        assert_eq!(b.snapshot(6).stats.rejects, 1);
    }

    #[test]
    fn opens_at_the_failure_rate_threshold_only() {
        let mut b = breaker();
        // 3 of 7 failed (43 %), and no earlier count of 5 or more reached 50 %: stays closed.
        use Outcome::{Success as S, Transient as T};
        for (i, o) in [S, S, T, S, T, S, T].into_iter().enumerate() {
            call(&mut b, i as u64, o);
        }
        assert_eq!(b.state(), State::Closed);
        // 4 of 8 (50 %): opens.
        assert!(call(&mut b, 7, Outcome::Transient).is_some());
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn permanent_errors_are_calls_but_not_failures() {
        let mut b = breaker();
        for i in 0..10 {
            call(&mut b, i, Outcome::Permanent);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot(10).stats.permanent_errors, 10);
    }

    #[test]
    fn slow_calls_and_timeouts_count_as_failures() {
        let mut b = Breaker::new(
            BreakerConfig {
                slow_call: Duration::from_secs(1),
                ..BreakerConfig::default()
            },
            0,
        );
        for i in 0..3 {
            b.acquire(i).expect("through");
            b.record(i, Outcome::Success, Duration::from_secs(2));
        }
        call(&mut b, 3, Outcome::Timeout);
        assert_eq!(b.state(), State::Closed);
        call(&mut b, 4, Outcome::Success);
        assert_eq!(b.state(), State::Open, "4 of 5 failed: 3 slow, 1 timeout");
        let s = b.snapshot(4).stats;
        assert_eq!((s.slow_calls, s.timeouts), (3, 1));
    }

    #[test]
    fn old_failures_leave_the_rolling_window() {
        let mut b = breaker();
        for i in 0..4 {
            call(&mut b, i, Outcome::Transient);
        }
        // A minute later those four are out of the window: one more failure is 1 of 1 < minimum.
        assert_eq!(call(&mut b, 61_000, Outcome::Transient), None);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot(61_000).window_calls, 1);
    }

    fn open(b: &mut Breaker, at: Millis) {
        for i in 0..5 {
            call(b, at + i, Outcome::Transient);
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn half_open_trial_success_closes_and_failure_reopens_for_longer() {
        let mut b = breaker();
        open(&mut b, 0);
        assert_eq!(b.next_probe(), Some(4 + 60_000));
        assert!(b.acquire(30_000).is_err());
        // Time is up: the next ask moves to half-open and is the one trial.
        assert_eq!(
            b.acquire(60_004),
            Ok(Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            }))
        );
        assert!(b.acquire(60_005).is_err(), "only one trial at a time");
        // The trial fails: open again, for twice as long.
        assert_eq!(
            b.record(60_010, Outcome::Transient, MS),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Open
            })
        );
        assert_eq!(b.next_probe(), Some(60_010 + 120_000));
        // Third trip: 240 s; the cap is 600 s.
        b.acquire(180_010).expect("trial");
        b.record(180_010, Outcome::Timeout, MS);
        assert_eq!(b.next_probe(), Some(180_010 + 240_000));
        b.acquire(420_010).expect("trial");
        b.record(420_010, Outcome::Transient, MS);
        assert_eq!(b.next_probe(), Some(420_010 + 480_000));
        b.acquire(900_010).expect("trial");
        b.record(900_010, Outcome::Transient, MS);
        assert_eq!(b.next_probe(), Some(900_010 + 600_000), "capped at 10 min");
        // A successful trial closes and resets the open time.
        b.acquire(1_500_010).expect("trial");
        assert_eq!(
            b.record(1_500_020, Outcome::Success, MS),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Closed
            })
        );
        open(&mut b, 1_600_000);
        assert_eq!(
            b.next_probe(),
            Some(1_600_004 + 60_000),
            "back to the base open time"
        );
    }

    #[test]
    fn several_trials_when_configured() {
        let mut b = Breaker::new(
            BreakerConfig {
                half_open_trials: 2,
                ..BreakerConfig::default()
            },
            0,
        );
        open(&mut b, 0);
        b.acquire(70_000).expect("trial 1");
        b.acquire(70_001).expect("trial 2");
        assert!(b.acquire(70_002).is_err());
        assert_eq!(b.record(70_010, Outcome::Success, MS), None, "one of two");
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.record(70_020, Outcome::Success, MS).is_some());
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn manual_reset_and_force_open() {
        let mut b = breaker();
        assert!(b.force_open(10).is_some());
        assert_eq!(b.state(), State::Open);
        assert!(b.reset(20).is_some());
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.reset(30), None, "already closed");
    }

    #[test]
    fn snapshot_has_the_replaced_shape() {
        let mut b = breaker();
        call(&mut b, 0, Outcome::Success);
        let v = serde_json::to_value(b.snapshot(1)).expect("json");
        assert_eq!(v["state"], "closed");
        assert_eq!(v["enabled"], true);
        for k in [
            "fires",
            "failures",
            "successes",
            "timeouts",
            "rejects",
            "latencyMean",
        ] {
            assert!(v["stats"].get(k).is_some(), "stats.{k}");
        }
        assert_eq!(v["stats"]["percentiles"]["50"], 20.0);
    }
}
