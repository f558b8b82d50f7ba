//! ML outages spend no attempts and fail no job: a stub ML service on 127.0.0.1:0 that stops
//! (connections refused) or answers 503 on cue, with a pool of two workers running 40 jobs
//! through its breaker; a reset that releases held jobs at once; and a local program that runs
//! out of GPU memory once per image.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use spheroseg::clock::{Clock, SystemClock};
use spheroseg::pool::{Pool, PoolConfig};
use spheroseg::queue::{JobId, JobState, NewJob, Queue};
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::http::HttpSegmenter;
use spheroseg::segment::{Builtin, MlService, SegmenterId, Segmenters};

const SQUARE: &str = r##"{"success":true,"results":{"polygons":[{"id":"p","points":[{"x":20,"y":20},{"x":70,"y":20},{"x":70,"y":70},{"x":20,"y":70}],"type":"external","class":"spheroid"}]}}"##;

/// A stub service that can stop (its port refuses connections) or answer 503, and come back on
/// the same port.
struct Stub {
    addr: std::net::SocketAddr,
    unavailable: Arc<AtomicBool>,
    /// How long each answer takes, in ms.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    calls: Arc<AtomicUsize>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Stub {
    async fn start() -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut stub = Stub {
            addr,
            unavailable: Arc::default(),
            delay_ms: Arc::default(),
            calls: Arc::default(),
            server: None,
        };
        stub.serve(listener);
        stub
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (unavailable, calls) = (Arc::clone(&self.unavailable), Arc::clone(&self.calls));
        let delay = Arc::clone(&self.delay_ms);
        let app = Router::new().route(
            "/segment",
            post(move || {
                let (unavailable, calls) = (Arc::clone(&unavailable), Arc::clone(&calls));
                let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if unavailable.load(Ordering::SeqCst) {
                        (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response()
                    } else {
                        ([("content-type", "application/json")], SQUARE).into_response()
                    }
                }
            }),
        );
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// The service stops: its port refuses connections.
    async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    /// It comes back on the same port.
    async fn start_again(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// The `http` segmenter on this stub, behind `breaker`.
    fn service(&self, breaker: Breaker) -> Arc<MlService> {
        let url = format!("http://{}", self.addr);
        let client =
            HttpSegmenter::new("http", &url, Duration::from_secs(10), false).expect("client");
        Arc::new(MlService::remote(Arc::new(client), breaker, false, &url))
    }
}

fn breaker(open_base: Duration) -> Breaker {
    Breaker::new(
        BreakerConfig {
            min_calls: 5,
            open_base,
            open_cap: open_base * 4,
            ..BreakerConfig::default()
        },
        SystemClock.now(),
    )
}

/// A pool of two workers on one ML service named `name`.
fn pool(
    queue: &Queue,
    images: &spheroseg::images::ImageStore,
    events: &spheroseg::events::EventBus,
    name: &str,
    svc: Arc<MlService>,
) -> Pool {
    pool_with(queue, images, events, name, svc, 2, Duration::from_secs(10))
}

/// A pool of `workers` on one ML service named `name`, with `ml_timeout`.
fn pool_with(
    queue: &Queue,
    images: &spheroseg::images::ImageStore,
    events: &spheroseg::events::EventBus,
    name: &str,
    svc: Arc<MlService>,
    workers: usize,
    ml_timeout: Duration,
) -> Pool {
    Pool::start(
        queue.clone(),
        images.clone(),
        events.clone(),
        Segmenters {
            builtin: Arc::new(Builtin),
            ml: HashMap::from([(SegmenterId::new(name).expect("name"), svc)]),
        },
        PoolConfig {
            ml_timeout,
            ..crate::util::pool_config(workers)
        },
        Arc::new(SystemClock),
    )
    .expect("pool")
}

/// Waits until every job completed; then every one did with one attempt, and none carries a
/// stale error. Fails if any failed, or after `limit`.
async fn all_completed_with_one_attempt(queue: &Queue, ids: &[JobId], limit: Duration) {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        let jobs: Vec<_> = ids
            .iter()
            .map(|id| queue.get(*id).expect("get").expect("exists"))
            .collect();
        let failed: Vec<_> = jobs
            .iter()
            .filter(|j| j.state == JobState::Failed)
            .collect();
        assert!(failed.is_empty(), "jobs failed: {failed:#?}");
        if jobs.iter().all(|j| j.state == JobState::Completed) {
            for j in &jobs {
                assert!(j.attempts <= 1, "{} spent {} attempts", j.id, j.attempts);
                assert_eq!(j.last_error, None, "{} keeps a stale error", j.id);
            }
            eprintln!(
                "{} jobs completed {:?} later, {} attempts spent",
                jobs.len(),
                started.elapsed(),
                jobs.iter().map(|j| j.attempts).sum::<u32>()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all completed: {:?}",
            jobs.iter()
                .map(|j| (j.state, j.attempts))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_jobs_wait_out_a_thirty_second_outage() {
    let mut stub = Stub::start().await;
    stub.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let svc = stub.service(breaker(Duration::from_secs(1)));
    let pool = pool(&queue, &images, &events, "http", Arc::clone(&svc));
    let ids = crate::util::enqueue_lumen(&queue, &images, "http", 40, 5).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = stub.calls.load(Ordering::SeqCst);
    assert_eq!(during, 0, "refused connections reach no handler");
    stub.start_again().await;
    all_completed_with_one_attempt(&queue, &ids, Duration::from_secs(60)).await;
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_jobs_ride_out_a_flapping_service() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let svc = stub.service(breaker(Duration::from_secs(1)));
    // Calls that take a while each (40 of them are 20 s of work for two workers), so the
    // flapping catches many of them.
    stub.delay_ms.store(1000, Ordering::SeqCst);
    let pool = pool(&queue, &images, &events, "http", Arc::clone(&svc));
    let ids = crate::util::enqueue_lumen(&queue, &images, "http", 40, 5).await;
    let started = Instant::now();
    let mut down = true;
    let mut seen = HashMap::new();
    let mut flip = Instant::now();
    stub.unavailable.store(down, Ordering::SeqCst);
    while started.elapsed() < Duration::from_secs(40) {
        if flip.elapsed() >= Duration::from_secs(3) {
            down = !down;
            stub.unavailable.store(down, Ordering::SeqCst);
            flip = Instant::now();
        }
        // What each failed attempt was, for the message if one was spent.
        for id in &ids {
            let j = queue.get(*id).expect("get").expect("exists");
            if let Some(e) = j.last_error.filter(|_| j.attempts > 0) {
                seen.insert(*id, (j.attempts, e.code, e.message));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stub.unavailable.store(false, Ordering::SeqCst);
    eprintln!("while flapping: {} jobs completed", ids.iter().filter(|id| queue.get(**id).expect("get").expect("exists").state == JobState::Completed).count());
    let spent: Vec<_> = seen
        .values()
        .filter(|(attempts, ..)| *attempts > 1)
        .collect();
    assert!(spent.is_empty(), "attempts spent: {spent:#?}");
    all_completed_with_one_attempt(&queue, &ids, Duration::from_secs(60)).await;
    // While it was half-open, one trial at a time: the service was not hammered.
    let snap = svc
        .breaker
        .lock()
        .expect("lock")
        .snapshot(SystemClock.now());
    assert!(
        snap.stats.rejects > 0 || snap.stats.failures > 0,
        "{snap:?}"
    );
    eprintln!("breaker after flapping: {:?}", snap.stats);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_releases_the_held_jobs_at_once() {
    let mut stub = Stub::start().await;
    stub.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    // Open for a minute after it trips.
    let svc = stub.service(breaker(Duration::from_secs(60)));
    let pool = pool(&queue, &images, &events, "http", Arc::clone(&svc));
    let ids = crate::util::enqueue_lumen(&queue, &images, "http", 10, 5).await;
    // Wait until every job is held (delayed) behind the open breaker.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ids
        .iter()
        .all(|id| queue.get(*id).expect("get").expect("exists").state == JobState::Delayed)
    {
        assert!(Instant::now() < deadline, "jobs were not held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stub.start_again().await;
    let reset = Instant::now();
    pool.handle()
        .reset_breaker("http")
        .await
        .expect("the service exists");
    all_completed_with_one_attempt(&queue, &ids, Duration::from_secs(15)).await;
    assert!(
        reset.elapsed() < Duration::from_secs(15),
        "released at once, not at the next probe in a minute"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

/// A program that runs out of GPU memory (exit code 3) the first time it sees each image, then
/// succeeds: every job completes, none fails, although the breaker opens on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_gpu_memory_is_retried_and_every_job_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let seen = dir.path().join("seen");
    std::fs::create_dir_all(&seen).expect("dir");
    let script = format!(
        r#"marker='{}'/$(cksum < "$2" | cut -d' ' -f1)
if [ ! -e "$marker" ]; then touch "$marker"; echo 'CUDA out of memory' >&2; exit 3; fi
echo '{{"success":true,"polygons":[{{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}}]}}' > "$1""#,
        seen.display()
    );
    let svc = command(dir.path(), &script, breaker(Duration::from_secs(1)));
    // The program tells one job from another by a per-job image: 12 different images.
    let mut ids = Vec::new();
    for i in 0..12u8 {
        let img = image::GrayImage::from_fn(64, 64, |x, y| {
            image::Luma([(x * 3 + y + u32::from(i)) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        let image = images
            .put(&out.into_inner(), &format!("{i}.png"))
            .expect("stored")
            .image;
        let job = queue
            .enqueue(NewJob {
                image,
                segmenter: SegmenterId::new("command").expect("name"),
                ..NewJob::default()
            })
            .await
            .expect("enqueue");
        ids.push(job.job.id);
    }
    let pool = pool(&queue, &images, &events, "command", svc);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs: Vec<_> = ids
            .iter()
            .map(|id| queue.get(*id).expect("get").expect("exists"))
            .collect();
        assert!(
            jobs.iter().all(|j| j.state != JobState::Failed),
            "{:#?}",
            jobs.iter()
                .map(|j| (j.state, j.attempts, j.last_error.clone()))
                .collect::<Vec<_>>()
        );
        if jobs.iter().all(|j| j.state == JobState::Completed) {
            assert!(
                jobs.iter().all(|j| j.attempts <= 2),
                "one failed attempt at most"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not all completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.shutdown(Duration::from_secs(5)).await;
}

/// The `command` segmenter running `script`.
fn command(dir: &std::path::Path, script: &str, breaker: Breaker) -> Arc<MlService> {
    crate::util::sh_service(dir, script, breaker, false)
}

/// A PNG of `side`² noise: large enough (`side` 200) that the wedging program below tells it
/// from a small one.
fn noise_png(side: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        image::Luma([((x * 7919 + y * 104_729) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// Wedges (a child that leaves the group, holding stderr; then hangs) on large inputs, answers
/// at once on small ones.
const WEDGE: &str = r#"if [ "$(wc -c < "$2")" -gt 8000 ]; then
  setsid sh -c 'exec sleep 3600' & echo 'loading model' >&2; exec sleep 3600
fi
echo '{"success":true,"polygons":[{"id":"p","points":[[2,2],[12,2],[12,12],[2,12]],"type":"external","class":"spheroid"}]}' > "$1""#;

async fn wait_for(queue: &Queue, id: JobId, state: JobState, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let job = queue.get(id).expect("get").expect("exists");
        if job.state == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{id} still {:?} after {limit:?}: {:?}",
            job.state,
            job.last_error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedging_program_times_out_and_the_worker_takes_the_next_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let svc = command(dir.path(), WEDGE, breaker(Duration::from_secs(1)));
    let pool = pool_with(
        &queue,
        &images,
        &events,
        "command",
        svc,
        1,
        Duration::from_secs(2),
    );
    let job = |image, max_attempts| NewJob {
        image,
        segmenter: SegmenterId::new("command").expect("name"),
        max_attempts: Some(max_attempts),
        ..NewJob::default()
    };
    let big = images
        .put(&noise_png(200), "big.png")
        .expect("stored")
        .image;
    let small = images
        .put(&noise_png(16), "small.png")
        .expect("stored")
        .image;
    let wedged = queue
        .enqueue(job(big.clone(), 1))
        .await
        .expect("enqueue")
        .job
        .id;
    let next = queue.enqueue(job(small, 1)).await.expect("enqueue").job.id;
    // The timeout is 2 s; the job ends within a few seconds more, and the one worker goes on.
    let took = wait_for(&queue, wedged, JobState::Failed, Duration::from_secs(10)).await;
    let failed = queue.get(wedged).expect("get").expect("exists");
    let error = failed.last_error.expect("a reason");
    assert_eq!(error.code, "timeout", "{error:?}");
    assert!(error.message.contains("loading model"), "{error:?}");
    wait_for(&queue, next, JobState::Completed, Duration::from_secs(5)).await;
    eprintln!("wedged job ended {took:?} after it was queued (timeout 2 s)");

    // Shutdown during such a job finishes within its grace (and the program's), handing it back.
    let again = queue.enqueue(job(big, 3)).await.expect("enqueue").job.id;
    wait_for(&queue, again, JobState::Active, Duration::from_secs(5)).await;
    let started = Instant::now();
    pool.shutdown(Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "shutdown took {took:?}");
    eprintln!("shutdown with a wedged program took {took:?} (grace 0.5 s)");
    let back = queue.get(again).expect("get").expect("exists");
    assert_eq!(back.state, JobState::Queued, "handed back: {back:?}");
}

/// A job whose image itself breaks the service (it fails every call, trips the breaker and is the
/// trial each time it half-opens) is held for free once, then spends its attempts and fails; the
/// jobs behind it are not held back forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_breaks_the_service_cannot_hold_the_others_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, images, events) = crate::util::stack(dir.path());
    let poison = r#"if [ "$(wc -c < "$2")" -gt 8000 ]; then echo 'model crashed' >&2; exit 2; fi
echo '{"success":true,"polygons":[{"id":"p","points":[[2,2],[12,2],[12,12],[2,12]],"type":"external","class":"spheroid"}]}' > "$1""#;
    let breaker = Breaker::new(
        BreakerConfig {
            min_calls: 2,
            open_base: Duration::from_millis(300),
            open_cap: Duration::from_secs(1),
            ..BreakerConfig::default()
        },
        SystemClock.now(),
    );
    let svc = command(dir.path(), poison, breaker);
    let pool = pool(&queue, &images, &events, "command", svc);
    let job = |image| NewJob {
        image,
        segmenter: SegmenterId::new("command").expect("name"),
        max_attempts: Some(3),
        ..NewJob::default()
    };
    let big = images
        .put(&noise_png(200), "big.png")
        .expect("stored")
        .image;
    let bad = queue.enqueue(job(big)).await.expect("enqueue").job.id;
    let took = wait_for(&queue, bad, JobState::Failed, Duration::from_secs(30)).await;
    let failed = queue.get(bad).expect("get").expect("exists");
    assert_eq!(failed.attempts, 3, "{failed:?}");
    eprintln!("the job that breaks the service failed after {took:?}");
    let small = images
        .put(&noise_png(16), "small.png")
        .expect("stored")
        .image;
    let mut good = Vec::new();
    for _ in 0..5 {
        good.push(
            queue
                .enqueue(job(small.clone()))
                .await
                .expect("enqueue")
                .job
                .id,
        );
    }
    all_completed_with_one_attempt(&queue, &good, Duration::from_secs(20)).await;
    pool.shutdown(Duration::from_secs(5)).await;
}
