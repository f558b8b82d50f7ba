//! Unit tests of every queue transition, on a real redb file in a temp dir and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::error_code::ErrorCode;

const T0: Millis = 1_800_000_000_000;
const TTL: Duration = Duration::from_secs(30);

struct Fixture {
    dir: tempfile::TempDir,
    clock: ManualClock,
    queue: Queue,
    options: QueueOptions,
}

impl Fixture {
    fn new() -> Self {
        Self::with(QueueOptions::default())
    }

    fn with(options: QueueOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let (queue, _) = Queue::open(
            &dir.path().join("q.redb"),
            options.clone(),
            Arc::new(clock.clone()),
        )
        .expect("open");
        Fixture {
            dir,
            clock,
            queue,
            options,
        }
    }

    fn reopen(&mut self) -> Recovery {
        self.queue.close();
        let (queue, recovery) = Queue::open(
            &self.dir.path().join("q.redb"),
            self.options.clone(),
            Arc::new(self.clock.clone()),
        )
        .expect("reopen");
        self.queue = queue;
        recovery
    }

    async fn add(&self, priority: u8) -> Job {
        self.queue
            .enqueue(job(priority))
            .await
            .expect("enqueue")
            .job
    }

    async fn lease_one(&self) -> Lease {
        let mut v = self.queue.lease(1, TTL).await.expect("lease");
        assert_eq!(v.len(), 1, "expected a job to lease");
        v.pop().expect("one lease")
    }

    /// Leases up to `n` jobs and returns their ids in the order handed out.
    async fn lease_ids(&self, n: usize) -> Vec<JobId> {
        let leases = self.queue.lease(n, TTL).await.expect("lease");
        leases.into_iter().map(|l| l.job.id).collect()
    }

    fn state(&self, id: JobId) -> JobState {
        self.queue.get(id).expect("get").expect("exists").state
    }
}

fn job(priority: u8) -> NewJob {
    NewJob {
        priority: Priority::new(priority.into()).expect("valid priority"),
        image: ImageRef {
            hash: "abc123".into(),
            name: "spheroid.png".into(),
            width: 64,
            height: 64,
            bytes: 1000,
        },
        ..NewJob::default()
    }
}

fn transient() -> JobError {
    JobError::transient(
        ErrorCode::ML_TIMEOUT,
        "the ML service did not answer in time",
    )
}

#[tokio::test]
async fn enqueue_is_queued_durable_and_counted() {
    let mut f = Fixture::new();
    let j = f.add(7).await;
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.lease, LeaseToken(0));
    assert_eq!(j.max_attempts, 3);
    assert_eq!(j.created_at, T0);
    f.reopen();
    let back = f.queue.get(j.id).expect("get").expect("survives reopen");
    assert_eq!(back, j);
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.counts.queued, 1);
    assert_eq!(s.by_priority[0].1[6], 1);
}

/// Regression: the replaced design used Bull, where 1 is the highest priority, so "premium" jobs
/// enqueued with 10 ran last. Here 10 runs first.
#[tokio::test]
async fn priority_10_after_1000_priority_5_jobs_is_leased_first() {
    let f = Fixture::new();
    let batch: Vec<NewJob> = (0..1000).map(|_| job(5)).collect();
    f.queue.enqueue_batch(batch).await.expect("batch");
    let urgent = f.add(10).await;
    let first = f.lease_one().await;
    assert_eq!(first.job.id, urgent.id);
    assert_eq!(first.job.priority.get(), 10);
}

#[tokio::test]
async fn fifo_inside_a_priority_level_and_levels_in_order() {
    let f = Fixture::new();
    let a = f.add(5).await;
    let b = f.add(3).await;
    let c = f.add(5).await;
    let d = f.add(9).await;
    let e = f.add(1).await;
    let leased = f.queue.lease(10, TTL).await.expect("lease");
    let order: Vec<JobId> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(order, vec![d.id, a.id, c.id, b.id, e.id]);
    assert!(leased.iter().all(|l| l.token == LeaseToken(1)));
}

#[tokio::test]
async fn lease_hands_out_at_most_n_and_nothing_when_empty() {
    let f = Fixture::new();
    for _ in 0..5 {
        f.add(5).await;
    }
    assert_eq!(f.queue.lease(2, TTL).await.expect("lease").len(), 2);
    assert_eq!(f.queue.lease(0, TTL).await.expect("lease").len(), 0);
    assert_eq!(f.queue.lease(10, TTL).await.expect("lease").len(), 3);
    assert!(f.queue.lease(10, TTL).await.expect("lease").is_empty());
    let s = f.queue.stats().expect("stats");
    assert_eq!((s.counts.queued, s.counts.active), (0, 5));
}

#[tokio::test]
async fn complete_stores_the_result_in_the_same_commit() {
    let mut f = Fixture::new();
    let j = f.add(5).await;
    let l = f.lease_one().await;
    f.clock.advance(Duration::from_millis(1500));
    let done = f
        .queue
        .complete(j.id, l.token, b"polygons".to_vec(), 0)
        .await
        .expect("complete");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.progress, 100);
    assert_eq!(done.finished_at, Some(T0 + 1500));
    assert_eq!(done.result, Some(ResultRef::first(8, 0, T0 + 1500)));
    f.reopen();
    assert_eq!(
        f.queue.result(j.id).expect("result"),
        Some(b"polygons".to_vec())
    );
    assert_eq!(f.state(j.id), JobState::Completed);
}

#[tokio::test]
async fn transient_failure_backs_off_then_runs_again_then_fails_when_spent() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let b = Backoff::default();

    let l1 = f.lease_one().await;
    let out = f
        .queue
        .fail(j.id, l1.token, transient())
        .await
        .expect("fail");
    let expect1 = T0 + b.delay(j.id, 1).as_millis() as u64;
    assert_eq!(out, FailOutcome::Retrying { run_at: expect1 });
    assert_eq!(f.state(j.id), JobState::Delayed);
    let d1 = expect1 - T0;
    assert!(
        (1600..=2400).contains(&d1),
        "first backoff ~2 s, got {d1} ms"
    );

    // Not leasable during the backoff.
    f.clock.set(expect1 - 1);
    assert!(f.queue.lease(1, TTL).await.expect("lease").is_empty());
    f.clock.set(expect1);
    let l2 = f.lease_one().await;
    assert_eq!(l2.token, LeaseToken(2));

    let now = f.clock.now();
    let out = f
        .queue
        .fail(j.id, LeaseToken(2), transient())
        .await
        .expect("fail");
    let FailOutcome::Retrying { run_at } = out else {
        panic!("second failure retries: {out:?}")
    };
    let d2 = run_at - now;
    assert!(
        (3200..=4800).contains(&d2),
        "second backoff ~4 s, got {d2} ms"
    );
    f.clock.set(run_at);
    let l3 = f.lease_one().await;
    assert_eq!(l3.token, LeaseToken(3));
    let out = f
        .queue
        .fail(j.id, LeaseToken(3), transient())
        .await
        .expect("fail");
    assert_eq!(out, FailOutcome::Failed, "three attempts spent");
    let failed = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.last_error, Some(transient()), "the reason is kept");
}

#[tokio::test]
async fn permanent_error_fails_at_once() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let l = f.lease_one().await;
    let err = JobError::permanent(ErrorCode::DECODE_FAILED, "not an image");
    let out = f
        .queue
        .fail(j.id, l.token, err.clone())
        .await
        .expect("fail");
    assert_eq!(out, FailOutcome::Failed);
    let failed = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(failed.last_error, Some(err));
    assert_eq!(failed.attempts, 1);
    assert_eq!(f.queue.stats().expect("stats").counts.failed, 1);
}

#[tokio::test]
async fn retry_gives_a_failed_job_fresh_attempts_and_keeps_fencing() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let l = f.lease_one().await;
    f.queue
        .fail(
            j.id,
            l.token,
            JobError::permanent(ErrorCode::DECODE_FAILED, "bad"),
        )
        .await
        .expect("fail");
    let back = f.queue.retry(j.id).await.expect("retry");
    assert_eq!(back.state, JobState::Queued);
    assert_eq!(back.attempts, 0);
    let l2 = f.lease_one().await;
    assert_eq!(l2.token, LeaseToken(2), "the fencing token never goes back");
    assert_eq!(l2.job.attempts, 1);
    let r = f.queue.retry(j.id).await;
    assert!(matches!(
        r,
        Err(QueueError::InvalidState {
            state: JobState::Active,
            ..
        })
    ));
    f.queue
        .complete(j.id, LeaseToken(2), vec![], 0)
        .await
        .expect("complete");
    let r = f.queue.retry(j.id).await;
    assert!(matches!(
        r,
        Err(QueueError::InvalidState {
            state: JobState::Completed,
            ..
        })
    ));
}

#[tokio::test]
async fn cancel_queued_delayed_and_active_jobs() {
    let f = Fixture::new();
    let q = f.add(5).await;
    let a = f.add(9).await;
    let d = f.add(1).await;
    let la = f.lease_one().await;
    assert_eq!(la.job.id, a.id);
    let ld = f.queue.lease(5, TTL).await.expect("lease");
    let ld = ld.into_iter().find(|l| l.job.id == d.id).expect("d leased");
    f.queue
        .fail(d.id, ld.token, transient())
        .await
        .expect("fail");
    assert_eq!(f.state(d.id), JobState::Delayed);
    // q was leased by the batch above too; put it back by cancelling and retrying.
    f.queue.cancel(q.id).await.expect("cancel");
    f.queue.retry(q.id).await.expect("retry");
    assert_eq!(f.state(q.id), JobState::Queued);

    for (id, was) in [
        (q.id, JobState::Queued),
        (d.id, JobState::Delayed),
        (a.id, JobState::Active),
    ] {
        let before = f.queue.cancel(id).await.expect("cancel");
        assert_eq!(before.state, was);
        assert_eq!(f.state(id), JobState::Cancelled);
    }
    let again = f.queue.cancel(a.id).await;
    assert!(matches!(
        again,
        Err(QueueError::InvalidState {
            action: "cancel",
            ..
        })
    ));
    let late = f.queue.complete(a.id, la.token, vec![], 0).await;
    assert!(matches!(
        late,
        Err(QueueError::Stale {
            state: JobState::Cancelled,
            ..
        })
    ));
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.counts.cancelled, 3);
    assert_eq!(s.counts.total(), 3);
    // A delayed job that was cancelled does not come back when its backoff would have ended.
    f.clock.advance(Duration::from_secs(3600));
    f.queue.sweep().await.expect("sweep");
    assert!(f.queue.lease(5, TTL).await.expect("lease").is_empty());
}

#[tokio::test]
async fn change_priority_moves_a_queued_job() {
    let f = Fixture::new();
    let a = f.add(5).await;
    let b = f.add(5).await;
    let c = f.add(5).await;
    let moved = f
        .queue
        .change_priority(c.id, Priority::new(8).expect("valid"))
        .await
        .expect("change");
    assert_eq!(moved.priority.get(), 8);
    let order = f.lease_ids(3).await;
    assert_eq!(order, vec![c.id, a.id, b.id]);
    let s = f.queue.stats().expect("stats");
    let active = &s.by_priority[JobState::Active.index() as usize].1;
    assert_eq!((active[4], active[7]), (2, 1));
    f.queue.cancel(a.id).await.expect("cancel");
    let r = f.queue.change_priority(a.id, Priority::MAX).await;
    assert!(matches!(r, Err(QueueError::InvalidState { .. })));
}

#[tokio::test]
async fn dedupe_returns_the_live_job_and_releases_the_key_on_failure() {
    let f = Fixture::new();
    let keyed = || NewJob {
        dedupe_key: Some("hash:builtin:{}".into()),
        ..job(5)
    };
    let first = f.queue.enqueue(keyed()).await.expect("enqueue");
    assert!(!first.deduplicated);
    let again = f.queue.enqueue(keyed()).await.expect("enqueue");
    assert!(again.deduplicated);
    assert_eq!(again.job.id, first.job.id);
    // Inside one batch too.
    let both = f
        .queue
        .enqueue_batch(vec![keyed(), keyed()])
        .await
        .expect("batch");
    assert!(
        both.iter()
            .all(|e| e.deduplicated && e.job.id == first.job.id)
    );
    assert_eq!(f.queue.stats().expect("stats").counts.queued, 1);

    let l = f.lease_one().await;
    f.queue
        .fail(
            first.job.id,
            l.token,
            JobError::permanent(ErrorCode::DECODE_FAILED, "bad"),
        )
        .await
        .expect("fail");
    let fresh = f.queue.enqueue(keyed()).await.expect("enqueue");
    assert!(!fresh.deduplicated, "a failed job no longer holds its key");
    assert_ne!(fresh.job.id, first.job.id);
}

#[tokio::test]
async fn a_batch_with_one_invalid_job_enqueues_none() {
    let f = Fixture::new();
    let mut bad = job(5);
    bad.max_attempts = Some(0);
    let r = f.queue.enqueue_batch(vec![job(5), bad, job(5)]).await;
    let Err(QueueError::Invalid(msg)) = r else {
        panic!("refused: {r:?}")
    };
    assert!(msg.contains("job 2 of the batch"), "{msg}");
    assert_eq!(f.queue.stats().expect("stats").counts.total(), 0);

    let mut bad = job(5);
    bad.params.min_area_fraction = -1.0;
    let r = f.queue.enqueue(bad).await;
    assert!(
        matches!(&r, Err(QueueError::Invalid(m)) if m.contains("min_area_fraction")),
        "{r:?}"
    );
    let mut bad = job(5);
    bad.image.hash.clear();
    assert!(matches!(
        f.queue.enqueue(bad).await,
        Err(QueueError::Invalid(_))
    ));
}

#[tokio::test]
async fn delayed_enqueue_waits_for_its_time() {
    let f = Fixture::new();
    let later = NewJob {
        run_at: Some(T0 + 10_000),
        ..job(5)
    };
    let j = f.queue.enqueue(later).await.expect("enqueue").job;
    assert_eq!(j.state, JobState::Delayed);
    assert_eq!(f.queue.next_due().expect("next due"), Some(T0 + 10_000));
    assert!(f.queue.lease(1, TTL).await.expect("lease").is_empty());
    f.clock.advance(Duration::from_secs(10));
    let swept = f.queue.sweep().await.expect("sweep");
    assert_eq!(swept.promoted, vec![j.id]);
    assert_eq!(f.lease_one().await.job.id, j.id);
}

/// Aging, listing and retention.
mod backup;
mod leases;
mod marks;
mod power;
mod restarts;
mod versions;
mod views;
