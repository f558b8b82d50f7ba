use super::*;

const MS: Duration = Duration::from_millis(20);

fn breaker() -> Breaker {
    Breaker::new(BreakerConfig::default(), 0)
}

fn call(b: &mut Breaker, now: Millis, o: Outcome) -> Option<Transition> {
    let p = b.acquire(now).expect("let through");
    b.record(now, p, o, MS)
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
        let p = b.acquire(i).expect("through");
        b.record(i, p, Outcome::Success, Duration::from_secs(2));
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
    let trial = b.acquire(60_004).expect("the trial");
    assert_eq!(
        trial,
        Permit {
            trial: true,
            transition: Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            })
        }
    );
    assert!(b.acquire(60_005).is_err(), "only one trial at a time");
    // The trial fails: open again, for twice as long.
    assert_eq!(
        b.record(60_010, trial, Outcome::Transient, MS),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open
        })
    );
    assert_eq!(b.next_probe(), Some(60_010 + 120_000));
    // Third trip: 240 s; the cap is 600 s.
    let p = b.acquire(180_010).expect("trial");
    b.record(180_010, p, Outcome::Timeout, MS);
    assert_eq!(b.next_probe(), Some(180_010 + 240_000));
    let p = b.acquire(420_010).expect("trial");
    b.record(420_010, p, Outcome::Transient, MS);
    assert_eq!(b.next_probe(), Some(420_010 + 480_000));
    let p = b.acquire(900_010).expect("trial");
    b.record(900_010, p, Outcome::Transient, MS);
    assert_eq!(b.next_probe(), Some(900_010 + 600_000), "capped at 10 min");
    // A successful trial closes and resets the open time.
    let p = b.acquire(1_500_010).expect("trial");
    assert_eq!(
        b.record(1_500_020, p, Outcome::Success, MS),
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
    let p1 = b.acquire(70_000).expect("trial 1");
    let p2 = b.acquire(70_001).expect("trial 2");
    assert!(b.acquire(70_002).is_err());
    assert_eq!(
        b.record(70_010, p1, Outcome::Success, MS),
        None,
        "one of two"
    );
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.record(70_020, p2, Outcome::Success, MS).is_some());
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn half_open_admits_exactly_its_trials_and_an_abandoned_one_frees_its_slot() {
    let mut b = breaker();
    open(&mut b, 0);
    let trial = b.acquire(70_000).expect("the one trial");
    for t in 70_001..70_100 {
        assert!(
            b.acquire(t).is_err(),
            "a second call is refused while the trial runs"
        );
    }
    b.abandon(trial);
    let again = b.acquire(70_200).expect("the slot is free again");
    assert!(again.trial);
    // A call let through while closed, ending while half-open, moves nothing.
    let mut b = breaker();
    let early = b.acquire(0).expect("closed");
    open(&mut b, 1);
    let trial = b.acquire(70_000).expect("trial");
    assert_eq!(b.record(70_001, early, Outcome::Transient, MS), None);
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.record(70_002, trial, Outcome::Success, MS).is_some());
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
