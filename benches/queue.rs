//! Queue throughput and latency, every write durable: `cargo bench --bench queue`.
//!
//! N jobs of ~200 bytes each: (a) enqueue one at a time, awaited; (b) 32 concurrent producers;
//! (c) batches of 1,000; (d) like (b) with random priorities; (e) draining N queued jobs with 5 and
//! 50 concurrent no-op consumers (lease, then complete); (f) the raw rate of appending 256 bytes +
//! fdatasync on the same disk, so (a) reads as a ratio of what the disk allows.
//! Set `SPHEROSEG_BENCH_N` to change N (default 20,000). Prints a table; asserts nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::queue::{ImageRef, NewJob, Priority, Queue, QueueOptions};

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

fn job(i: usize, priority: u8) -> NewJob {
    NewJob {
        priority: Priority::new(priority.into()).expect("valid priority"),
        project: Some("organoid-screen-2026-11".into()),
        image: ImageRef {
            hash: format!("{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15),
            name: format!("plate-07/well-B{:02}/spheroid_day3_{i:06}.tif", i % 24),
            width: 2048,
            height: 2048,
            bytes: 8 << 20,
        },
        ..NewJob::default()
    }
}

fn open(dir: &Path) -> Queue {
    let path = dir.join("bench.redb");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("wal"));
    Queue::open(&path, QueueOptions::default(), Arc::new(SystemClock))
        .expect("open")
        .0
}

/// `producers` tasks share `n` enqueues, each awaiting its own.
async fn produce(
    queue: &Queue,
    n: usize,
    producers: usize,
    random_priority: bool,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let q = queue.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ p as u64;
                for i in (p..n).step_by(producers) {
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
    let mut lat = Vec::with_capacity(n);
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
                    q.complete(l.job.id, l.attempt, Vec::new())
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

/// Appends 256 bytes and fdatasyncs, for `budget` or `max` rounds.
fn fsync_rate(dir: &Path, budget: Duration, max: usize) -> Row {
    let path = dir.join("fsync.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open fsync file");
    let buf = [0xA5u8; 256];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget && lat.len() < max {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Row {
        name: "(f) append 256 B + fdatasync".into(),
        jobs: lat.len(),
        secs,
        lat,
        target: "reference".into(),
    }
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

    let f = fsync_rate(dir.path(), Duration::from_secs(3), n);
    let fsync_per_s = f.rate();

    rt.block_on(async {
        let q = open(dir.path());
        let (secs, lat) = produce(&q, n, 1, false).await;
        let sample = q.lease(1, Duration::from_secs(1)).await.expect("lease");
        if let Some(l) = sample.first() {
            let bytes = postcard::to_stdvec(&l.job).expect("encode").len();
            println!("stored job record: {bytes} bytes");
        }
        q.close();
        rows.push(Row {
            name: "(a) enqueue one at a time".into(),
            jobs: n,
            secs,
            lat,
            target: format!(">= 0.8 x (f) = {:.0}/s", 0.8 * fsync_per_s),
        });

        let q = open(dir.path());
        let (secs, lat) = produce(&q, n, 32, false).await;
        q.close();
        rows.push(Row {
            name: "(b) 32 concurrent producers".into(),
            jobs: n,
            secs,
            lat,
            target: ">= 30000/s".into(),
        });

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

        let q = open(dir.path());
        let (secs, lat) = produce(&q, n, 32, true).await;
        let b_rate = rows[1].rate();
        rows.push(Row {
            name: "(d) 32 producers, random priority".into(),
            jobs: n,
            secs,
            lat,
            target: format!(">= 0.9 x (b) = {:.0}/s", 0.9 * b_rate),
        });
        // (e) drains what (d) left: N jobs of mixed priority.
        for consumers in [5, 50] {
            if consumers == 50 {
                q.enqueue_batch((0..n).map(|i| job(i, (i % 10) as u8 + 1)).collect())
                    .await
                    .expect("refill");
            }
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
    rows.push(f);

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
    println!("(d) / (b) = {:.2}", rows[3].rate() / rows[1].rate());
}
