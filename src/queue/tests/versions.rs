//! Result versions: a new version beside the ones before, refused when made from a stale one or
//! for a job without a result, kept across a crash and a reopen, announced, removed with the job.

use std::sync::Mutex;

use super::*;

fn version(base: u32, bytes: &[u8], objects: u32, restored_from: Option<u32>) -> NewVersion {
    NewVersion {
        base,
        result: bytes.to_vec(),
        objects,
        corrected: restored_from.is_none(),
        restored_from,
    }
}

async fn completed(f: &Fixture) -> Job {
    let j = f.add(5).await;
    let l = f.lease_one().await;
    f.queue
        .complete(j.id, l.token, b"automatic".to_vec(), 3)
        .await
        .expect("complete")
}

#[tokio::test]
async fn a_version_goes_beside_the_first_which_is_kept() {
    let mut f = Fixture::with(QueueOptions {
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    let heard: Arc<Mutex<Vec<Change>>> = Arc::default();
    let sink = heard.clone();
    f.queue.listen(Arc::new(move |c: &Committed| {
        let mut h = sink.lock().expect("heard lock");
        h.extend(c.transitions.iter().map(|t| t.change));
    }));
    let j = completed(&f).await;
    assert_eq!(j.result.as_ref().map(ResultRef::version), Some(1));
    f.clock.advance(Duration::from_secs(5));
    let v2 = f
        .queue
        .add_version(j.id, version(1, b"by hand", 2, None))
        .await
        .expect("version 2");
    let r = v2.result.as_ref().expect("result");
    assert_eq!(
        (r.version(), r.corrected(), r.objects, r.bytes),
        (2, true, 2, 7)
    );
    assert_eq!(r.versions[1].created_at, T0 + 5000);
    assert_eq!(v2.state, JobState::Completed);
    assert!(
        heard
            .lock()
            .expect("heard lock")
            .contains(&Change::ResultVersioned {
                version: 2,
                restored_from: None
            }),
        "the commit is announced"
    );

    let stale = f
        .queue
        .add_version(j.id, version(1, b"other", 1, None))
        .await;
    assert!(
        matches!(
            stale,
            Err(QueueError::StaleVersion {
                base: 1,
                latest: 2,
                ..
            })
        ),
        "{stale:?}"
    );

    let v3 = f
        .queue
        .add_version(j.id, version(2, b"automatic", 3, Some(1)))
        .await
        .expect("restore of version 1");
    let r = v3.result.as_ref().expect("result");
    assert_eq!((r.version(), r.corrected(), r.objects), (3, false, 3));
    assert_eq!(r.versions.len(), 3);

    // A crash now, before any checkpoint: the files as they are, opened as a copy, replay the log.
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
    assert_eq!(
        crashed.get(j.id).expect("get").expect("kept").result,
        v3.result
    );
    assert_eq!(
        crashed.result_version(j.id, 2).expect("v2"),
        Some(b"by hand".to_vec())
    );
    crashed.close();
    // `db check` finds every version the job lists.
    let report = check(&copy.path().join("q.redb"), None).expect("check runs");
    assert!(report.problems.is_empty(), "{report:?}");
    // And read from the file after a clean reopen.
    f.reopen();
    assert_eq!(
        f.queue.result(j.id).expect("result"),
        Some(b"automatic".to_vec())
    );
    assert_eq!(
        f.queue.result_version(j.id, 2).expect("v2"),
        Some(b"by hand".to_vec())
    );
    assert_eq!(
        f.queue.result_version(j.id, 1).expect("v1"),
        Some(b"automatic".to_vec())
    );
    assert_eq!(f.queue.result_version(j.id, 4).expect("v4"), None);
    let again = f.queue.get(j.id).expect("get").expect("exists");
    assert_eq!(again.result, v3.result);

    f.queue.delete(j.id).await.expect("delete");
    assert_eq!(f.queue.result_version(j.id, 2).expect("v2"), None);
}

#[tokio::test]
async fn only_a_completed_job_gets_a_version() {
    let f = Fixture::new();
    let queued = f.add(5).await;
    let r = f
        .queue
        .add_version(queued.id, version(1, b"x", 1, None))
        .await;
    assert!(matches!(r, Err(QueueError::InvalidState { .. })), "{r:?}");
    let r = f
        .queue
        .add_version(JobId::new(), version(1, b"x", 1, None))
        .await;
    assert!(matches!(r, Err(QueueError::NotFound(_))), "{r:?}");
}
