//! A job's history: every transition in commit order, the attempts read from it with their
//! errors, kept across a reopen that replays the log, bounded, and gone with the job. Also the
//! recent failure count, which cancellations are not part of.

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::*;

fn failure(n: u32) -> JobError {
    JobError::transient(ErrorCode::ML_TIMEOUT, format!("attempt {n} timed out"))
}

#[tokio::test]
async fn two_failures_then_success_show_three_attempts_and_every_event() {
    let mut f = Fixture::with(QueueOptions {
        // Everything stays in the write-ahead log, so the reopen redoes the history table.
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    let j = f.add(5).await;
    for n in 1..=2 {
        let l = f.lease_one().await;
        let out = f.queue.fail(j.id, l.token, failure(n)).await.expect("fail");
        assert!(matches!(out, FailOutcome::Retrying { .. }));
        f.clock.advance(Duration::from_secs(600));
    }
    let l = f.lease_one().await;
    f.queue
        .complete(j.id, l.token, b"{}".to_vec(), 1)
        .await
        .expect("complete");
    f.reopen();

    let h = f.queue.history(j.id).expect("history").expect("job exists");
    let changes: Vec<&str> = h.entries.iter().map(|e| e.change.as_str()).collect();
    assert_eq!(
        changes,
        [
            "queued",
            "started",
            "retrying",
            "requeued",
            "started",
            "retrying",
            "requeued",
            "started",
            "completed"
        ]
    );
    assert!(h.entries.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h.dropped, 0);

    let a = h.attempts();
    assert_eq!(a.len(), 3);
    assert_eq!(a.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        a.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [
            Some(Change::Retrying),
            Some(Change::Retrying),
            Some(Change::Completed)
        ]
    );
    let errors: Vec<Option<&str>> = a
        .iter()
        .map(|a| a.error.as_ref().map(|e| e.message.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            Some("attempt 1 timed out"),
            Some("attempt 2 timed out"),
            None
        ]
    );
    assert!(
        a.iter()
            .all(|a| a.ended_at.is_some_and(|e| e >= a.started_at))
    );
    assert!(
        a.iter()
            .all(|a| a.segmenter.as_ref().is_some_and(SegmenterId::is_builtin))
    );
    // The job itself keeps only the last error, and a completed job none.
    assert_eq!(
        f.queue.get(j.id).expect("get").expect("job").last_error,
        None
    );
}

#[tokio::test]
async fn history_is_bounded_per_job() {
    let f = Fixture::new();
    let j = f.add(5).await;
    for i in 0..100u8 {
        let p = Priority::new(i64::from(i % 10) + 1).expect("priority");
        f.queue.change_priority(j.id, p).await.expect("priority");
    }
    let h = f.queue.history(j.id).expect("history").expect("job");
    // The kept entries and the enqueue, which the job record holds.
    assert_eq!(h.entries.len(), History::MAX_ENTRIES + 1);
    assert_eq!(h.dropped as usize, 100 - History::MAX_ENTRIES);
    assert_eq!((h.entries[0].change, h.entries[0].at), (Change::Queued, T0));
    let last = h.entries.last().expect("an entry");
    assert_eq!(
        (last.change, last.priority.get()),
        (
            Change::PriorityChanged {
                from: Priority::new(9).expect("9")
            },
            10
        )
    );
}

#[tokio::test]
async fn a_running_job_shows_its_attempt_and_a_lease_writes_no_row() {
    let f = Fixture::new();
    let j = f.add(5).await;
    f.clock.advance(Duration::from_secs(1));
    let l = f.lease_one().await;
    assert_eq!(
        rows(&f),
        0,
        "a lease is stored with the job's next transition"
    );
    let h = f.queue.history(j.id).expect("history").expect("job");
    let a = h.attempts();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].started_at, a[0].ended_at, a[0].number),
        (T0 + 1000, None, 1)
    );
    // A priority change while it runs comes after the start it did not see stored.
    f.clock.advance(Duration::from_secs(1));
    let p = Priority::new(8).expect("8");
    f.queue.change_priority(j.id, p).await.expect("priority");
    f.clock.advance(Duration::from_secs(1));
    f.queue
        .release(j.id, l.token, T0 + 60_000, failure(1))
        .await
        .expect("held");
    let h = f.queue.history(j.id).expect("history").expect("job");
    let changes: Vec<&str> = h.entries.iter().map(|e| e.change.as_str()).collect();
    assert_eq!(changes, ["queued", "started", "priority_changed", "held"]);
    assert_eq!(
        (h.entries[1].priority.get(), h.entries[1].attempts),
        (5, 1),
        "as it was when it started, before the refund"
    );
    let a = h.attempts();
    assert_eq!(
        (a[0].ended_at, a[0].outcome),
        (Some(T0 + 3000), Some(Change::Held))
    );
}

/// Rows in the history table.
fn rows(f: &Fixture) -> u64 {
    let store = f.queue.store().expect("store");
    let tx = store.db.begin_read().expect("read");
    let table = tx.open_table(store::HISTORY).expect("history table");
    table.len().expect("len")
}

#[tokio::test]
async fn an_enqueue_writes_no_row_and_a_deleted_job_takes_its_row_with_it() {
    let f = Fixture::new();
    let gone = f.add(5).await;
    let kept = f.add(5).await;
    assert_eq!(rows(&f), 0, "an enqueue writes no history row");
    let h = f.queue.history(kept.id).expect("history").expect("job");
    assert_eq!(h.entries.len(), 1, "its enqueue, from the job record");
    assert!(h.attempts().is_empty());
    f.queue.cancel(gone.id).await.expect("cancel");
    f.queue.cancel(kept.id).await.expect("cancel");
    assert_eq!(rows(&f), 2);
    f.queue.delete(gone.id).await.expect("delete");
    assert_eq!(f.queue.history(gone.id).expect("history"), None);
    assert_eq!(rows(&f), 1, "only the kept job's history");
}

#[tokio::test]
async fn cancellations_are_not_counted_as_recent_failures() {
    let f = Fixture::new();
    for _ in 0..9 {
        let j = f.add(5).await;
        f.queue.cancel(j.id).await.expect("cancel");
    }
    // One active job cancelled too: it was running, and still did not fail.
    let running = f.add(5).await;
    f.lease_one().await;
    f.queue.cancel(running.id).await.expect("cancel");
    let doomed = f.add(5).await;
    let l = f.lease_one().await;
    let permanent = JobError::permanent(ErrorCode::DECODE_FAILED, "not an image");
    f.queue
        .fail(doomed.id, l.token, permanent)
        .await
        .expect("fail");
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.counts.cancelled, 10);
    assert_eq!(s.counts.failed, 1);
    assert_eq!(s.failed.last_1m, 1);
    assert_eq!(s.failed.last_5m, 1);
    assert_eq!(s.completed.last_5m, 0);
    assert_eq!(s.run.samples, 1, "only the failed attempt's run time");
    let h = f.queue.history(running.id).expect("history").expect("job");
    let a = h.attempts();
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].outcome,
        Some(Change::Cancelled {
            was: JobState::Active
        })
    );
}
