//! The job pipeline end to end, in process: images stored, jobs enqueued, the dispatcher and the
//! worker threads running them, results stored, events observed; panics, cancel, timeouts,
//! shutdown and restart, and ML services behind the circuit breaker.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spheroseg::clock::{Clock, SystemClock};
use spheroseg::events::{Event, EventBus, EventKind, Missed};
use spheroseg::images::ImageStore;
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{JobFilter, JobId, JobState, NewJob, Queue, QueueOptions};
use spheroseg::segment::SegmenterId;
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::command::CommandSegmenter;
use spheroseg::segment::{Builtin, Control, Failure, Input, SegmentResult, Segmenter};
use spheroseg::segment::{MlService, Segmenters};

use crate::util::fixture;

struct Harness {
    dir: tempfile::TempDir,
    queue: Queue,
    images: ImageStore,
    events: EventBus,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    Harness {
        dir,
        queue,
        images,
        events,
    }
}

fn config(workers: usize) -> PoolConfig {
    crate::util::pool_config(workers)
}

impl Harness {
    fn start(&self, segmenters: Segmenters, config: PoolConfig) -> Pool {
        Pool::start(
            self.queue.clone(),
            self.images.clone(),
            self.events.clone(),
            segmenters,
            config,
            Arc::new(SystemClock),
        )
        .expect("pool starts")
    }

    async fn enqueue(&self, file: &str, segmenter: SegmenterId) -> JobId {
        let image = self.images.put_path(&fixture(file)).expect("stored").image;
        let job = NewJob {
            image,
            segmenter,
            max_attempts: Some(3),
            ..NewJob::default()
        };
        self.queue.enqueue(job).await.expect("enqueued").job.id
    }

    fn state(&self, id: JobId) -> JobState {
        self.queue.get(id).expect("get").expect("exists").state
    }

    /// Waits until `done` holds for the events seen so far (from the first), or fails after `secs`.
    async fn wait_for(&self, secs: u64, done: impl Fn(&[Arc<Event>]) -> bool) -> Vec<Arc<Event>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = match self.events.subscribe(Some(0)).missed {
                Missed::Events(e) => e,
                Missed::Resync => panic!("ring buffer too small for the test"),
            };
            if done(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; events so far: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn builtin_only() -> Segmenters {
    Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::new(),
    }
}

fn count(events: &[Arc<Event>], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

fn completed(e: &EventKind) -> bool {
    matches!(e, EventKind::JobCompleted { .. })
}

fn started(e: &EventKind) -> bool {
    matches!(e, EventKind::JobStarted { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_end_to_end_on_the_builtin_segmenter() {
    let h = harness();
    let pool = h.start(builtin_only(), config(2));
    let files = [
        "spheroid_lumen_8bit.png",
        "spheroid_plain_16bit.tif",
        "spheroid_core_8bit.png",
    ];
    let mut ids = Vec::new();
    for f in files {
        ids.push(
            h.enqueue(f, spheroseg::segment::SegmenterId::builtin())
                .await,
        );
    }
    let events = h.wait_for(60, |e| count(e, completed) == 3).await;
    for (id, file) in ids.iter().zip(files) {
        assert_eq!(h.state(*id), JobState::Completed);
        let bytes = h.queue.result(*id).expect("read").expect("stored");
        let r = SegmentResult::from_bytes(&bytes).expect("decodes");
        assert_eq!(r.objects.len(), 1, "{file}");
        assert_eq!(r.segmenter, "builtin");
        assert_eq!(
            r.objects[0].holes.len(),
            usize::from(file.contains("lumen"))
        );
        // This job's events come in order: started, then progress, then completed.
        let mine: Vec<&EventKind> = events
            .iter()
            .map(|e| &e.kind)
            .filter(|k| match k {
                EventKind::JobStarted { job_id, .. }
                | EventKind::JobProgress { job_id, .. }
                | EventKind::JobCompleted { job_id, .. } => *job_id == id.to_string(),
                _ => false,
            })
            .collect();
        assert!(
            matches!(mine.first(), Some(EventKind::JobStarted { .. })),
            "{mine:?}"
        );
        assert!(
            matches!(
                mine.last(),
                Some(EventKind::JobCompleted { objects: 1, .. })
            ),
            "{mine:?}"
        );
    }
    // Queue counts follow every second while they change.
    h.wait_for(10, |e| {
        e.iter().any(
            |e| matches!(&e.kind, EventKind::QueueStats { counts, .. } if counts.completed == 3),
        )
    })
    .await;
    let ids_in_order: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(ids_in_order.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(pool.handle().workers(), (0, 2));
    pool.shutdown(Duration::from_secs(5)).await;
}

/// A segmenter that misbehaves on cue (by image name) and otherwise runs the builtin pipeline.
struct Scripted {
    calls: AtomicUsize,
}

impl Segmenter for Scripted {
    fn name(&self) -> &str {
        "builtin"
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if input.name.contains("core") {
            panic!("a bad image");
        }
        if input.name.contains("plain") {
            // Slow: runs until stopped.
            while !control.stop.stopped() {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Err(Failure::Stopped);
        }
        Builtin.segment(input, control)
    }
}

fn scripted() -> Segmenters {
    Segmenters {
        builtin: Arc::new(Scripted {
            calls: AtomicUsize::new(0),
        }),
        ml: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_one_job_and_the_worker_lives_on() {
    let h = harness();
    let pool = h.start(scripted(), config(1));
    let bad = h
        .enqueue(
            "spheroid_core_8bit.png",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    let good = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    h.wait_for(60, |e| count(e, completed) == 1).await;
    let failed = h.queue.get(bad).expect("get").expect("exists");
    assert_eq!(failed.state, JobState::Failed);
    let err = failed.last_error.expect("reason kept");
    assert_eq!(
        (err.code.as_str(), err.transient),
        ("internal-error", false)
    );
    assert_eq!(
        h.state(good),
        JobState::Completed,
        "the same single worker ran the next job"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job() {
    let h = harness();
    let pool = h.start(scripted(), config(1));
    let slow = h
        .enqueue(
            "spheroid_plain_16bit.tif",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    h.wait_for(30, |e| count(e, started) == 1).await;
    let before = h.queue.cancel(slow).await.expect("cancel");
    assert_eq!(before.state, JobState::Active);
    pool.handle().stop_job(slow);
    // The worker comes free again: another job runs.
    let next = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    h.wait_for(60, |e| count(e, completed) == 1).await;
    assert_eq!(h.state(slow), JobState::Cancelled);
    assert_eq!(h.state(next), JobState::Completed);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_fails_transiently_and_is_retried() {
    let h = harness();
    let pool = h.start(
        scripted(),
        PoolConfig {
            builtin_timeout: Duration::from_millis(200),
            lease_ttl: Duration::from_millis(600), // heartbeat every 200 ms checks deadlines
            ..config(1)
        },
    );
    let slow = h
        .enqueue(
            "spheroid_plain_16bit.tif",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    h.wait_for(30, |e| {
        count(e, |k| matches!(k, EventKind::JobRetrying { .. })) == 1
    })
    .await;
    let job = h.queue.get(slow).expect("get").expect("exists");
    assert_eq!(job.last_error.expect("reason").code, "timeout");
    assert!(matches!(
        job.state,
        JobState::Delayed | JobState::Queued | JobState::Active
    ));
    pool.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_running_jobs_and_a_restart_completes_them() {
    let h = harness();
    let pool = h.start(scripted(), config(2));
    let slow = h
        .enqueue(
            "spheroid_plain_16bit.tif",
            spheroseg::segment::SegmenterId::builtin(),
        )
        .await;
    h.wait_for(30, |e| count(e, started) == 1).await;
    let started = Instant::now();
    pool.shutdown(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    h.wait_for(5, |e| {
        count(e, |k| matches!(k, EventKind::JobInterrupted { .. })) == 1
    })
    .await;
    // Handed back to the queue at once: queued again, its attempt refunded.
    let job = h.queue.get(slow).expect("get").expect("exists");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));

    // The next start finds nothing orphaned, and the job completes.
    let Harness {
        dir, queue, images, ..
    } = h;
    queue.close();
    let (queue, recovery) = Queue::open(
        &dir.path().join("q.redb"),
        QueueOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("reopen");
    assert_eq!(recovery.orphans, vec![]);
    let events = crate::util::events_of(&queue);
    let h = Harness {
        dir,
        queue,
        images,
        events,
    };
    let pool = h.start(builtin_only(), config(2));
    h.wait_for(60, |e| count(e, completed) == 1).await;
    assert_eq!(h.state(slow), JobState::Completed);
    pool.shutdown(Duration::from_secs(5)).await;
}

/// A `command` ML service whose behaviour a flag file controls: present, the program fails with
/// exit code 2 (transient); absent, it returns a square.
fn flaky_service(dir: &Path, flag: &Path, fallback_builtin: bool) -> Arc<MlService> {
    let script = format!(
        r#"if [ -e '{}' ]; then echo 'service down' >&2; exit 2; fi
echo '{{"success":true,"polygons":[{{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}}]}}' > "$1""#,
        flag.display()
    );
    Arc::new(MlService::new(
        Arc::new(CommandSegmenter {
            name: "command".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                script,
                "sh".into(),
                "{output_json}".into(),
            ],
            work_dir: dir.join("work"),
        }),
        Breaker::new(
            BreakerConfig {
                min_calls: 3,
                open_base: Duration::from_millis(1500),
                ..BreakerConfig::default()
            },
            SystemClock.now(),
        ),
        fallback_builtin,
        "sh",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_holds_jobs_without_spending_attempts_and_closes_again() {
    let h = harness();
    let flag = h.dir.path().join("down");
    std::fs::write(&flag, b"").expect("flag");
    let svc = flaky_service(h.dir.path(), &flag, false);
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("command").expect("name"), Arc::clone(&svc))]),
    };
    let pool = h.start(segmenters, config(1));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            h.enqueue(
                "spheroid_lumen_8bit.png",
                SegmenterId::new("command").expect("name"),
            )
            .await,
        );
    }
    // Three transient failures (the minimum number of calls) open it; each failure is also a
    // retry of its job. The two events come from different places, so wait for both.
    h.wait_for(30, |e| {
        count(
            e,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "open"),
        ) >= 1
            && count(
                e,
                |k| matches!(k, EventKind::JobRetrying { code, .. } if code == "command-failed"),
            ) >= 3
    })
    .await;
    // While it is open, leased jobs are handed back with their attempt refunded.
    h.wait_for(10, |e| {
        count(
            e,
            |k| matches!(k, EventKind::JobRetrying { code, .. } if code == "breaker-open"),
        ) >= 1
    })
    .await;
    let snapshot = svc
        .breaker
        .lock()
        .expect("lock")
        .snapshot(SystemClock.now());
    assert!(snapshot.stats.failures >= 3);
    // The service recovers: the half-open trial succeeds, the breaker closes, every job completes.
    std::fs::remove_file(&flag).expect("recover");
    let events = h.wait_for(60, |e| count(e, completed) == 6).await;
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "half-open")
        ) >= 1
    );
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "closed")
        ) >= 1
    );
    for id in &ids {
        let job = h.queue.get(*id).expect("get").expect("exists");
        assert_eq!(job.state, JobState::Completed);
        assert!(
            job.attempts <= 3,
            "held jobs spent no attempts: {}",
            job.attempts
        );
        let r = SegmentResult::from_bytes(&h.queue.result(*id).expect("read").expect("stored"))
            .expect("decodes");
        assert_eq!(r.segmenter, "command");
        assert_eq!(r.metrics[0].area, 2500.0);
    }
    let all = h
        .queue
        .list(&JobFilter::default(), None, 100)
        .expect("list");
    assert_eq!(all.jobs.len(), 6, "none lost, none duplicated");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_jobs_run_on_builtin_while_the_breaker_is_open() {
    let h = harness();
    let flag = h.dir.path().join("down");
    std::fs::write(&flag, b"").expect("flag");
    let svc = flaky_service(h.dir.path(), &flag, true);
    svc.breaker
        .lock()
        .expect("lock")
        .force_open(SystemClock.now());
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("command").expect("name"), svc)]),
    };
    let pool = h.start(segmenters, config(1));
    let id = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            SegmenterId::new("command").expect("name"),
        )
        .await;
    h.wait_for(60, |e| count(e, completed) == 1).await;
    let r = SegmentResult::from_bytes(&h.queue.result(id).expect("read").expect("stored"))
        .expect("decodes");
    assert!(
        r.segmenter.starts_with("builtin (fallback: command"),
        "{}",
        r.segmenter
    );
    assert_eq!(r.objects[0].holes.len(), 1, "the builtin pipeline's result");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ml_service_fails_the_job_with_a_reason() {
    let h = harness();
    let pool = h.start(builtin_only(), config(1));
    let id = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            SegmenterId::new("nowhere").expect("name"),
        )
        .await;
    h.wait_for(30, |e| {
        count(e, |k| matches!(k, EventKind::JobFailed { .. })) == 1
    })
    .await;
    let job = h.queue.get(id).expect("get").expect("exists");
    assert_eq!(job.last_error.expect("reason").code, "unknown-segmenter");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_submits_all_or_nothing_and_publishes_queued_and_cancelled() {
    use spheroseg::service::{Service, Source, SubmitOptions};

    let h = harness();
    let pool = h.start(scripted(), config(1));
    let service = Service {
        queue: h.queue.clone(),
        images: h.images.clone(),
        events: h.events.clone(),
        pool: Some(pool.handle()),
        default_segmenter: spheroseg::segment::SegmenterId::builtin(),
    };
    // One refused file: no job at all, and the error names it.
    let refused = service
        .submit(
            vec![
                Source::Path(fixture("spheroid_lumen_8bit.png")),
                Source::Bytes {
                    name: "notes.tif".into(),
                    bytes: b"not an image".to_vec(),
                },
            ],
            SubmitOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "not-an-image");
    assert!(refused.to_string().contains("notes.tif"), "{refused}");
    assert_eq!(h.queue.stats().expect("stats").counts.total(), 0);

    // A running job (the slow one) and a queued one behind it on the single worker.
    let opts = SubmitOptions {
        dedupe: true,
        ..SubmitOptions::default()
    };
    let done = service
        .submit(
            vec![Source::Path(fixture("spheroid_plain_16bit.tif"))],
            opts.clone(),
        )
        .await
        .expect("submitted");
    let running = done[0].job.id;
    h.wait_for(30, |e| count(e, started) == 1).await;
    let done = service
        .submit(
            vec![Source::Path(fixture("spheroid_lumen_8bit.png"))],
            opts.clone(),
        )
        .await
        .expect("submitted");
    let waiting = done[0].job.id;
    let again = service
        .submit(vec![Source::Path(fixture("spheroid_lumen_8bit.png"))], opts)
        .await
        .expect("submitted");
    assert!(
        again[0].deduplicated,
        "the same image, segmenter and parameters"
    );
    assert_eq!(again[0].job.id, waiting);

    service.cancel(running).await.expect("cancel running");
    h.wait_for(60, |e| count(e, completed) == 1).await;
    assert_eq!(h.state(running), JobState::Cancelled);
    assert_eq!(h.state(waiting), JobState::Completed);
    let events = h
        .wait_for(5, |e| {
            count(e, |k| matches!(k, EventKind::JobCancelled { .. })) == 1
        })
        .await;
    assert_eq!(
        count(&events, |k| matches!(k, EventKind::JobQueued { .. })),
        2
    );

    service.retry(running).await.expect("retry");
    let events = h
        .wait_for(5, |e| {
            count(e, |k| matches!(k, EventKind::JobQueued { .. })) == 3
        })
        .await;
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::JobCancelled {
            was: JobState::Active,
            ..
        }
    )));
    pool.shutdown(Duration::ZERO).await;
}
