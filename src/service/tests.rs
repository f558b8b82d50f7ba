//! The service over a real queue without a pool: what its commands commit, and how often.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::events::EventKind;
use crate::queue::QueueOptions;
use crate::segment::DecodeLimits;

struct Fixture {
    _dir: tempfile::TempDir,
    service: Service,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (queue, _) = Queue::open(
        &dir.path().join("q.redb"),
        QueueOptions::default(),
        clock.clone(),
    )
    .expect("open");
    let events = EventBus::new(100_000, clock);
    let bus = events.clone();
    queue.listen(Arc::new(move |c| bus.publish_commit(c)));
    let images = ImageStore::open(dir.path(), DecodeLimits::default()).expect("image store");
    Fixture {
        service: Service {
            queue,
            images,
            events,
            pool: None,
            default_segmenter: SegmenterId::default(),
        },
        _dir: dir,
    }
}

/// The writer's transactions and durable writes (log syncs and checkpoints) so far.
fn commits(q: &Queue) -> (u64, u64) {
    let log = q.stats().expect("stats").log;
    (log.batches, log.syncs + log.checkpoints)
}

/// A bulk action over more jobs than any batch of enqueues is one transaction and one durable
/// write, and a bulk delete is one `jobs_deleted` event naming every job.
#[tokio::test]
async fn a_bulk_action_over_many_jobs_is_one_commit() {
    const JOBS: usize = 5_000;
    let f = fixture();
    let q = &f.service.queue;
    let new = |i: usize| NewJob {
        image: ImageRef {
            hash: format!("{i:064x}"),
            name: format!("{i}.png"),
            width: 64,
            height: 64,
            bytes: 1000,
        },
        ..NewJob::default()
    };
    let ids: Vec<JobId> = q
        .enqueue_batch((0..JOBS).map(new).collect())
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.job.id)
        .collect();

    let before = commits(q);
    let cancelled = f
        .service
        .bulk(BulkAction::Cancel, &ids)
        .await
        .expect("cancel");
    assert_eq!(cancelled.len(), JOBS);
    assert!(
        cancelled
            .iter()
            .all(|o| o.before == JobState::Queued && o.after == Some(JobState::Cancelled))
    );
    let after = commits(q);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));

    let mut sub = f.service.events.subscribe(Some(f.service.events.last_id()));
    let deleted = f
        .service
        .bulk(BulkAction::Delete, &ids)
        .await
        .expect("delete");
    assert_eq!(deleted.len(), JOBS);
    let last = commits(q);
    assert_eq!((last.0 - after.0, last.1 - after.1), (1, 1));
    assert_eq!(q.stats().expect("stats").counts.cancelled, 0);
    let event = sub.live.try_recv().expect("one event");
    let EventKind::JobsDeleted { job_ids, count } = &event.kind else {
        panic!("expected jobs_deleted, got {:?}", event.kind);
    };
    assert_eq!((job_ids.len(), *count), (JOBS, JOBS));
    assert!(
        sub.live.try_recv().is_err(),
        "one event for the whole action"
    );
}
