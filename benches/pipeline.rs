//! Jobs through the whole pipeline (queue, dispatcher, worker threads, result commit, events):
//! `cargo bench --bench pipeline`.
//!
//! A no-op segmenter at 1, 2 and 50 workers measures the queue and dispatch overhead; the raw drain
//! rate of the queue (50 consumers: lease, complete) is measured in the same run for the ratio. The
//! builtin segmenter on 1024² synthetic images at 2 workers gives the real throughput. Every commit
//! is durable as in production. `SPHEROSEG_BENCH_N` sets the no-op job count (default 10,000).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::events::EventBus;
use spheroseg::images::ImageStore;
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{ImageRef, NewJob, Queue, QueueOptions};
use spheroseg::segment::Segmenters;
use spheroseg::segment::{
    Builtin, Control, DecodeLimits, Failure, ImageInfo, Input, SegmentParams, SegmentResult,
    Segmenter,
};
use spheroseg::synth::{Kind, Scene};

/// Answers at once with no objects.
struct NoOp;

impl Segmenter for NoOp {
    fn name(&self) -> &str {
        "builtin"
    }

    fn segment(&self, input: &Input<'_>, _: &mut Control<'_>) -> Result<SegmentResult, Failure> {
        Ok(SegmentResult {
            image: ImageInfo {
                name: input.name.to_owned(),
                width: 0,
                height: 0,
                format: "PNG".into(),
                bit_depth: 8,
                channels: 1,
                pages: 1,
            },
            segmenter: "noop".into(),
            params: input.params.clone(),
            decisions: None,
            objects: vec![],
            metrics: vec![],
            timings_ms: vec![],
            created_at: String::new(),
        })
    }
}

fn png(img: &spheroseg::morphology::Gray) -> Vec<u8> {
    let buf = image::GrayImage::from_raw(
        img.width,
        img.height,
        img.data.iter().map(|&v| v as u8).collect(),
    )
    .expect("pixels");
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(buf)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

struct Setup {
    _dir: tempfile::TempDir,
    queue: Queue,
    images: ImageStore,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, _) = Queue::open(
        &dir.path().join("q.redb"),
        QueueOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("queue");
    let images = ImageStore::open(dir.path(), DecodeLimits::default()).expect("images");
    Setup {
        _dir: dir,
        queue,
        images,
    }
}

async fn enqueue(queue: &Queue, images: &[ImageRef], n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let jobs = chunk
            .iter()
            .map(|&i| NewJob {
                image: images[i % images.len()].clone(),
                params: SegmentParams::default(),
                ..NewJob::default()
            })
            .collect();
        queue.enqueue_batch(jobs).await.expect("enqueue");
    }
}

/// Runs the pool until `n` jobs completed; returns jobs/s.
async fn run_pool(s: &Setup, segmenter: Arc<dyn Segmenter>, workers: usize, n: usize) -> f64 {
    let pool = Pool::start(
        s.queue.clone(),
        s.images.clone(),
        EventBus::new(10_000, Arc::new(SystemClock)),
        Segmenters {
            builtin: segmenter,
            ml: HashMap::new(),
        },
        PoolConfig {
            workers,
            lease_ttl: Duration::from_secs(60),
            builtin_timeout: Duration::from_secs(600),
            ml_timeout: Duration::from_secs(600),
            limits: DecodeLimits::default(),
            budget: Default::default(),
        },
        Arc::new(SystemClock),
    )
    .expect("pool");
    let before = s.queue.stats().expect("stats").counts.completed;
    let start = Instant::now();
    loop {
        let done = s.queue.stats().expect("stats").counts.completed - before;
        if done as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    pool.shutdown(Duration::from_secs(5)).await;
    n as f64 / secs
}

/// The queue alone: 50 consumers lease one job and complete it.
async fn raw_drain(queue: &Queue, n: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let q = queue.clone();
            tokio::spawn(async move {
                while let Some(l) = q
                    .lease(1, Duration::from_secs(60))
                    .await
                    .expect("lease")
                    .pop()
                {
                    q.complete(l.job.id, l.token, vec![0; 64], 0)
                        .await
                        .expect("complete");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("consumer");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("SPHEROSEG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = setup();
        let small = Scene::random(1, 64, 8, Kind::Plain).render().0;
        let tiny = vec![
            s.images
                .put(&png(&small), "tiny.png")
                .expect("stored")
                .image,
        ];

        enqueue(&s.queue, &tiny, n).await;
        let raw = raw_drain(&s.queue, n).await;
        println!(
            "{:<46} {:>8} {:>10}",
            "scenario (all durable)", "jobs", "jobs/s"
        );
        println!(
            "{:<46} {:>8} {:>10.0}",
            "queue alone: 50 consumers lease+complete", n, raw
        );
        for workers in [1, 2, 50] {
            enqueue(&s.queue, &tiny, n).await;
            let rate = run_pool(&s, Arc::new(NoOp), workers, n).await;
            println!(
                "{:<46} {:>8} {:>10.0}   ({:.2} of the raw drain)",
                format!("pool, no-op segmenter, {workers} workers"),
                n,
                rate,
                rate / raw
            );
        }
        let big: Vec<ImageRef> = (0..8)
            .map(|seed| {
                let img = Scene::random(100 + seed, 1024, 8, Kind::Plain).render().0;
                s.images
                    .put(&png(&img), "spheroid.png")
                    .expect("stored")
                    .image
            })
            .collect();
        let m = 40;
        enqueue(&s.queue, &big, m).await;
        let rate = run_pool(&s, Arc::new(Builtin), 2, m).await;
        println!(
            "{:<46} {:>8} {:>10.1}   ({:.0} ms per image per worker)",
            "pool, builtin on 1024² PNG, 2 workers",
            m,
            rate,
            2000.0 / rate
        );
        s.queue.close();
    });
}
