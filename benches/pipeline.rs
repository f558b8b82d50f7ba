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
//! host), and runs them to completion, in 5 rounds. Prints both times per image and their ratio
//! for each round and the median ratio (the target is at most 1.1).
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

/// What a process or thread has used, from its `/proc/.../stat` line.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    /// CPU seconds in user space and in the kernel.
    user: f64,
    system: f64,
    /// Minor page faults (a page touched for the first time).
    faults: f64,
}

impl Usage {
    fn of(stat: &str) -> Usage {
        // The fields after the command name (which is in parentheses).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Usage {
            user: field(11) / 100.0,
            system: field(12) / 100.0,
            faults: field(7),
        }
    }

    /// This process so far (threads that ended included).
    fn process() -> Usage {
        Usage::of(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
    }

    fn cpu(&self) -> f64 {
        self.user + self.system
    }

    fn minus(self, before: Usage) -> Usage {
        Usage {
            user: self.user - before.user,
            system: self.system - before.system,
            faults: self.faults - before.faults,
        }
    }

    fn add(&mut self, other: Usage) {
        self.user += other.user;
        self.system += other.system;
        self.faults += other.faults;
    }
}

/// Threads named like the upload clients' runtime.
const CLIENT_THREADS: &str = "bench-client";

/// What this process's live threads used so far, summed by thread name without its trailing
/// number (`worker-0` and `worker-1` are `worker`).
fn threads_usage() -> HashMap<String, Usage> {
    let mut by_name: HashMap<String, Usage> = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        by_name
            .entry(name.to_owned())
            .or_default()
            .add(Usage::of(&stat));
    }
    by_name
}

/// What each thread name used between two [`threads_usage`] readings, the most first.
fn threads_delta(
    before: &HashMap<String, Usage>,
    after: &HashMap<String, Usage>,
) -> Vec<(String, Usage)> {
    let mut rows: Vec<(String, Usage)> = after
        .iter()
        .map(|(name, u)| {
            let u0 = before.get(name).copied().unwrap_or_default();
            (name.clone(), u.minus(u0))
        })
        .filter(|(_, u)| u.cpu() > 0.0 || u.faults > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.cpu().total_cmp(&a.1.cpu()));
    rows
}

/// Rounds of the server-against-offline comparison: one run varies by a fifth from round to
/// round on a shared machine, so the median ratio is what to read.
const ROUNDS: usize = 5;

/// The median of a few values.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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
    let mut last_threads = Vec::new();
    for round in 0..ROUNDS {
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
        let use0 = Usage::process();
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
        let offline_use = Usage::process().minus(use0);

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
        // The upload clients run on a runtime of their own, so their CPU (a browser's, in real
        // use) can be told apart from the server's.
        let clients_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(CLIENT_THREADS)
            .enable_all()
            .build()
            .expect("client runtime");
        let client = reqwest::Client::new();
        let bodies: Vec<(String, axum::body::Bytes)> = files
            .iter()
            .map(|f| {
                let name = f.file_name().expect("name").to_string_lossy().into_owned();
                (name, std::fs::read(f).expect("read").into())
            })
            .collect();
        let bodies = Arc::new(bodies);
        let queue = app.state().service.queue.clone();
        let started = Instant::now();
        let use0 = Usage::process();
        let threads0 = threads_usage();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (client, base, bodies) = (client.clone(), base.clone(), Arc::clone(&bodies));
                clients_rt.spawn(async move {
                    for (name, bytes) in bodies.iter().skip(c).step_by(CLIENTS) {
                        let body = reqwest::Body::from(bytes.clone());
                        let part =
                            reqwest::multipart::Part::stream_with_length(body, bytes.len() as u64)
                                .file_name(name.clone());
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
        let server_use = Usage::process().minus(use0);
        let threads = threads_delta(&threads0, &threads_usage());
        let client_use = threads
            .iter()
            .find(|(name, _)| name == CLIENT_THREADS)
            .map_or_else(Usage::default, |(_, u)| *u);
        clients_rt.shutdown_background();
        // The same outlines either way.
        let page = queue.list(&Default::default(), None, 1000).expect("list");
        for job in &page.jobs {
            let objects = job.result.as_ref().expect("a result").objects as usize;
            assert_eq!(Some(&objects), offline_objects.get(&job.image.name));
        }
        app.shutdown().await.expect("shutdown");
        last_threads = threads;
        rows.push((offline, server, offline_use, server_use, client_use));
    }
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>8}",
        "60 images of 1024² 8-bit PNG, 2 workers", "offline", "server", "ratio"
    );
    let per = |secs: f64| secs * 1e3 / IMAGES as f64;
    for (i, (offline, server, offline_use, server_use, client_use)) in rows.iter().enumerate() {
        let round = i + 1;
        let served = server_use.minus(*client_use);
        let row = |what: &str, offline: f64, server: f64| {
            println!(
                "{:<46} {:>7.1} ms {:>7.1} ms {:>8.2}",
                format!("round {round}: {what}"),
                per(offline),
                per(server),
                server / offline
            );
        };
        row("wall time per image", *offline, *server);
        row("CPU time per image", offline_use.cpu(), server_use.cpu());
        row(
            "CPU per image, upload clients apart",
            offline_use.cpu(),
            served.cpu(),
        );
        println!(
            "{:<46} {:>10.0} {:>10.0} {:>8.2}",
            format!("round {round}: page faults per image"),
            offline_use.faults / IMAGES as f64,
            served.faults / IMAGES as f64,
            served.faults / offline_use.faults
        );
    }
    let wall = median(rows.iter().map(|(o, s, ..)| s / o).collect());
    let cpu = median(
        rows.iter()
            .map(|(_, _, o, s, c)| s.minus(*c).cpu() / o.cpu())
            .collect(),
    );
    for (what, ratio) in [("wall time ratio", wall), ("CPU ratio, clients apart", cpu)] {
        println!(
            "{:<46} {:>10} {:>10} {:>8.2}",
            format!("median of {ROUNDS} rounds: {what}"),
            "",
            "",
            ratio
        );
    }
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>8}",
        "server per image by thread, last round", "user", "system", "faults"
    );
    for (name, u) in &last_threads {
        println!(
            "{:<46} {:>7.2} ms {:>7.2} ms {:>8.0}",
            name,
            per(u.user),
            per(u.system),
            u.faults / IMAGES as f64
        );
    }
}
