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

/// A call the breaker let through: hand it back to [`Breaker::record`] with how the call ended,
/// or to [`Breaker::abandon`] when no call was made, so a half-open trial slot is never lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a permit goes back to record() or abandon()"]
pub struct Permit {
    /// It holds one of the half-open state's trial slots.
    pub trial: bool,
    /// The state change asking caused (open → half-open).
    pub transition: Option<Transition>,
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

    /// Asks to make a call. When half-open, a permit reserves one of the trial slots until it is
    /// recorded or abandoned, so exactly `half_open_trials` calls are in flight at most.
    pub fn acquire(&mut self, now: Millis) -> Result<Permit, Rejected> {
        let changed = self.tick(now);
        match self.state {
            State::Closed => Ok(Permit {
                trial: false,
                transition: changed,
            }),
            State::HalfOpen if self.trials_in_flight < self.config.half_open_trials => {
                self.trials_in_flight += 1;
                Ok(Permit {
                    trial: true,
                    transition: changed,
                })
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

    /// Whether [`Breaker::acquire`] would let a call through now (it changes nothing).
    pub fn admits(&self, now: Millis) -> bool {
        match self.state {
            State::Closed => true,
            State::Open => now >= self.open_until,
            State::HalfOpen => self.trials_in_flight < self.config.half_open_trials,
        }
    }

    /// Gives back a permit that made no call (its job was stopped first): a trial slot is free
    /// again.
    pub fn abandon(&mut self, permit: Permit) {
        if permit.trial && self.state == State::HalfOpen {
            self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
        }
    }

    /// When a rejected call may be tried again: the end of the open time, or, half-open, once a
    /// trial in flight ended (in about a second).
    pub fn retry_at(&self, now: Millis) -> Millis {
        match self.state {
            State::Open => self.open_until.max(now),
            _ => now + 1000,
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
        permit: Permit,
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
            // A call let through while closed that ends after the breaker opened and went
            // half-open: counted in the stats, but it is not a trial.
            State::HalfOpen if !permit.trial => None,
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
mod tests;
