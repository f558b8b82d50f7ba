//! Leases: fencing a late finisher out, heartbeats, expiry, and handing a job back (a shutdown
//! interrupts it, an open breaker holds it) without spending its attempt.

use super::*;

/// Fencing: attempt 1's lease expires, attempt 2 is leased, and attempt 1 finishing late is
/// refused; attempt 2 completes.
#[tokio::test]
async fn a_late_finisher_of_an_expired_attempt_is_fenced_out() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let first = f.lease_one().await;
    assert_eq!(first.token, LeaseToken(1));
    f.clock.advance(TTL + Duration::from_secs(1));
    let swept = f.queue.sweep().await.expect("sweep");
    assert_eq!(swept.expired, vec![j.id]);
    let after = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(after.state, JobState::Queued);
    assert_eq!(
        after.last_error.as_ref().map(|e| e.code.as_str()),
        Some(ErrorCode::LEASE_EXPIRED.as_str())
    );
    let second = f.lease_one().await;
    assert_eq!(second.token, LeaseToken(2));

    let late = f
        .queue
        .complete(j.id, LeaseToken(1), b"late".to_vec(), 0)
        .await;
    assert!(
        matches!(
            late,
            Err(QueueError::Stale {
                token: LeaseToken(1),
                current: LeaseToken(2),
                ..
            })
        ),
        "{late:?}"
    );
    let late_fail = f.queue.fail(j.id, LeaseToken(1), transient()).await;
    assert!(matches!(late_fail, Err(QueueError::Stale { .. })));
    let late_interrupt = f.queue.interrupt(j.id, LeaseToken(1)).await;
    assert!(matches!(late_interrupt, Err(QueueError::Stale { .. })));

    f.queue
        .complete(j.id, LeaseToken(2), b"ok".to_vec(), 0)
        .await
        .expect("current attempt completes");
    assert_eq!(f.queue.result(j.id).expect("result"), Some(b"ok".to_vec()));
}

#[tokio::test]
async fn heartbeats_keep_a_lease_and_report_lost_ones() {
    let f = Fixture::new();
    let a = f.add(5).await;
    let b = f.add(5).await;
    let la = f.lease_one().await;
    let lb = f.lease_one().await;
    f.clock.advance(Duration::from_secs(20));
    let lost = f
        .queue
        .heartbeat(vec![(a.id, la.token), (b.id, lb.token)], TTL)
        .await
        .expect("heartbeat");
    assert!(lost.is_empty());
    f.clock.advance(Duration::from_secs(20)); // 40 s after lease, 20 s after heartbeat
    assert!(f.queue.sweep().await.expect("sweep").expired.is_empty());
    assert_eq!(f.state(a.id), JobState::Active);

    f.queue.cancel(b.id).await.expect("cancel");
    let lost = f
        .queue
        .heartbeat(
            vec![
                (a.id, la.token),
                (b.id, lb.token),
                (JobId(7), LeaseToken(1)),
            ],
            TTL,
        )
        .await
        .expect("heartbeat");
    assert_eq!(lost, vec![b.id, JobId(7)]);
}

#[tokio::test]
async fn an_expired_lease_with_no_attempts_left_fails() {
    let f = Fixture::new();
    let j = f
        .queue
        .enqueue(NewJob {
            max_attempts: Some(1),
            ..job(5)
        })
        .await
        .expect("enqueue")
        .job;
    f.lease_one().await;
    f.clock.advance(TTL);
    let swept = f.queue.sweep().await.expect("sweep");
    assert_eq!(swept.expired, vec![j.id]);
    let failed = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.last_error.map(|e| e.code),
        Some(ErrorCode::LEASE_EXPIRED.as_str().to_owned())
    );
}

#[tokio::test]
async fn an_interrupted_job_is_queued_again_with_its_attempt_refunded() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let l = f.lease_one().await;
    assert_eq!(l.job.attempts, 1);
    let back = f.queue.interrupt(j.id, l.token).await.expect("interrupt");
    assert_eq!((back.state, back.attempts), (JobState::Queued, 0));
    let again = f.lease_one().await;
    assert_eq!(again.token, LeaseToken(2), "the fence still moves on");
    assert!(matches!(
        f.queue.interrupt(j.id, l.token).await,
        Err(QueueError::Stale { .. })
    ));
}

#[tokio::test]
async fn release_holds_a_job_back_without_spending_its_attempt() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let l = f.lease_one().await;
    let held = f
        .queue
        .release(
            j.id,
            l.token,
            T0 + 60_000,
            JobError::transient(ErrorCode::BREAKER_OPEN, "held"),
        )
        .await
        .expect("release");
    assert_eq!(held.state, JobState::Delayed);
    assert_eq!(held.attempts, 0);
    assert!(f.queue.lease(1, TTL).await.expect("lease").is_empty());
    f.clock.advance(Duration::from_secs(60));
    let again = f.lease_one().await;
    assert_eq!(again.token, LeaseToken(2), "fencing still moves on");
    assert_eq!(again.job.attempts, 1);
    let stale = f.queue.release(j.id, LeaseToken(1), T0, transient()).await;
    assert!(matches!(stale, Err(QueueError::Stale { .. })));
    assert!(f.queue.image_referenced("abc123").expect("read"));
    assert!(!f.queue.image_referenced("nope").expect("read"));
}

/// `lease_where` asks about each job in lease order and stops at the first it refuses: that job
/// and the ones behind it stay queued, untouched (no attempt, no lease).
#[tokio::test]
async fn lease_where_stops_at_the_first_job_that_does_not_fit() {
    let f = Fixture::new();
    let mut ml = job(9);
    ml.segmenter = SegmenterId::new("http").expect("name");
    let ml = f.queue.enqueue(ml).await.expect("enqueue").job;
    let builtin = f.add(5).await;
    // The ML service has no free slot: nothing is leased, not even the builtin job behind it.
    let full: Admit = Box::new(|name: &SegmenterId| name.is_builtin());
    assert!(
        f.queue
            .lease_where(2, TTL, full)
            .await
            .expect("lease")
            .is_empty()
    );
    let after = f.queue.get(ml.id).expect("get").expect("exists");
    assert_eq!((after.state, after.attempts), (JobState::Queued, 0));
    // One slot: the ML job, then the builtin one.
    let mut slots = 1;
    let one: Admit = Box::new(move |name: &SegmenterId| {
        name.is_builtin() || std::mem::replace(&mut slots, 0) == 1
    });
    let leased = f.queue.lease_where(5, TTL, one).await.expect("lease");
    let ids: Vec<JobId> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(ids, vec![ml.id, builtin.id]);
}

/// `lease_routed` holds a job its test says no service can take: delayed until then with the
/// reason, never leased (no attempt, no lease), and the jobs behind it are leased.
#[tokio::test]
async fn lease_routed_holds_a_job_without_leasing_it_and_goes_on() {
    let f = Fixture::new();
    let mut ml = job(9);
    ml.segmenter = SegmenterId::new("resunet").expect("name");
    let ml = f.queue.enqueue(ml).await.expect("enqueue").job;
    let builtin = f.add(5).await;
    let until = f.clock.now() + 5_000;
    let route: Route = Box::new(move |name: &SegmenterId| {
        if name.is_builtin() {
            Fit::Take
        } else {
            Fit::Hold {
                until,
                reason: JobError::transient(ErrorCode::BREAKER_OPEN, "resunet is unavailable"),
            }
        }
    });
    let leased = f.queue.lease_routed(1, TTL, route).await.expect("lease");
    let ids: Vec<JobId> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(ids, vec![builtin.id]);
    let held = f.queue.get(ml.id).expect("get").expect("exists");
    assert_eq!(
        (held.state, held.attempts, held.lease, held.run_at),
        (JobState::Delayed, 0, LeaseToken(0), Some(until))
    );
    assert_eq!(
        held.last_error.as_ref().map(|e| e.code.as_str()),
        Some(ErrorCode::BREAKER_OPEN.as_str())
    );
    // Due again, it is queued and leased like any other.
    f.clock.advance(Duration::from_secs(6));
    let again = f.lease_one().await;
    assert_eq!((again.job.id, again.job.attempts), (ml.id, 1));
}

/// A skipped job stays queued and the jobs behind it at its priority are leased, but none of a
/// lower priority (strict priority between levels).
#[tokio::test]
async fn lease_routed_skips_within_a_priority_level_only() {
    let f = Fixture::new();
    let mut ml = job(5);
    ml.segmenter = SegmenterId::new("resunet").expect("name");
    let ml = f.queue.enqueue(ml).await.expect("enqueue").job;
    let same = f.add(5).await;
    let lower = f.add(3).await;
    let route = || -> Route {
        Box::new(|name: &SegmenterId| {
            if name.is_builtin() {
                Fit::Take
            } else {
                Fit::Skip
            }
        })
    };
    let leased = f.queue.lease_routed(5, TTL, route()).await.expect("lease");
    let ids: Vec<JobId> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(
        ids,
        vec![same.id],
        "the builtin job beside it, not the lower one"
    );
    let waiting = f.queue.get(ml.id).expect("get").expect("exists");
    assert_eq!((waiting.state, waiting.attempts), (JobState::Queued, 0));
    assert_eq!(
        f.queue.get(lower.id).expect("get").expect("exists").state,
        JobState::Queued
    );
    // Next time round the level holds only the skipped job: still nothing lower.
    let again = f.queue.lease_routed(5, TTL, route()).await.expect("lease");
    assert!(again.is_empty(), "{again:?}");
}
