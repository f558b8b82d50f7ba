//! What survives a reopen, a crash or a storage failure: orphans, the pause flag, the write-ahead
//! log and its checkpoints, group commit, and a queue that stopped or closed.

use std::sync::Arc;
use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_storage_failure_stops_the_queue_until_reopened() {
    let mut f = Fixture::new();
    let kept = f.add(5).await;
    f.queue
        .fail_for_test("the write-ahead log could not be synced; restart spheroseg");
    let refused = f.queue.enqueue(job(5)).await.expect_err("refused");
    assert!(matches!(refused, QueueError::Storage(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("restart spheroseg"),
        "{refused}"
    );
    assert!(f.queue.lease(1, TTL).await.is_err());
    assert!(f.queue.stats().is_err(), "health must see the failure");
    f.reopen();
    assert_eq!(f.state(kept.id), JobState::Queued);
    assert_eq!(f.queue.stats().expect("stats").counts.queued, 1);
    f.add(5).await;
}

#[tokio::test]
async fn stats_count_transactions_syncs_and_checkpoints() {
    let f = Fixture::with(QueueOptions {
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    let before = f.queue.stats().expect("stats").log;
    assert_eq!(before.log_capacity, QueueOptions::default().wal_bytes);
    for _ in 0..3 {
        f.add(5).await;
    }
    let log = f.queue.stats().expect("stats").log;
    assert_eq!(log.batches - before.batches, 3, "{log:?}");
    assert_eq!(log.commands - before.commands, 3, "{log:?}");
    assert_eq!(
        log.syncs - before.syncs,
        3,
        "one awaited call at a time: {log:?}"
    );
    assert_eq!(log.checkpoints, 0);
    assert!(log.log_bytes > 0);

    let f = Fixture::with(QueueOptions {
        checkpoint_every: Duration::ZERO,
        ..QueueOptions::default()
    });
    f.add(5).await;
    let log = f.queue.stats().expect("stats").log;
    assert_eq!(
        (log.checkpoints, log.log_bytes, log.syncs),
        (1, 0, 0),
        "{log:?}"
    );
}

#[tokio::test]
async fn checkpoints_and_log_restarts_keep_every_change() {
    // A log of 8 KiB fills every few batches; a checkpoint interval of zero makes every batch
    // that changes something a checkpoint.
    for (wal_bytes, every) in [
        (8 << 10, Duration::from_secs(60)),
        (1 << 20, Duration::ZERO),
    ] {
        let mut f = Fixture::with(QueueOptions {
            wal_bytes,
            checkpoint_every: every,
            ..QueueOptions::default()
        });
        let mut ids = Vec::new();
        for i in 0..60u8 {
            ids.push(f.add(i % 10 + 1).await.id);
        }
        let done = f.lease_one().await;
        f.queue
            .complete(done.job.id, done.token, vec![1, 2, 3], 0)
            .await
            .expect("complete");
        let recovery = f.reopen();
        assert!(recovery.orphans.is_empty());
        assert_eq!(f.state(done.job.id), JobState::Completed);
        assert_eq!(
            f.queue.result(done.job.id).expect("result"),
            Some(vec![1, 2, 3])
        );
        let s = f.queue.stats().expect("stats");
        assert_eq!((s.counts.queued, s.counts.completed), (59, 1));
        assert_eq!(f.lease_ids(59).await.len(), 59);
    }
}

#[tokio::test]
async fn a_change_bigger_than_the_whole_log_commits_as_a_checkpoint() {
    let f = Fixture::with(QueueOptions {
        wal_bytes: 8 << 10,
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    f.add(5).await;
    let l = f.lease_one().await;
    let result = vec![7u8; 64 << 10];
    f.queue
        .complete(l.job.id, l.token, result.clone(), 0)
        .await
        .expect("complete");
    assert_eq!(f.queue.stats().expect("stats").log.checkpoints, 1);
    // A crash now: the files as they are, opened as a copy (the original is still open).
    let copy = tempfile::tempdir().expect("tempdir");
    for file in ["q.redb", "q.wal"] {
        std::fs::copy(f.dir.path().join(file), copy.path().join(file)).expect("copy");
    }
    let (crashed, _) = Queue::open(
        &copy.path().join("q.redb"),
        f.options.clone(),
        Arc::new(f.clock.clone()),
    )
    .expect("open the copy");
    let job = crashed.get(l.job.id).expect("get").expect("kept");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(crashed.result(l.job.id).expect("result"), Some(result));
}

#[tokio::test]
async fn pause_stops_leasing_and_persists_across_reopen() {
    let mut f = Fixture::new();
    f.add(5).await;
    f.queue.set_paused(true).await.expect("pause");
    assert!(f.queue.lease(1, TTL).await.expect("lease").is_empty());
    f.reopen();
    assert!(f.queue.paused().expect("paused"));
    assert!(f.queue.lease(1, TTL).await.expect("lease").is_empty());
    f.queue.set_paused(false).await.expect("resume");
    assert_eq!(f.queue.lease(1, TTL).await.expect("lease").len(), 1);
}

#[tokio::test]
async fn reopen_requeues_orphans_and_refunds_their_attempt() {
    let mut f = Fixture::new();
    let j = f.add(5).await;
    f.lease_one().await;
    let recovery = f.reopen();
    assert_eq!(recovery.orphans, vec![j.id]);
    let back = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(back.state, JobState::Queued);
    assert_eq!(back.attempts, 0, "a restart does not spend an attempt");
    assert_eq!(back.interruptions, 1);
    let s = f.queue.stats().expect("stats");
    assert_eq!((s.counts.queued, s.counts.active), (1, 0));
    let l2 = f.lease_one().await;
    assert_eq!(l2.token, LeaseToken(2));
}

#[tokio::test]
async fn a_job_that_keeps_dying_with_its_process_fails() {
    let mut f = Fixture::new();
    let j = f.add(5).await;
    for round in 1..=3 {
        f.lease_one().await;
        f.reopen();
        assert_eq!(f.state(j.id), JobState::Queued, "round {round}");
    }
    f.lease_one().await;
    f.reopen();
    let failed = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.last_error.map(|e| e.code),
        Some("interrupted".into())
    );
}

#[tokio::test]
async fn concurrent_enqueues_are_group_committed_and_all_distinct() {
    let f = Fixture::new();
    let mut tasks = Vec::new();
    for p in 0..32u8 {
        let q = f.queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..20 {
                ids.push(q.enqueue(job(p % 10 + 1)).await.expect("enqueue").job.id);
            }
            ids
        }));
    }
    let mut all = std::collections::BTreeSet::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    assert_eq!(all.len(), 640);
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.counts.queued, 640);
    assert_eq!(s.by_priority[0].1.iter().sum::<u64>(), 640);
}

#[tokio::test]
async fn closed_queue_answers_closed() {
    let f = Fixture::new();
    f.queue.close();
    let r = f.queue.enqueue(job(5)).await;
    assert!(matches!(r, Err(QueueError::Closed)), "{r:?}");
}
