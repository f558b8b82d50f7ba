//! Backups and checks: a copy taken while changes come in holds every acknowledged one and opens
//! cleanly without a log; the check passes on it, and names a damaged log or a missing image.

use std::sync::Arc;
use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_acknowledged_job_and_passes_the_check() {
    let f = Fixture::with(QueueOptions {
        // A log that holds records when the backup comes: the checkpoint must take them in.
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    let mut acknowledged = Vec::new();
    for _ in 0..50 {
        acknowledged.push(f.add(5).await.id);
    }
    let writer = {
        let queue = f.queue.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                queue.enqueue(job(3)).await.expect("enqueue");
            }
        })
    };
    let to = f.dir.path().join("copy.redb");
    let copy = f.queue.backup(to.clone(), None).await.expect("backup");
    writer.await.expect("writer");
    assert!(copy.bytes > 0);
    assert!(copy.paused <= copy.took);

    let report = check(&to, Some(&|_: &str| true)).expect("check runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.integrity && report.log.is_none());
    let held = report.jobs.queued;
    assert!((50..=250).contains(&held), "{held}");

    let (copied, recovery) = Queue::open(
        &to,
        QueueOptions::default(),
        Arc::new(crate::clock::ManualClock::new(T0)),
    )
    .expect("the copy opens");
    assert_eq!(recovery.replayed, 0);
    for id in acknowledged {
        assert_eq!(
            copied.get(id).expect("read").expect("kept").state,
            JobState::Queued
        );
    }
    assert_eq!(copied.stats().expect("stats").counts.queued, held);
    copied.close();
}

#[tokio::test]
async fn the_check_names_a_missing_image_and_a_damaged_log() {
    let mut f = Fixture::with(QueueOptions {
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    for _ in 0..3 {
        f.add(5).await;
    }
    let path = f.dir.path().join("q.redb");
    f.queue.close();
    let report = check(&path, Some(&|hash: &str| hash != "abc123")).expect("check runs");
    assert_eq!(report.images_missing.len(), 3, "{report:?}");
    assert!(
        report.problems.iter().any(|p| p.contains("missing")),
        "{report:?}"
    );

    // A queue stopped by a failure closes without its final checkpoint, as a crash would: its
    // log holds the records the check must redo.
    f.reopen();
    for _ in 0..3 {
        f.add(5).await;
    }
    f.queue.fail_for_test("stopped for the test");
    f.queue.close();
    let report = check(&path, None).expect("check runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (report.log_records, report.jobs.queued),
        (3, 6),
        "{report:?}"
    );
    assert_eq!(report.images_checked, None);

    let log = path.with_extension("wal");
    let mut bytes = std::fs::read(&log).expect("log");
    for b in &mut bytes[40..80] {
        *b ^= 0x5a;
    }
    std::fs::write(&log, &bytes).expect("damage");
    let report = check(&path, None).expect("check runs");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("write-ahead log")),
        "{:?}",
        report.problems
    );
    std::fs::remove_file(&log).expect("remove");
    let report = check(&path, None).expect("check runs");
    assert!(
        report.problems.iter().any(|p| p.contains("is missing")),
        "{:?}",
        report.problems
    );
}
