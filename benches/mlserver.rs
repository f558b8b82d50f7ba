//! Remote inference at scale, by hand: `cargo bench --bench mlserver` (or `bash
//! benches/mlserver/run.sh`). Needs the MLServer venv that `.ci/run` makes (or
//! `SPHEROSEG_MLSERVER`); without it, says so and exits.
//!
//! 1, 2 and 3 Seldon MLServer instances on loopback, each serving the threshold runtime of
//! `tests/ml/mlserver/` with a fixed blocking time per call (`SPHEROSEG_BENCH_SLEEP_MS`, default
//! 100: a GPU that runs one call at a time), and `SPHEROSEG_BENCH_N` jobs (default 60) of 256²
//! synthetic spheroids for one segmenter that an `oip` service per instance serves, routed by
//! least outstanding calls (two in flight each, so the next request waits at the server while
//! one runs). Prints jobs/s against the
//! sleep-bound ideal (instances × 1000 / sleep) and spheroseg's own CPU per job (this process:
//! dispatcher, queue writer, HTTP client, tracing and measuring; the servers are children and
//! not counted). Each service takes one job first, outside the timing (metadata, the binary
//! request MLServer refuses).

mod common;
#[path = "../tests/util/mlserver.rs"]
#[allow(dead_code)]
mod mlserver;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::{Clock, SystemClock};
use spheroseg::events::EventBus;
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{ImageRef, JobId, JobState, NewJob, Queue};
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::oip::{OipClient, OipSettings};
use spheroseg::segment::remote::Remote;
use spheroseg::segment::{Builtin, DecodeLimits, MlService, SegmenterId, Segmenters};

use mlserver::{MlServer, Model};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User plus system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (tick(11) + tick(12)) / 100.0
}

async fn enqueue(
    queue: &Queue,
    images: &[ImageRef],
    names: &[SegmenterId],
    n: usize,
) -> Vec<JobId> {
    let jobs = (0..n)
        .map(|i| NewJob {
            image: images[i % images.len()].clone(),
            segmenter: names[i % names.len()].clone(),
            ..NewJob::default()
        })
        .collect();
    let done = queue.enqueue_batch(jobs).await.expect("enqueue");
    done.into_iter().map(|e| e.job.id).collect()
}

async fn until_completed(queue: &Queue, ids: &[JobId], n: u64) {
    loop {
        let c = queue.stats().expect("stats").counts;
        if c.failed > 0 {
            for id in ids {
                let job = queue.get(*id).expect("get").expect("exists");
                if let Some(e) = job.last_error.filter(|_| job.state == JobState::Failed) {
                    panic!("job {id} failed: {} ({})", e.message, e.code);
                }
            }
        }
        if c.completed >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run with `instances` servers: (jobs/s, CPU ms per job).
async fn run(program: &std::path::Path, instances: usize, n: usize, sleep_ms: u64) -> (f64, f64) {
    let mut servers = Vec::new();
    for _ in 0..instances {
        let model = Model {
            sleep_ms,
            ..Model::map("resunet", 256)
        };
        servers.push(MlServer::start(program, &[model]).await);
    }
    let common::Setup {
        dir: _dir,
        queue,
        images,
    } = common::setup();
    let refs: Vec<ImageRef> = (0..8)
        .map(|seed| {
            images
                .put(&common::synth_png(seed, 256), "bench.png")
                .expect("stored")
                .image
        })
        .collect();
    let mut ml = HashMap::new();
    let resunet = SegmenterId::new("resunet").expect("name");
    let names = [resunet.clone()];
    for (i, s) in servers.iter().enumerate() {
        let settings = OipSettings {
            model: "resunet".into(),
            version: None,
            output: None,
            threshold: 0.5,
            binary: true,
        };
        let client =
            OipClient::new("http", &s.url, Duration::from_secs(120), settings).expect("client");
        let svc = MlService::from_remote(
            Remote::Oip(Arc::new(client)),
            Breaker::new(BreakerConfig::default(), SystemClock.now()),
            false,
            &s.url,
        )
        .with_limit(2)
        .serving(resunet.clone());
        ml.insert(
            SegmenterId::new(&format!("gpu{i}")).expect("name"),
            Arc::new(svc),
        );
    }
    let events = EventBus::new(10_000, Arc::new(SystemClock));
    let config = PoolConfig {
        workers: 2,
        lease_ttl: Duration::from_secs(60),
        builtin_timeout: Duration::from_secs(600),
        ml_timeout: Duration::from_secs(600),
        limits: DecodeLimits::default(),
        budget: Default::default(),
    };
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml,
    };
    let pool = Pool::start(
        queue.clone(),
        images.clone(),
        events,
        segmenters,
        config,
        Arc::new(SystemClock),
    )
    .expect("pool");
    let mut ids = enqueue(&queue, &refs, &names, instances).await;
    until_completed(&queue, &ids, instances as u64).await;
    let (cpu, start) = (cpu_seconds(), Instant::now());
    ids.extend(enqueue(&queue, &refs, &names, n).await);
    until_completed(&queue, &ids, (instances + n) as u64).await;
    let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    pool.shutdown(Duration::from_secs(5)).await;
    drop(servers);
    (n as f64 / secs, cpu * 1e3 / n as f64)
}

fn main() {
    let Some(program) = mlserver::program() else {
        return;
    };
    let n = env_or("SPHEROSEG_BENCH_N", 60) as usize;
    let sleep_ms = env_or("SPHEROSEG_BENCH_SLEEP_MS", 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("{n} jobs of 256² images, model holds each server {sleep_ms} ms per call");
    println!("| instances | jobs/s | ideal jobs/s | spheroseg CPU ms/job |");
    println!("|---:|---:|---:|---:|");
    for instances in 1..=3 {
        let (rate, cpu) = rt.block_on(run(&program, instances, n, sleep_ms));
        let ideal = instances as f64 * 1000.0 / sleep_ms as f64;
        println!("| {instances} | {rate:.2} | {ideal:.2} | {cpu:.1} |");
    }
}
