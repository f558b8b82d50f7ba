//! The HTTP API under load, over loopback: `cargo bench --bench http`.
//!
//! `serve` runs in process on 127.0.0.1:0 with 100,000 jobs already in its database and the queue
//! paused (so the workers do not compete with the measurement on 2 cores). 32 concurrent clients
//! then POST /api/jobs with a 64×64 PNG (each upload a different image, so every one is decoded,
//! hashed, written and fsynced), and GET /api/queue and /api/health/live. Prints jobs/s or
//! requests/s and latency p50/p99. `SPHEROSEG_BENCH_UPLOADS` sets the upload count (default 5,000).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::config::{Config, Layer, Sources};
use spheroseg::images::ImageStore;
use spheroseg::queue::{NewJob, Queue};
use spheroseg::segment::DecodeLimits;

const CLIENTS: usize = 32;

fn png(seed: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([((x * 7 + y * 13 + seed) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

async fn load<F, Fut>(n: usize, make: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (c..n).step_by(CLIENTS) {
                    let t = Instant::now();
                    assert!(make(i).await, "request {i} failed");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    (n as f64 / start.elapsed().as_secs_f64(), lat)
}

fn main() {
    let uploads: usize = std::env::var("SPHEROSEG_BENCH_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        // 100,000 jobs in the database before the server starts.
        {
            let (queue, _) = Queue::open(
                &data.join("spheroseg.redb"),
                spheroseg::queue::QueueOptions::default(),
                Arc::new(SystemClock),
            )
            .expect("queue");
            let images = ImageStore::open(&data, DecodeLimits::default()).expect("images");
            let image = images.put(&png(0), "seed.png").expect("stored").image;
            for _ in 0..100 {
                let jobs = (0..1000)
                    .map(|_| NewJob {
                        image: image.clone(),
                        ..NewJob::default()
                    })
                    .collect();
                queue.enqueue_batch(jobs).await.expect("prefill");
            }
            queue.set_paused(true).await.expect("pause");
            queue.close();
        }
        let config = Config::load(&Sources {
            file: None,
            env: HashMap::from([("SPHEROSEG_LOG".to_owned(), "warn".to_owned())]),
            flags: Layer {
                data_dir: Some(data.clone()),
                workers: Some(2),
                ..Layer::default()
            },
        })
        .expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(spheroseg::app::run(config, listener, async {
            let _ = stopped.await;
        }));
        spheroseg::segment::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .expect("client");
        let base = format!("http://{addr}");
        while client
            .get(format!("{base}/api/health/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .ok()
            != Some(true)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let bodies: Arc<Vec<Vec<u8>>> = Arc::new((1..=uploads as u32).map(png).collect());

        println!(
            "{:<52} {:>8} {:>10} {:>9} {:>9}",
            "request (32 connections, loopback)", "count", "per s", "p50 ms", "p99 ms"
        );
        let (c, b, bs) = (client.clone(), base.clone(), Arc::clone(&bodies));
        let (rate, mut lat) = load(uploads, move |i| {
            let (c, b, bs) = (c.clone(), b.clone(), Arc::clone(&bs));
            async move {
                let form = reqwest::multipart::Form::new()
                    .part(
                        "image",
                        reqwest::multipart::Part::bytes(bs[i].clone())
                            .file_name(format!("well-{i}.png")),
                    )
                    .text("priority", "5");
                c.post(format!("{b}/api/jobs"))
                    .multipart(form)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 202)
            }
        })
        .await;
        println!(
            "{:<52} {:>8} {:>10.0} {:>9.2} {:>9.2}",
            "POST /api/jobs, 64×64 PNG (distinct images)",
            uploads,
            rate,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
        for path in ["/api/queue", "/api/health/live"] {
            let (c, b) = (client.clone(), base.clone());
            let n = 16_000;
            let (rate, mut lat) = load(n, move |_| {
                let (c, b) = (c.clone(), b.clone());
                async move {
                    c.get(format!("{b}{path}"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            })
            .await;
            println!(
                "{:<52} {:>8} {:>10.0} {:>9.2} {:>9.2}",
                format!("GET {path} (100,000+ jobs in the database)"),
                n,
                rate,
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99)
            );
        }
        let _ = stop.send(());
        server.await.expect("server task").expect("clean shutdown");
    });
}
