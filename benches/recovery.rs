//! What redb's quick repair costs and saves: `cargo bench --bench recovery`.
//!
//! For N queued jobs (`SPHEROSEG_BENCH_N`, default 100,000), with `quick_repair` off and on: a
//! child process fills a fresh queue in batches of 1,000, every batch a checkpoint (a durable redb
//! commit, as the writer makes every few seconds), then aborts without closing, as a crash or a
//! power cut would leave it. The parent then opens the queue again and times it: redb's repair of
//! the unclean file, the log replay and the orphan recovery. Prints the mean checkpoint commit
//! and the reopen time; asserts nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::queue::{Queue, QueueOptions};

mod common;

const BATCH: usize = 1000;

fn options(quick_repair: bool) -> QueueOptions {
    QueueOptions {
        checkpoint_every: Duration::ZERO,
        quick_repair,
        ..QueueOptions::default()
    }
}

/// In the child: fills the queue, prints the mean checkpoint in ms, and aborts.
fn child(dir: &Path, n: usize, quick_repair: bool) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (queue, _) = Queue::open(
        &dir.join("q.redb"),
        options(quick_repair),
        Arc::new(SystemClock),
    )
    .expect("open");
    let mut spent = Duration::ZERO;
    for start in (0..n).step_by(BATCH) {
        let jobs = (start..(start + BATCH).min(n))
            .map(|i| common::job(i, 5))
            .collect();
        let t = Instant::now();
        rt.block_on(queue.enqueue_batch(jobs)).expect("enqueue");
        spent += t.elapsed();
    }
    let batches = n.div_ceil(BATCH);
    println!("{:.3}", spent.as_secs_f64() * 1e3 / batches as f64);
    // As a crash would: no close, no final checkpoint, redb's file marked in use.
    std::process::abort();
}

fn main() {
    let n: usize = std::env::var("SPHEROSEG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if let Ok(spec) = std::env::var("SPHEROSEG_RECOVERY_CHILD") {
        let (dir, quick) = spec.split_once('|').expect("dir|quick");
        child(Path::new(dir), n, quick == "1");
    }
    println!("reopening a queue of {n} jobs after a crash, every batch of {BATCH} a checkpoint");
    println!(
        "{:<14} {:>22} {:>20} {:>12}",
        "quick_repair", "checkpoint commit (ms)", "reopen after crash", "file (MB)"
    );
    for round in 0..2 {
        for quick in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .env(
                    "SPHEROSEG_RECOVERY_CHILD",
                    format!("{}|{}", dir.path().display(), u8::from(quick)),
                )
                .env("SPHEROSEG_BENCH_N", n.to_string())
                .output()
                .expect("child");
            let checkpoint = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let t = Instant::now();
            let (queue, recovery) = Queue::open(
                &dir.path().join("q.redb"),
                options(quick),
                Arc::new(SystemClock),
            )
            .expect("reopen");
            let reopen = t.elapsed();
            assert_eq!(queue.stats().expect("stats").counts.queued, n as u64);
            let size = std::fs::metadata(dir.path().join("q.redb")).map_or(0, |m| m.len());
            queue.close();
            println!(
                "{:<14} {:>22} {:>17.1} ms {:>12.1}{}",
                quick,
                checkpoint,
                reopen.as_secs_f64() * 1e3,
                size as f64 / 1e6,
                if round == 0 { "" } else { "  (second round)" }
            );
            drop(recovery);
        }
    }
}
