//! The job pipeline end to end, in process: images stored, jobs enqueued, the dispatcher and the
//! worker threads running them, results stored, events observed; panics, cancel, timeouts,
//! shutdown and restart; ML services behind the circuit breaker in `pool/ml.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::events::{Event, EventBus, EventKind, Missed};
use spheroseg::images::ImageStore;
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{JobFilter, JobId, JobState, NewJob, Queue, QueueOptions};
use spheroseg::segment::SegmenterId;
use spheroseg::segment::Segmenters;
use spheroseg::segment::{Builtin, Control, Failure, Input, SegmentResult, Segmenter};

use crate::util::fixture;

/// A worker leasing its next builtin job itself.
mod chain;
/// The dispatcher's sweep and due jobs under a stream of wake-ups.
mod dispatch;
/// Remote ML calls off the CPU workers: limits in flight, cancel, shutdown.
mod inflight;
/// ML services behind the circuit breaker.
mod ml;
/// Open Inference Protocol services against a real MLServer.
mod oip;
/// Progress never follows the end of its attempt.
mod progress;
/// Several ML services serving one segmenter: routing, Retry-After, passing a job on, outages.
mod services;

pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) queue: Queue,
    pub(crate) images: ImageStore,
    pub(crate) events: EventBus,
}

pub(crate) fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    Harness {
        dir,
        queue,
        images,
        events,
    }
}

pub(crate) fn config(workers: usize) -> PoolConfig {
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

/// Waits until `done` holds, or fails after `secs`.
pub(crate) async fn until(secs: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn builtin_only() -> Segmenters {
    Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::new(),
    }
}

pub(crate) fn count(events: &[Arc<Event>], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

pub(crate) fn completed(e: &EventKind) -> bool {
    matches!(e, EventKind::JobCompleted { .. })
}

pub(crate) fn started(e: &EventKind) -> bool {
    matches!(e, EventKind::JobStarted { .. })
}

/// Whether an event is about the job `id` and of `kind`: its type as JSON names it
/// (`job_started`), or the type and a requeue's reason (`job_requeued:due`).
pub(crate) fn about(id: JobId, kind: &'static str) -> impl Fn(&EventKind) -> bool {
    let id = id.to_string();
    let (kind, reason) = kind.split_once(':').unwrap_or((kind, ""));
    move |k| {
        let v = serde_json::to_value(k).expect("json");
        v["type"] == kind && v["job_id"] == id && (reason.is_empty() || v["reason"] == reason)
    }
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
