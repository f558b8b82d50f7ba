//! The watchdog's decision on real parts: a queue whose sync thread hangs on the disk stops the
//! pings, as do a dispatcher that stopped going round and an HTTP server that does not answer;
//! the loop pets only after rounds that passed. And the status line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::watchdog::{Limits, Stuck, Watched, check, pet_while};
use super::{Status, describe};
use crate::clock::SystemClock;
use crate::fsio::stall::StallFs;
use crate::liveness::Beat;
use crate::queue::{ImageRef, NewJob, Queue, QueueOptions, StateCounts};
use crate::segment::breaker::State;

const LIMITS: Limits = Limits {
    answer_within: Duration::from_millis(300),
    dispatcher_quiet: Duration::from_secs(60),
};

/// An HTTP server that answers every request with `status`.
async fn stub_http(status: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// A queue in `dir` on `fs`, a dispatcher that just went round, and an HTTP server that answers.
async fn parts(dir: &std::path::Path, fs: &StallFs) -> Watched {
    let queue = Queue::open_on(
        Arc::new(fs.clone()),
        &dir.join("q.redb"),
        QueueOptions {
            reserve_bytes: 0,
            ..QueueOptions::default()
        },
        Arc::new(SystemClock),
    )
    .expect("queue opens")
    .0;
    let dispatcher = Arc::new(Beat::default());
    dispatcher.beat();
    Watched {
        queue,
        dispatcher,
        http: stub_http("200 OK").await,
    }
}

fn job() -> NewJob {
    NewJob {
        image: ImageRef {
            hash: "img".into(),
            name: "a.png".into(),
            width: 64,
            height: 64,
            bytes: 4096,
        },
        ..NewJob::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_sync_hangs_stops_the_pings_until_it_moves_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = StallFs::default();
    let w = parts(dir.path(), &fs).await;
    let queue = w.queue.clone();
    assert_eq!(check(&w, LIMITS).await, Ok(()));

    // An acknowledged enqueue waits for its fdatasync, which now hangs on the disk.
    fs.stall();
    let q = queue.clone();
    let enqueue = tokio::spawn(async move { q.enqueue(job()).await });
    let f = fs.clone();
    tokio::task::spawn_blocking(move || f.wait_for_stalled_sync())
        .await
        .expect("waits");
    assert_eq!(check(&w, LIMITS).await, Err(Stuck::Writer));
    assert_eq!(check(&w, LIMITS).await, Err(Stuck::Writer));
    assert!(!enqueue.is_finished());

    fs.release();
    enqueue
        .await
        .expect("task")
        .expect("enqueued once the disk moves");
    assert_eq!(check(&w, LIMITS).await, Ok(()));
    tokio::task::spawn_blocking(move || queue.close())
        .await
        .expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_dispatcher_or_a_silent_http_server_stops_the_pings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = parts(dir.path(), &StallFs::default()).await;
    let (queue, dispatcher) = (w.queue.clone(), Arc::clone(&w.dispatcher));
    let strict = Limits {
        dispatcher_quiet: Duration::from_millis(20),
        ..LIMITS
    };
    std::thread::sleep(Duration::from_millis(40));
    assert!(matches!(check(&w, strict).await, Err(Stuck::Dispatcher(_))));
    dispatcher.beat();
    assert_eq!(check(&w, strict).await, Ok(()));

    w.http = stub_http("503 Service Unavailable").await;
    let Err(Stuck::Http(why)) = check(&w, LIMITS).await else {
        panic!("a 503 is no sign of life");
    };
    assert!(why.contains("503"), "{why}");
    // A port nobody listens on any more.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    w.http = gone.local_addr().expect("addr");
    drop(gone);
    assert!(matches!(check(&w, LIMITS).await, Err(Stuck::Http(_))));
    tokio::task::spawn_blocking(move || queue.close())
        .await
        .expect("closes");
}

#[tokio::test]
async fn the_loop_pets_only_after_rounds_that_passed() {
    let rounds = Arc::new(AtomicUsize::new(0));
    let round_done = Arc::new(tokio::sync::Notify::new());
    let pets = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = {
        let (rounds, round_done, pets) = (rounds.clone(), round_done.clone(), pets.clone());
        tokio::spawn(async move {
            let check = || {
                let n = rounds.fetch_add(1, Ordering::SeqCst);
                round_done.notify_one();
                // Three good rounds, then the writer wedges, then it is back for good.
                async move {
                    match n {
                        3..=6 => Err(Stuck::Writer),
                        _ => Ok(()),
                    }
                }
            };
            let pet = || {
                pets.fetch_add(1, Ordering::SeqCst);
            };
            pet_while(Duration::from_millis(5), check, pet, stop).await;
        })
    };
    while rounds.load(Ordering::SeqCst) < 7 {
        round_done.notified().await;
    }
    // Rounds 0-2 petted, 3-6 did not; round 7 may be under way.
    let at_seven = pets.load(Ordering::SeqCst);
    assert_eq!(at_seven, 3);
    while rounds.load(Ordering::SeqCst) < 10 {
        round_done.notified().await;
    }
    assert!(pets.load(Ordering::SeqCst) >= 5, "pets resume");
    stop_tx.send(true).expect("the loop listens");
    task.await.expect("the loop ends on stop");
}

#[test]
fn the_status_line_reads_as_a_sentence() {
    let line = describe(&Status {
        counts: StateCounts {
            queued: 12,
            delayed: 1,
            active: 2,
            completed: 40,
            failed: 3,
            cancelled: 0,
        },
        paused: true,
        workers: (2, 4),
        breakers: vec![("http".into(), State::Open)],
        disk_full: false,
    });
    assert_eq!(
        line,
        "queued 12, active 2 (2 of 4 workers busy), delayed 1, completed 40, failed 3; paused; breaker http open"
    );
}
