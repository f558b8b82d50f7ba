//! Watched folders: `cargo bench --bench watch`.
//!
//! 1. Pickup latency: the time from the end of a file's last write to its job being queued
//!    (the `job_queued` event), settle time included, for 10 files written one after another:
//!    with notifications, and with polling at its default interval, both at the default settle
//!    time; and with notifications at a 200 ms settle time, to show what is not settling.
//! 2. A folder of 10,000 small PNGs in 100 sub-folders present at start, the queue paused: how
//!    long the first scan takes (files/s), and how long until all 10,000 are queued.
//!
//! `SPHEROSEG_BENCH_FILES` changes the 10,000.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use spheroseg::app::App;
use spheroseg::config::{Config, Layer, Sources, WatchLayer};
use spheroseg::events::EventKind;
use spheroseg::synth::{Kind, Scene};

async fn start(data: &Path, entry: WatchLayer) -> App {
    let config = Config::load(&Sources {
        file: None,
        env: HashMap::from([("SPHEROSEG_WORKERS".to_owned(), "2".to_owned())]),
        flags: Layer {
            data_dir: Some(data.to_owned()),
            watch: Some(vec![entry]),
            ..Layer::default()
        },
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    App::start(config, listener).await.expect("app")
}

fn entry(folder: &Path, poll: bool, settle_ms: Option<u64>) -> WatchLayer {
    WatchLayer {
        path: Some(folder.to_owned()),
        poll: Some(poll),
        settle_ms,
        ..WatchLayer::default()
    }
}

/// Milliseconds from each file's last write to its job queued.
async fn latency(poll: bool, settle_ms: Option<u64>) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("scope");
    std::fs::create_dir_all(&folder).expect("folder");
    let app = start(&dir.path().join("data"), entry(&folder, poll, settle_ms)).await;
    let mut live = app.state().service.events.subscribe(None).live;
    let mut out = Vec::new();
    for i in 0..10u64 {
        let name = format!("f{i}.png");
        let bytes = common::synth_png(1000 + i, 128);
        std::fs::write(folder.join(&name), &bytes).expect("write");
        let written = Instant::now();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(60), live.recv())
                .await
                .expect("queued within a minute")
                .expect("event");
            if let EventKind::JobQueued { name: n, .. } = &e.kind
                && *n == name
            {
                out.push(written.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
        // Apart from each other, so that each is its own pickup.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.shutdown().await.expect("shutdown");
    out
}

fn row(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{label:<48} {:>8.0} {:>8.0} {:>8.0}",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
}

async fn burst(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("scope");
    let (img, _) = Scene::random(3, 64, 8, Kind::Plain).render();
    let base: Vec<u8> = img
        .data
        .iter()
        .map(|&v| v.clamp(0.0, 255.0) as u8)
        .collect();
    for i in 0..n {
        let sub = folder.join(format!("plate{:02}", i % 100));
        std::fs::create_dir_all(&sub).expect("sub-folder");
        let mut px = base.clone();
        px[..4].copy_from_slice(&(i as u32).to_le_bytes());
        let buf = image::GrayImage::from_raw(64, 64, px).expect("64 × 64");
        buf.save(sub.join(format!("w{i:05}.png"))).expect("write");
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    {
        let (q, _) = spheroseg::queue::Queue::open(
            &data.join("spheroseg.redb"),
            spheroseg::queue::QueueOptions::default(),
            std::sync::Arc::new(spheroseg::clock::SystemClock),
        )
        .expect("queue");
        q.set_paused(true).await.expect("pause");
        q.close();
    }
    let started = Instant::now();
    let app = start(&data, entry(&folder, false, Some(200))).await;
    let mut scanned = None;
    loop {
        let s = app.state().watch.folders().remove(0);
        if scanned.is_none()
            && let Some(ms) = s.last_scan_ms
        {
            scanned = Some((ms, s.last_scan_files));
        }
        if s.queued as usize == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let (scan_ms, files) = scanned.expect("a scan");
    println!(
        "first scan of {files} files in 100 sub-folders: {scan_ms} ms ({:.0} files/s)",
        files as f64 / (scan_ms.max(1) as f64 / 1e3)
    );
    println!(
        "all {n} queued {:.1} s after start ({:.0} files/s: read, hash, decode, store, commit)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    app.shutdown().await.expect("shutdown");
}

fn main() {
    let n: usize = std::env::var("SPHEROSEG_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "{:<48} {:>8} {:>8} {:>8}",
            "last write -> job queued, ms (10 files)", "min", "median", "max"
        );
        row(
            "notifications, settle 2 s (default)",
            latency(false, None).await,
        );
        row(
            "polling every 5 s (default), settle 2 s",
            latency(true, None).await,
        );
        row(
            "notifications, settle 200 ms",
            latency(false, Some(200)).await,
        );
        println!();
        burst(n).await;
    });
}
