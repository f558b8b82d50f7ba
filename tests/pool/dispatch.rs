//! The dispatcher's own schedule: its sweep of expired leases, and the deadline of the next
//! delayed job, still fire while a steady stream of wake-ups (new jobs, freed workers) keeps
//! interrupting its wait.

use std::sync::atomic::AtomicBool;

use spheroseg::clock::Clock;

use super::*;

/// How many `job_queued` events of jobs other than `skip` lie between the first event matching
/// `from` and the first matching `to`; `None` unless both came, in that order.
fn queued_between(
    events: &[Arc<Event>],
    skip: &[JobId],
    from: impl Fn(&EventKind) -> bool,
    to: impl Fn(&EventKind) -> bool,
) -> Option<usize> {
    let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
    let start = events.iter().position(|e| from(&e.kind))?;
    let end = events.iter().position(|e| to(&e.kind))?;
    let others = events.get(start..end)?.iter().filter(
        |e| matches!(&e.kind, EventKind::JobQueued { job_id, .. } if !skip.contains(job_id)),
    );
    Some(others.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_and_a_due_job_fire_under_a_steady_stream_of_wake_ups() {
    let h = harness();
    // Jobs on made-up images: each fails at once (its image is not stored), so the stream costs
    // the workers nothing and every job is a wake-up, queued and then a freed worker.
    let lapsed = h
        .queue
        .enqueue(crate::util::job(5))
        .await
        .expect("enqueued")
        .job
        .id;
    // A consumer that never renews its lease: only the sweep gives the job back.
    let lease = h
        .queue
        .lease(1, Duration::from_millis(300))
        .await
        .expect("lease");
    assert_eq!(lease.len(), 1);
    let delayed = NewJob {
        run_at: Some(SystemClock.now() + 1_000),
        ..crate::util::job(5)
    };
    let delayed = h.queue.enqueue(delayed).await.expect("enqueued").job.id;
    let pool = h.start(builtin_only(), config(2));

    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (queue, stop) = (h.queue.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                queue.enqueue(crate::util::job(5)).await.expect("enqueued");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let events = h
        .wait_for(30, |e| {
            count(e, about(lapsed, "job_requeued:lease-expired")) == 1
                && count(e, about(delayed, "job_requeued:due")) == 1
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    stream.await.expect("stream");

    // Wake-ups kept coming while each waited: jobs of the stream were queued in between.
    let mine = [lapsed, delayed];
    let during_lease = queued_between(
        &events,
        &mine,
        about(lapsed, "job_started"),
        about(lapsed, "job_requeued:lease-expired"),
    );
    let during_delay = queued_between(
        &events,
        &mine,
        about(delayed, "job_queued"),
        about(delayed, "job_requeued:due"),
    );
    for (what, n) in [("lease", during_lease), ("delay", during_delay)] {
        assert!(
            n.is_some_and(|n| n >= 10),
            "{what}: {n:?} jobs queued meanwhile"
        );
    }
    pool.shutdown(Duration::from_secs(5)).await;
}
