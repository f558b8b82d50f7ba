//! Power loss, simulated: the queue and the image store run on the simulated disk of
//! `fsio/sim.rs`; at random points the power fails (unsynced writes kept, dropped or torn at
//! 512-byte sectors; a prefix of unsynced directory changes kept), spheroseg starts again on what
//! the disk kept, and the result is compared with a model of what was acknowledged: every
//! acknowledged command is there, nothing is half there (a job's image is whole, the counters
//! match the jobs, a deleted job stays deleted), and the queue goes on working.
//!
//! Some enqueues are still in flight when the power fails: those may or may not be there, but
//! whichever it is, whole. `SPHEROSEG_POWER_CASES` sets the number of cases (default 64).
//!
//! Beside it: a failed sync (EIO) stops the queue for good, and a full disk refuses commands and
//! then recovers, on the same simulated disk (so these run where no tmpfs can be mounted).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};
use sha2::{Digest, Sha256};

use crate::clock::SystemClock;
use crate::fsio::Fs;
use crate::fsio::sim::SimFs;
use crate::images::ImageStore;
use crate::queue::{JobError, JobFilter, JobId, JobState, NewJob, Queue, QueueOptions};
use crate::segment::DecodeLimits;

const DATA: &str = "/sim/data";

#[derive(Clone, Debug)]
enum Step {
    /// Store an image (seeded pixels) and enqueue a job on it; awaited.
    Submit(u8),
    /// Start this many submissions without waiting for them.
    Burst(u8),
    /// Lease one job and complete it with a result.
    Complete,
    /// Lease one job and fail it for good.
    Fail,
    /// Lease one job and keep it (a lease is logged but not synced).
    Lease,
    /// Cancel, delete or retry the n-th known job.
    Cancel(u8),
    Delete(u8),
    Retry(u8),
    /// The power fails after this many tens of microseconds (bursts go on meanwhile).
    Cut(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<u8>().prop_map(Step::Submit),
        1 => (1u8..6).prop_map(Step::Burst),
        3 => Just(Step::Complete),
        1 => Just(Step::Fail),
        2 => Just(Step::Lease),
        1 => any::<u8>().prop_map(Step::Cancel),
        1 => any::<u8>().prop_map(Step::Delete),
        1 => any::<u8>().prop_map(Step::Retry),
        2 => any::<u8>().prop_map(Step::Cut),
    ]
}

/// A small PNG whose pixels depend on `seed` and `n`.
fn png(seed: u8, n: u64) -> Vec<u8> {
    let img = image::GrayImage::from_fn(16, 16, |x, y| {
        image::Luma([(x * 13 + y * 7 + u32::from(seed) + n as u32 * 31) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// What the model knows of a job from its acknowledged commands.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// Queued, delayed or active: after a restart it may be queued or delayed (a lease is not
    /// durable), or in any later state a command in flight reached.
    Live,
    Completed(Vec<u8>),
    Failed,
    Cancelled,
    Deleted,
}

struct Run {
    rt: tokio::runtime::Runtime,
    fs: SimFs,
    options: QueueOptions,
    queue: Queue,
    images: ImageStore,
    model: HashMap<JobId, Known>,
    order: Vec<JobId>,
    /// Jobs whose enqueue was acknowledged by a burst, pushed by the tasks themselves.
    burst_acks: Arc<Mutex<Vec<JobId>>>,
    bursts: Vec<tokio::task::JoinHandle<()>>,
    submitted: u64,
    cuts: usize,
    /// Mixed into each cut's randomness.
    seed: u8,
}

fn open(fs: &SimFs, options: &QueueOptions) -> Result<(Queue, ImageStore), String> {
    let fs_arc: Arc<dyn Fs> = Arc::new(fs.clone());
    let images = ImageStore::open_on(
        Arc::clone(&fs_arc),
        Path::new(DATA),
        DecodeLimits::default(),
    )
    .map_err(|e| format!("image store: {e}"))?;
    let (queue, _) = Queue::open_on(
        fs_arc,
        &Path::new(DATA).join("q.redb"),
        options.clone(),
        Arc::new(SystemClock),
    )
    .map_err(|e| format!("queue: {e}"))?;
    Ok((queue, images))
}

impl Run {
    fn new(options: QueueOptions) -> Run {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let fs = SimFs::default().with_dir(Path::new(DATA));
        let (queue, images) = open(&fs, &options).expect("a fresh disk opens");
        Run {
            rt,
            fs,
            options,
            queue,
            images,
            model: HashMap::new(),
            order: Vec::new(),
            burst_acks: Arc::default(),
            bursts: Vec::new(),
            submitted: 0,
            cuts: 0,
            seed: 0,
        }
    }

    fn nth(&self, n: u8) -> Option<JobId> {
        (!self.order.is_empty()).then(|| self.order[n as usize % self.order.len()])
    }

    fn submit_job(&mut self, seed: u8) -> NewJob {
        self.submitted += 1;
        let stored = self
            .images
            .put(&png(seed, self.submitted), "s.png")
            .expect("image stored");
        NewJob {
            image: stored.image,
            ..NewJob::default()
        }
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let q = self.queue.clone();
        match step {
            Step::Submit(seed) => {
                let job = self.submit_job(*seed);
                let id = self.rt.block_on(q.enqueue(job)).expect("enqueue").job.id;
                self.model.insert(id, Known::Live);
                self.order.push(id);
            }
            Step::Burst(n) => {
                for i in 0..*n {
                    let job = self.submit_job(i);
                    let (q, acks) = (q.clone(), Arc::clone(&self.burst_acks));
                    self.bursts.push(self.rt.spawn(async move {
                        if let Ok(e) = q.enqueue(job).await {
                            acks.lock().expect("acks").push(e.job.id);
                        }
                    }));
                }
            }
            Step::Complete | Step::Fail => {
                let leased = self
                    .rt
                    .block_on(q.lease(1, Duration::from_secs(60)))
                    .expect("lease");
                for l in leased {
                    let id = l.job.id;
                    if matches!(step, Step::Complete) {
                        let result = format!("result of {id}").into_bytes();
                        self.rt
                            .block_on(q.complete(id, l.token, result.clone(), 1))
                            .expect("complete");
                        self.model.insert(id, Known::Completed(result));
                    } else {
                        let error = JobError::permanent(
                            crate::error_code::ErrorCode::DECODE_FAILED,
                            "broken",
                        );
                        self.rt.block_on(q.fail(id, l.token, error)).expect("fail");
                        self.model.insert(id, Known::Failed);
                    }
                    self.order.retain(|j| *j != id);
                    self.order.push(id);
                }
            }
            Step::Cancel(n) | Step::Delete(n) | Step::Retry(n) => {
                let Some(id) = self.nth(*n) else {
                    return Ok(());
                };
                let r = match step {
                    Step::Cancel(_) => self.rt.block_on(q.cancel(id)).map(|_| Known::Cancelled),
                    Step::Delete(_) => self.rt.block_on(q.delete(id)).map(|_| Known::Deleted),
                    _ => self.rt.block_on(q.retry(id)).map(|_| Known::Live),
                };
                // Refusals (wrong state, already deleted) are fine; storage errors are not.
                match r {
                    Ok(k) => {
                        if k == Known::Deleted {
                            self.order.retain(|j| *j != id);
                        }
                        self.model.insert(id, k);
                    }
                    Err(e) if e.is_transient() => {
                        return Err(TestCaseError::fail(format!("{step:?}: {e}")));
                    }
                    Err(_) => {}
                }
            }
            Step::Lease => {
                self.rt
                    .block_on(q.lease(1, Duration::from_secs(60)))
                    .expect("lease");
            }
            Step::Cut(wait) => {
                std::thread::sleep(Duration::from_micros(u64::from(*wait) * 10));
                self.cut()?;
            }
        }
        Ok(())
    }

    /// The power fails now; spheroseg starts again on what the disk kept and is checked.
    fn cut(&mut self) -> Result<(), TestCaseError> {
        self.cuts += 1;
        let mut rng = TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &[self.cuts as u8 ^ (self.submitted as u8) ^ self.seed.rotate_left(3); 32],
        );
        // Acknowledgements recorded before the cut are the ones the disk must keep.
        let after = {
            let acks = self.burst_acks.lock().expect("acks");
            let after = self.fs.power_cut(&mut rng);
            for id in acks.iter() {
                self.model.entry(*id).or_insert(Known::Live);
                if !self.order.contains(id) {
                    self.order.push(*id);
                }
            }
            after
        };
        // The old process is gone: its tasks and threads now fail on dead handles.
        for b in self.bursts.drain(..) {
            b.abort();
        }
        self.fs = after;
        let (queue, images) = open(&self.fs, &self.options)
            .map_err(|e| TestCaseError::fail(format!("restart refused: {e}")))?;
        let old = std::mem::replace(&mut self.queue, queue);
        self.images = images;
        drop(old);
        self.check()
    }

    /// Every acknowledged command is there and nothing is half there.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let all = self
            .queue
            .list(&JobFilter::default(), None, 100_000)
            .map_err(|e| TestCaseError::fail(format!("list: {e}")))?
            .jobs;
        let found: HashMap<JobId, _> = all.iter().map(|j| (j.id, j)).collect();
        for (id, known) in &self.model {
            let job = found.get(id);
            match (known, job) {
                (Known::Deleted, None) => {}
                (Known::Deleted, Some(j)) => {
                    return Err(TestCaseError::fail(format!("deleted job came back: {j:?}")));
                }
                (k, None) => {
                    return Err(TestCaseError::fail(format!(
                        "acknowledged job {id} ({k:?}) lost"
                    )));
                }
                (Known::Live, Some(_)) => {}
                (Known::Completed(result), Some(j)) => {
                    prop_assert_eq!(j.state, JobState::Completed, "{:?}", j);
                    let stored = self.queue.result(*id).expect("result read");
                    prop_assert_eq!(stored.as_ref(), Some(result), "result of {}", id);
                }
                (Known::Failed, Some(j)) => prop_assert!(
                    matches!(
                        j.state,
                        JobState::Failed | JobState::Queued | JobState::Delayed
                    ),
                    "{:?}",
                    j
                ),
                (Known::Cancelled, Some(j)) => prop_assert!(
                    matches!(j.state, JobState::Cancelled | JobState::Queued),
                    "{:?}",
                    j
                ),
            }
        }
        // No job is active after a restart, and a job's image is whole.
        for j in &all {
            prop_assert_ne!(j.state, JobState::Active, "{:?}", j);
            let bytes = self
                .images
                .read(&j.image.hash)
                .map_err(|e| TestCaseError::fail(format!("image of {}: {e}", j.id)))?;
            let hash: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            prop_assert_eq!(&hash, &j.image.hash, "image of {} is torn", j.id);
            // A job the model does not know came from a burst in flight: now it counts.
            if let std::collections::hash_map::Entry::Vacant(e) = self.model.entry(j.id) {
                e.insert(Known::Live);
                self.order.push(j.id);
            }
        }
        let counts = self.queue.stats().expect("stats").counts;
        let total = counts.queued
            + counts.delayed
            + counts.active
            + counts.completed
            + counts.failed
            + counts.cancelled;
        prop_assert_eq!(
            total,
            all.len() as u64,
            "counters match the jobs: {:?}",
            counts
        );
        Ok(())
    }
}

fn options() -> impl Strategy<Value = QueueOptions> {
    (
        prop_oneof![Just(64u64 << 10), Just(256 << 10)],
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_millis(20)),
            Just(Duration::from_secs(3600))
        ],
    )
        .prop_map(|(wal_bytes, checkpoint_every)| QueueOptions {
            wal_bytes,
            checkpoint_every,
            cache_bytes: 1 << 20,
            // The reserve is a file of the real disk (`reserve.rs`), not of the simulated one.
            reserve_bytes: 0,
            ..QueueOptions::default()
        })
}

fn cases() -> u32 {
    std::env::var("SPHEROSEG_POWER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_power_cut_loses_no_acknowledged_command(
        options in options(),
        steps in prop::collection::vec(step(), 20..60),
        seed in any::<u8>(),
    ) {
        let mut run = Run::new(options);
        run.seed = seed;
        for s in &steps {
            run.run(s)?;
        }
        // And one cut at the end, after whatever was last in flight.
        run.cut()?;
        let (syncs, writes) = run.fs.counters();
        eprintln!(
            "power-loss case: {} steps, {} cuts, {} jobs known, last disk {syncs} syncs {writes} writes",
            steps.len(),
            run.cuts,
            run.model.len()
        );
        run.queue.close();
    }
}

/// An image reference for jobs whose image the test never reads.
fn stub_image() -> crate::queue::ImageRef {
    crate::queue::ImageRef {
        hash: "h".into(),
        name: "b.png".into(),
        width: 16,
        height: 16,
        bytes: 1,
    }
}

fn sim_queue(fs: &SimFs) -> (tokio::runtime::Runtime, Queue, ImageStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = QueueOptions {
        wal_bytes: 64 << 10,
        cache_bytes: 1 << 20,
        checkpoint_every: Duration::from_secs(3600),
        reserve_bytes: 0,
        ..QueueOptions::default()
    };
    let (queue, images) = open(fs, &options).expect("opens");
    (rt, queue, images)
}

#[test]
fn a_failed_sync_stops_the_queue_for_good_and_a_restart_keeps_what_was_acknowledged() {
    let fs = SimFs::default().with_dir(Path::new(DATA));
    let (rt, queue, images) = sim_queue(&fs);
    let job = |n| NewJob {
        image: images.put(&png(1, n), "a.png").expect("stored").image,
        ..NewJob::default()
    };
    let kept = rt.block_on(queue.enqueue(job(1))).expect("enqueue").job.id;
    fs.fail_syncs(true);
    let e = rt.block_on(
        queue.enqueue(NewJob {
            image: images
                .put(&png(1, 1), "a.png")
                .expect("same image, already stored")
                .image,
            ..NewJob::default()
        }),
    );
    let e = e.unwrap_err();
    assert!(!e.is_disk_full(), "{e}");
    // The disk works again, but after a failed fsync nothing may be acknowledged.
    fs.fail_syncs(false);
    let again = rt.block_on(queue.enqueue(job(1))).unwrap_err();
    assert!(again.to_string().contains("restart spheroseg"), "{again}");
    drop(queue);
    let after = fs.power_cut(&mut TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let (rt, queue, _) = sim_queue(&after);
    assert!(queue.get(kept).expect("read").is_some());
    rt.block_on(queue.enqueue(NewJob {
        image: stub_image(),
        ..NewJob::default()
    }))
    .expect("a restart takes changes again");
    queue.close();
}

#[test]
fn a_full_simulated_disk_refuses_with_disk_full_and_recovers_when_space_returns() {
    let fs = SimFs::default().with_dir(Path::new(DATA));
    let (rt, queue, _images) = sim_queue(&fs);
    let big = |i: usize| NewJob {
        metadata: vec![("note".into(), format!("{i}{}", "x".repeat(4 << 10)))],
        image: stub_image(),
        ..NewJob::default()
    };
    fs.set_capacity(Some(fs.used() + (512 << 10)));
    let mut acked = Vec::new();
    let refused = loop {
        match rt.block_on(queue.enqueue(big(acked.len()))) {
            Ok(e) => acked.push(e.job.id),
            Err(e) => break e,
        }
        assert!(acked.len() < 10_000, "the disk never filled");
    };
    assert!(refused.is_disk_full(), "{refused}");
    assert!(queue.disk_full().is_some());
    assert!(queue.get(acked[0]).expect("reads go on").is_some());
    fs.set_capacity(None);
    let started = std::time::Instant::now();
    let next = loop {
        match rt.block_on(queue.enqueue(big(0))) {
            Ok(e) => break e.job.id,
            Err(e) if e.is_disk_full() && started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    acked.push(next);
    for id in &acked {
        assert!(queue.get(*id).expect("read").is_some(), "{id} kept");
    }
    assert_eq!(
        queue.stats().expect("stats").counts.queued,
        acked.len() as u64
    );
    queue.close();
}
