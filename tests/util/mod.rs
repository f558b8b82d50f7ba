//! Helpers shared by the integration tests.

use std::sync::Arc;

use spheroseg::clock::Clock;
use spheroseg::queue::{ImageRef, NewJob, Priority, Queue, QueueOptions, Recovery};

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
