//! Jobs through the whole pipeline (queue, dispatcher, worker threads, result commit, events):
//! `cargo bench --bench pipeline`.
//!
//! A no-op segmenter at 1, 2 and 50 workers measures the queue and dispatch overhead; the raw drain
//! rate of the queue (50 consumers: lease, complete) is measured in the same run for the ratio. The
//! builtin segmenter on 1024² synthetic images at 2 workers gives the real throughput. Every commit
//! is durable as in production. `SPHEROSEG_BENCH_N` sets the no-op job count (default 10,000).
//!
//! Last, the server path against the offline one on the same 60 different 1024² 8-bit PNGs at 2
//! workers, in one run: `spheroseg segment`'s code (JSON, mask and CSV written), then a real
//! `serve` (an `App` on loopback) that gets each image uploaded over HTTP, one request per image by
//! 6 clients at once as the status page sends them (a browser opens at most 6 connections to one
//! host), and runs them to completion. Prints both times per image and their ratio (the target is at most 1.1).
//! `SPHEROSEG_BENCH_ONLY=server` runs only that part.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::events::EventBus;
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{ImageRef, NewJob, Queue};
use spheroseg::segment::Segmenters;
use spheroseg::segment::{
    Builtin, Control, DecodeLimits, Failure, ImageInfo, Input, SegmentParams, SegmentResult,
    Segmenter,
};
use spheroseg::synth::{Kind, Scene};

use common::{Setup, png, setup};

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
            pixel_size: None,
            params: input.params.clone(),
            decisions: None,
            objects: vec![],
            metrics: vec![],
            flags: vec![],
            timings_ms: vec![],
            created_at: String::new(),
            metadata: Vec::new(),
            ml: None,
            corrected: false,
        })
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
        if std::env::var("SPHEROSEG_BENCH_ONLY").as_deref() == Ok("server") {
            server_against_offline().await;
            return;
        }
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
        server_against_offline().await;
    });
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// 60 images, `spheroseg segment --workers 2` against upload + `serve --workers 2`.
async fn server_against_offline() {
    const IMAGES: u64 = 60;
    const CLIENTS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).expect("dir");
    let files: Vec<std::path::PathBuf> = (0..IMAGES)
        .map(|seed| {
            let img = Scene::random(500 + seed, 1024, 8, Kind::Plain).render().0;
            let p = inputs.join(format!("spheroid_{seed:02}.png"));
            std::fs::write(&p, png(&img)).expect("write");
            p
        })
        .collect();
    let mut rows = Vec::new();
    for round in 0..3 {
        // Offline.
        let out = dir.path().join(format!("out-{round}"));
        let batch = spheroseg::offline::Batch {
            files: files.clone(),
            out,
            formats: spheroseg::offline::Formats {
                json: true,
                csv: true,
                mask: true,
                ..spheroseg::offline::Formats::default()
            },
            params: SegmentParams::default(),
            workers: 2,
            limits: DecodeLimits::default(),
        };
        let started = Instant::now();
        let cpu0 = cpu_secs();
        let done = tokio::task::spawn_blocking(move || {
            spheroseg::offline::run(&batch, &mut |_| {}).expect("offline run")
        })
        .await
        .expect("offline task");
        assert!(done.iter().all(|o| o.result.is_ok()));
        let offline_objects: HashMap<String, usize> = done
            .iter()
            .map(|o| {
                let r = o.result.as_ref().expect("ok");
                (r.image.name.clone(), r.objects.len())
            })
            .collect();
        let offline = started.elapsed().as_secs_f64();
        let offline_cpu = cpu_secs() - cpu0;

        // The server: upload over HTTP, run to completion.
        let config = spheroseg::config::Config::load(&spheroseg::config::Sources {
            file: None,
            env: HashMap::new(),
            flags: spheroseg::config::Layer {
                data_dir: Some(dir.path().join(format!("data-{round}"))),
                workers: Some(2),
                ..spheroseg::config::Layer::default()
            },
        })
        .expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let app = spheroseg::app::App::start(config, listener)
            .await
            .expect("serve");
        let base = format!("http://{}", app.addr());
        spheroseg::segment::http::install_crypto_provider();
        let client = reqwest::Client::new();
        let bodies: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|f| {
                let name = f.file_name().expect("name").to_string_lossy().into_owned();
                (name, std::fs::read(f).expect("read"))
            })
            .collect();
        let bodies = Arc::new(bodies);
        let queue = app.state().service.queue.clone();
        let started = Instant::now();
        let cpu0 = cpu_secs();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (client, base, bodies) = (client.clone(), base.clone(), Arc::clone(&bodies));
                tokio::spawn(async move {
                    for (name, bytes) in bodies.iter().skip(c).step_by(CLIENTS) {
                        let part =
                            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone());
                        let resp = client
                            .post(format!("{base}/api/jobs"))
                            .multipart(reqwest::multipart::Form::new().part("image", part))
                            .send()
                            .await
                            .expect("upload");
                        assert_eq!(resp.status().as_u16(), 202);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client");
        }
        while queue.stats().expect("stats").counts.completed < IMAGES {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let server = started.elapsed().as_secs_f64();
        let server_cpu = cpu_secs() - cpu0;
        // The same outlines either way.
        let page = queue.list(&Default::default(), None, 1000).expect("list");
        for job in &page.jobs {
            let objects = job.result.as_ref().expect("a result").objects as usize;
            assert_eq!(Some(&objects), offline_objects.get(&job.image.name));
        }
        app.shutdown().await.expect("shutdown");
        rows.push((offline, server, offline_cpu, server_cpu));
    }
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>8}",
        "60 images of 1024² 8-bit PNG, 2 workers", "offline", "server", "ratio"
    );
    let per = |secs: f64| secs * 1e3 / IMAGES as f64;
    for (i, (offline, server, offline_cpu, server_cpu)) in rows.iter().enumerate() {
        println!(
            "{:<46} {:>7.1} ms {:>7.1} ms {:>8.2}",
            format!("round {}: wall time per image", i + 1),
            per(*offline),
            per(*server),
            server / offline
        );
        println!(
            "{:<46} {:>7.1} ms {:>7.1} ms {:>8.2}",
            format!("round {}: CPU time per image", i + 1),
            per(*offline_cpu),
            per(*server_cpu),
            server_cpu / offline_cpu
        );
    }
}
