//! A worker that finishes a builtin job leases the next queued one itself: in priority order,
//! and never once a shutdown has begun.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use spheroseg::queue::Priority;

use super::*;

/// Holds its first job until `open`, records the image name of every job, then runs the builtin
/// segmenter.
#[derive(Default)]
struct Gated {
    open: AtomicBool,
    seen: Mutex<Vec<String>>,
}

impl Segmenter for Gated {
    fn name(&self) -> &str {
        "builtin"
    }

    fn segment(
        &self,
        input: &Input<'_>,
        control: &mut Control<'_>,
    ) -> Result<SegmentResult, Failure> {
        self.seen.lock().expect("seen").push(input.name.to_owned());
        while !self.open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        Builtin.segment(input, control)
    }
}

impl Harness {
    /// A job for the stored fixture under another name, at `priority`.
    async fn enqueue_named(&self, name: &str, priority: i64) -> JobId {
        let mut image = self
            .images
            .put_path(&fixture("spheroid_plain_16bit.tif"))
            .expect("stored")
            .image;
        image.name = name.to_owned();
        let job = NewJob {
            image,
            priority: Priority::new(priority).expect("priority"),
            ..NewJob::default()
        };
        self.queue.enqueue(job).await.expect("enqueued").job.id
    }
}

fn segmenters(gated: &Arc<Gated>) -> Segmenters {
    Segmenters {
        builtin: Arc::clone(gated) as Arc<dyn Segmenter>,
        ml: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_takes_the_queued_jobs_itself_highest_priority_first() {
    let h = harness();
    let gated = Arc::new(Gated::default());
    let pool = h.start(segmenters(&gated), config(1));
    h.enqueue_named("first", 5).await;
    until(30, "the first job to start", || {
        gated.seen.lock().expect("seen").len() == 1
    })
    .await;
    // Queued while the one worker is busy: it finds them when it finishes.
    let ids = [
        h.enqueue_named("low", 1).await,
        h.enqueue_named("high", 9).await,
        h.enqueue_named("mid", 5).await,
    ];
    gated.open.store(true, Ordering::SeqCst);
    until(30, "every job to complete", || {
        ids.iter().all(|&id| h.state(id) == JobState::Completed)
    })
    .await;
    assert_eq!(
        *gated.seen.lock().expect("seen"),
        ["first", "high", "mid", "low"]
    );
    let (busy, total) = pool.handle().workers();
    assert_eq!((busy, total), (0, 1), "the worker is free again");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_no_next_job_once_a_shutdown_began() {
    let h = harness();
    let gated = Arc::new(Gated::default());
    let pool = h.start(segmenters(&gated), config(1));
    let first = h.enqueue_named("first", 5).await;
    until(30, "the first job to start", || {
        gated.seen.lock().expect("seen").len() == 1
    })
    .await;
    let queued = [h.enqueue_named("a", 5).await, h.enqueue_named("b", 5).await];
    // The running job ends inside the grace period, well after the shutdown began (its first
    // step, before any await, tells the workers to take no more).
    let release = Arc::clone(&gated);
    let opener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        release.open.store(true, Ordering::SeqCst);
    });
    pool.shutdown(Duration::from_secs(10)).await;
    opener.await.expect("opener");
    // Its result was sent to the queue before the worker let go of it.
    until(30, "the first job's result", || {
        h.state(first) == JobState::Completed
    })
    .await;
    for id in queued {
        assert_eq!(
            h.state(id),
            JobState::Queued,
            "{id} waits for the next start"
        );
    }
    assert_eq!(*gated.seen.lock().expect("seen"), ["first"]);
}
