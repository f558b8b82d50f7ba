//! Helpers shared by the integration tests.

pub mod api;
pub mod child;
pub mod mlserver;
pub mod python;
pub mod watch;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use spheroseg::clock::{Clock, SystemClock};
use spheroseg::events::EventBus;
use spheroseg::images::ImageStore;
use spheroseg::pool::PoolConfig;
use spheroseg::queue::{ImageRef, NewJob, Priority, Queue, QueueOptions, Recovery};
use spheroseg::segment::DecodeLimits;

/// A `command` ML service named "command" that runs `script` with sh ($1 the output JSON, $2
/// the input image), behind `breaker`.
pub fn sh_service(
    dir: &std::path::Path,
    script: &str,
    breaker: spheroseg::segment::breaker::Breaker,
    fallback_builtin: bool,
) -> Arc<spheroseg::segment::MlService> {
    let program = spheroseg::segment::command::CommandSegmenter {
        name: "command".into(),
        argv: ["sh", "-c", script, "sh", "{output_json}", "{input}"]
            .map(String::from)
            .to_vec(),
        work_dir: dir.join("work"),
    };
    Arc::new(spheroseg::segment::MlService::new(
        Arc::new(program),
        breaker,
        fallback_builtin,
        "sh",
    ))
}

/// `n` jobs on the lumen fixture for `segmenter` at `priority`, in one batch: their ids.
pub async fn enqueue_lumen(
    queue: &Queue,
    images: &ImageStore,
    segmenter: &str,
    n: usize,
    priority: i64,
) -> Vec<spheroseg::queue::JobId> {
    let image = images
        .put_path(&fixture("spheroid_lumen_8bit.png"))
        .expect("stored")
        .image;
    let jobs = (0..n)
        .map(|_| NewJob {
            image: image.clone(),
            segmenter: spheroseg::segment::SegmenterId::new(segmenter).expect("name"),
            priority: Priority::new(priority).expect("priority"),
            ..NewJob::default()
        })
        .collect();
    let done = queue.enqueue_batch(jobs).await.expect("enqueued");
    done.into_iter().map(|e| e.job.id).collect()
}

/// Serves `app` on 127.0.0.1, port 0 (a stub service): its base URL.
pub async fn serve_stub(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A job of the given priority on a made-up image.
pub fn job(priority: u8) -> NewJob {
    NewJob {
        priority: Priority::new(priority.into()).expect("valid priority"),
        image: ImageRef {
            hash: format!("img{}", priority % 3),
            name: "spheroid.tif".into(),
            width: 1024,
            height: 1024,
            bytes: 2 << 20,
        },
        ..NewJob::default()
    }
}

/// Opens the queue file `q.redb` in `dir`.
pub fn open(dir: &std::path::Path, clock: Arc<dyn Clock>) -> (Queue, Recovery) {
    Queue::open(&dir.join("q.redb"), QueueOptions::default(), clock).expect("queue opens")
}

/// A current-thread runtime for tests that drive the queue from plain functions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The parts a pool runs on, in `dir`, on the system clock: queue (`q.redb`), image store, and
/// the event bus the queue announces its commits to, as the app wires them.
pub fn stack(dir: &std::path::Path) -> (Queue, ImageStore, EventBus) {
    let (queue, _) = open(dir, Arc::new(SystemClock));
    let images = ImageStore::open(dir, DecodeLimits::default()).expect("images");
    (queue.clone(), images, events_of(&queue))
}

/// An event bus that hears `queue`'s commits.
pub fn events_of(queue: &Queue) -> EventBus {
    let events = EventBus::new(10_000, Arc::new(SystemClock));
    let bus = events.clone();
    queue.listen(Arc::new(move |c| bus.publish_commit(c)));
    events
}

/// A pool of `workers` with generous timeouts.
pub fn pool_config(workers: usize) -> PoolConfig {
    PoolConfig {
        workers,
        lease_ttl: Duration::from_secs(30),
        builtin_timeout: Duration::from_secs(60),
        ml_timeout: Duration::from_secs(60),
        limits: DecodeLimits::default(),
        budget: Default::default(),
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A tmpfs of `mb` MiB on a fresh directory, unmounted when dropped; `None` where this machine
/// does not let the test mount one (not root).
pub struct SmallDisk(pub tempfile::TempDir);

impl SmallDisk {
    pub fn new(mb: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

/// Fills the file system of `dir` to the last byte; the filler file is returned for freeing.
pub fn fill_disk(dir: &std::path::Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    for size in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let chunk = vec![0u8; size];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    }
    filler
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}
