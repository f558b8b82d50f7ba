//! Queue throughput and latency, every write durable: `cargo bench --bench queue`.
//!
//! N jobs of ~200 bytes each: (a) enqueue one at a time, awaited; (b) 32 concurrent producers;
//! (c) batches of 1,000; (d) like (b) with random priorities; (e) draining N queued jobs with 5 and
//! 50 concurrent no-op consumers (lease, then complete); (f) the raw rate of appending 256 bytes +
//! fdatasync on the same disk, so (a) reads as a ratio of what the disk allows.
//!
//! This disk's sync time drifts by ±10 % over tens of seconds and two cores make a 0.25 s run of
//! 32 producers vary by as much, so the ratios are taken from interleaved runs: (f) and (a) in four
//! alternating slices of N/4 (the rows sum the slices), and (b) and (d) three times each,
//! alternating, each on a fresh file (the rows show the median run; every round's ratio is printed).
//! Set `SPHEROSEG_BENCH_N` to change N (default 20,000). Prints a table; asserts nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::queue::{NewJob, Queue, QueueOptions};

mod common;
use common::job;

struct Row {
    name: String,
    jobs: usize,
    secs: f64,
    lat: Vec<Duration>,
    target: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.secs
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn open(dir: &Path) -> Queue {
    let path = dir.join("bench.redb");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("wal"));
    Queue::open(&path, QueueOptions::default(), Arc::new(SystemClock))
        .expect("open")
        .0
}

/// `producers` tasks share the enqueues of jobs `jobs`, each awaiting its own.
async fn produce(
    queue: &Queue,
    jobs: std::ops::Range<usize>,
    producers: usize,
    random_priority: bool,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let q = queue.clone();
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ p as u64;
                for i in (jobs.start + p..jobs.end).step_by(producers) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let prio = if random_priority {
                        (rng % 10) as u8 + 1
                    } else {
                        5
                    };
                    let t = Instant::now();
                    q.enqueue(job(i, prio)).await.expect("enqueue");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(jobs.len());
    for t in tasks {
        lat.extend(t.await.expect("producer"));
    }
    (start.elapsed().as_secs_f64(), lat)
}

/// `consumers` tasks lease one job and complete it until the queue is empty.
async fn drain(queue: &Queue, consumers: usize) -> (usize, f64, Vec<Duration>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..consumers)
        .map(|_| {
            let q = queue.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    let Some(l) = q
                        .lease(1, Duration::from_secs(60))
                        .await
                        .expect("lease")
                        .pop()
                    else {
                        break;
                    };
                    q.complete(l.job.id, l.token, Vec::new(), 0)
                        .await
                        .expect("complete");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("consumer"));
    }
    (lat.len(), start.elapsed().as_secs_f64(), lat)
}

/// Appends 256 bytes to `f` and fdatasyncs, `n` times; returns the seconds and latencies.
fn append_sync(f: &mut std::fs::File, n: usize) -> (f64, Vec<Duration>) {
    let buf = [0xA5u8; 256];
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    (start.elapsed().as_secs_f64(), lat)
}

/// The run with the median time.
fn median(mut runs: Vec<(f64, Vec<Duration>)>) -> (f64, Vec<Duration>) {
    runs.sort_by(|x, y| x.0.total_cmp(&y.0));
    runs.swap_remove(runs.len() / 2)
}

fn main() {
    let n: usize = std::env::var("SPHEROSEG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Row> = Vec::new();
    let mut f_row = Row {
        name: "(f) append 256 B + fdatasync".into(),
        jobs: 0,
        secs: 0.0,
        lat: Vec::new(),
        target: "reference (4 slices between those of (a))".into(),
    };
    let mut bd_ratios = Vec::new();
    // Commands per transaction and per log sync in the last (b) and (d) rounds.
    let mut group_commit = [(0.0, 0.0); 2];

    rt.block_on(async {
        // (a) and (f), alternating in four slices.
        let q = open(dir.path());
        let fsync_path = dir.path().join("fsync.bin");
        let mut fsync_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&fsync_path)
            .expect("open fsync file");
        let mut a = Row {
            name: "(a) enqueue one at a time".into(),
            jobs: 0,
            secs: 0.0,
            lat: Vec::new(),
            target: String::new(),
        };
        let slice = n.div_ceil(4);
        for start in (0..n).step_by(slice) {
            let end = (start + slice).min(n);
            let (secs, lat) = append_sync(&mut fsync_file, end - start);
            f_row.jobs += end - start;
            f_row.secs += secs;
            f_row.lat.extend(lat);
            let (secs, lat) = produce(&q, start..end, 1, false).await;
            a.jobs += end - start;
            a.secs += secs;
            a.lat.extend(lat);
        }
        drop(fsync_file);
        let _ = std::fs::remove_file(&fsync_path);
        let sample = q.lease(1, Duration::from_secs(1)).await.expect("lease");
        if let Some(l) = sample.first() {
            let bytes = postcard::to_stdvec(&l.job).expect("encode").len();
            println!("stored job record: {bytes} bytes");
        }
        q.close();
        a.target = format!(">= 0.8 x (f) = {:.0}/s", 0.8 * f_row.rate());
        rows.push(a);

        // (b) and (d), alternating, three times each.
        let (mut b_runs, mut d_runs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            for random in [false, true] {
                let q = open(dir.path());
                let run = produce(&q, 0..n, 32, random).await;
                let log = q.stats().expect("stats").log;
                group_commit[usize::from(random)] = (
                    log.commands as f64 / log.batches.max(1) as f64,
                    log.commands as f64 / log.syncs.max(1) as f64,
                );
                q.close();
                if random {
                    d_runs.push(run);
                } else {
                    b_runs.push(run);
                }
            }
        }
        // Same N in both: the rate ratio is the inverse ratio of the times.
        bd_ratios = b_runs.iter().zip(&d_runs).map(|(b, d)| b.0 / d.0).collect();
        let (secs, lat) = median(b_runs);
        rows.push(Row {
            name: "(b) 32 concurrent producers (median of 3)".into(),
            jobs: n,
            secs,
            lat,
            target: ">= 30000/s".into(),
        });
        let b_rate = rows[1].rate();

        let q = open(dir.path());
        let start = Instant::now();
        let mut lat = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<NewJob> = chunk.iter().map(|&i| job(i, 5)).collect();
            let t = Instant::now();
            q.enqueue_batch(batch).await.expect("batch");
            lat.push(t.elapsed());
        }
        let secs = start.elapsed().as_secs_f64();
        q.close();
        rows.push(Row {
            name: "(c) batches of 1,000 (latency per batch)".into(),
            jobs: n,
            secs,
            lat,
            target: ">= 100000/s".into(),
        });

        let (secs, lat) = median(d_runs);
        rows.push(Row {
            name: "(d) 32 producers, random priority (median)".into(),
            jobs: n,
            secs,
            lat,
            target: format!(">= 0.9 x (b) = {:.0}/s", 0.9 * b_rate),
        });

        // (e) drains N jobs of mixed priority, twice.
        let q = open(dir.path());
        for consumers in [5, 50] {
            q.enqueue_batch((0..n).map(|i| job(i, (i % 10) as u8 + 1)).collect())
                .await
                .expect("fill");
            let (done, secs, lat) = drain(&q, consumers).await;
            rows.push(Row {
                name: format!("(e) drain, {consumers} consumers (lease+complete)"),
                jobs: done,
                secs,
                lat,
                target: if consumers == 50 {
                    ">= 20000/s".into()
                } else {
                    "-".into()
                },
            });
        }
        q.close();
    });
    let fsync_per_s = f_row.rate();
    rows.push(f_row);

    println!();
    println!(
        "{:<44} {:>7} {:>8} {:>10} {:>9} {:>9}  target",
        "scenario (all durable)", "jobs", "secs", "jobs/s", "p50 ms", "p99 ms"
    );
    for r in &mut rows {
        let rate = r.rate();
        let p50 = pct(&mut r.lat, 0.50);
        let p99 = pct(&mut r.lat, 0.99);
        println!(
            "{:<44} {:>7} {:>8.2} {:>10.0} {:>9.3} {:>9.3}  {}",
            r.name, r.jobs, r.secs, rate, p50, p99, r.target
        );
    }
    let a = rows[0].rate();
    println!();
    println!("(a) / (f) = {:.2}", a / fsync_per_s);
    println!(
        "(d) / (b) = {:.2} (medians); per round: {}",
        rows[3].rate() / rows[1].rate(),
        bd_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, (per_tx, per_sync)) in ["(b)", "(d)"].iter().zip(group_commit) {
        println!(
            "{name} group commit: {per_tx:.1} commands per transaction, {per_sync:.1} per log sync"
        );
    }
}
