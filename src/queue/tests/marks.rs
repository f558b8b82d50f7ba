//! Marks: written with the jobs they name in one commit, the job ids appended, kept across a
//! reopen; a refused call writes neither jobs nor marks.

use super::*;

fn mark(key: &str, value: &[u8], jobs: Vec<usize>) -> Mark {
    Mark {
        key: key.into(),
        value: Some(value.to_vec()),
        jobs,
    }
}

fn ids_after(value: &[u8], prefix: usize) -> Vec<JobId> {
    value[prefix..]
        .chunks_exact(16)
        .map(|c| JobId(u128::from_le_bytes(c.try_into().expect("16 bytes"))))
        .collect()
}

#[tokio::test]
async fn marks_commit_with_their_jobs_and_name_the_deduplicated_one() {
    let mut f = Fixture::with(QueueOptions {
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    });
    let keyed = NewJob {
        dedupe_key: Some("h:builtin:".into()),
        ..job(5)
    };
    let done = f
        .queue
        .enqueue_marked(
            vec![keyed.clone(), job(3)],
            vec![mark("w/a", b"A", vec![0, 1]), mark("w/b", b"B", vec![])],
        )
        .await
        .expect("enqueued");
    let marks = f.queue.marks("w/").expect("marks");
    assert_eq!(marks.len(), 2);
    assert_eq!(marks[0].0, "w/a");
    assert_eq!(marks[0].1[0], b'A');
    assert_eq!(
        ids_after(&marks[0].1, 1),
        vec![done[0].job.id, done[1].job.id]
    );
    assert_eq!(marks[1].1, b"B");

    // The same dedupe key again: no new job, and the mark names the one that holds the key.
    let again = f
        .queue
        .enqueue_marked(vec![keyed], vec![mark("w/c", b"C", vec![0])])
        .await
        .expect("enqueued");
    assert!(again[0].deduplicated);
    let c = f.queue.marks("w/c").expect("marks");
    assert_eq!(ids_after(&c[0].1, 1), vec![done[0].job.id]);

    // A mark naming a job the call does not have refuses the whole call.
    let refused = f
        .queue
        .enqueue_marked(vec![job(5)], vec![mark("w/d", b"D", vec![1])])
        .await
        .expect_err("refused");
    assert!(matches!(refused, QueueError::Invalid(_)), "{refused:?}");
    assert_eq!(f.queue.stats().expect("stats").counts.queued, 2);
    assert!(f.queue.marks("w/d").expect("marks").is_empty());

    // Removal, then a reopen keeps what was committed.
    f.queue
        .enqueue_marked(
            Vec::new(),
            vec![Mark {
                key: "w/b".into(),
                value: None,
                jobs: Vec::new(),
            }],
        )
        .await
        .expect("removed");
    f.reopen();
    let keys: Vec<String> = f
        .queue
        .marks("w/")
        .expect("marks")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["w/a", "w/c"]);
    assert!(f.queue.marks("x/").expect("marks").is_empty());
}
