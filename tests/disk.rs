//! A full disk refuses work and recovers by itself: the queue and the server on a small tmpfs the
//! test mounts (skipped with a message where the machine does not allow it), filled to the last
//! byte while jobs are enqueued, then freed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use spheroseg::clock::SystemClock;
use spheroseg::queue::{JobId, JobState, NewJob, Queue, QueueOptions};

use crate::util::api::{api_in, read};
use crate::util::{SmallDisk, fill_disk as fill};

/// A job whose record takes about 8 KiB, so the database grows quickly.
fn big_job(i: usize) -> NewJob {
    NewJob {
        metadata: vec![("note".into(), format!("{i}:{}", "x".repeat(8 << 10)))],
        ..crate::util::job((i % 10) as u8 + 1)
    }
}

/// A 24 MiB tmpfs and queue options with a small log; `None` where no tmpfs can be mounted.
fn small_disk(checkpoint_every: Duration) -> Option<(SmallDisk, std::path::PathBuf, QueueOptions)> {
    let Some(disk) = SmallDisk::new(24) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return None;
    };
    let path = disk.0.path().join("q.redb");
    let options = QueueOptions {
        wal_bytes: 1 << 20,
        checkpoint_every,
        ..QueueOptions::default()
    };
    Some((disk, path, options))
}

/// Enqueues `job` as soon as the queue takes changes again (within 10 s of the first try).
fn enqueue_once_there_is_room(rt: &tokio::runtime::Runtime, queue: &Queue, job: NewJob) -> JobId {
    let freed = Instant::now();
    loop {
        match rt.block_on(queue.enqueue(job.clone())) {
            Ok(e) => {
                eprintln!(
                    "took changes again {:?} after space was freed",
                    freed.elapsed()
                );
                return e.job.id;
            }
            Err(e) if e.is_disk_full() && freed.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the queue did not recover: {e}"),
        }
    }
}

/// Enqueues until the first refusal; returns the acknowledged ids and that error.
async fn enqueue_until_refused(
    queue: &Queue,
    from: usize,
) -> (Vec<JobId>, spheroseg::queue::QueueError) {
    let mut acked = Vec::new();
    for i in from.. {
        match queue.enqueue(big_job(i)).await {
            Ok(e) => acked.push(e.job.id),
            Err(e) => return (acked, e),
        }
        assert!(i < from + 100_000, "the disk never filled");
    }
    unreachable!()
}

/// Every acknowledged job is there, queued or active, and the counts hold them all.
fn all_there(queue: &Queue, acked: &[JobId]) {
    for id in acked {
        let job = queue
            .get(*id)
            .expect("read")
            .expect("acknowledged job kept");
        assert!(
            matches!(job.state, JobState::Queued | JobState::Active),
            "{job:?}"
        );
    }
    let counts = queue.stats().expect("stats").counts;
    assert_eq!(
        counts.queued + counts.active,
        acked.len() as u64,
        "{counts:?}"
    );
}

/// `reserve`: the queue keeps its default space back beside the database, and reads show
/// every acknowledged job while the disk is full; without it they may show the last checkpoint.
fn full_disk_then_room(checkpoint_every: Duration, reserve: bool) {
    let Some((disk, path, mut options)) = small_disk(checkpoint_every) else {
        return;
    };
    if !reserve {
        options.reserve_bytes = 0;
    }
    let rt = crate::util::runtime();
    let (queue, _) = Queue::open(&path, options.clone(), Arc::new(SystemClock)).expect("open");
    // Some room in the database first, then no room at all.
    let mut acked: Vec<JobId> = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(queue.enqueue(big_job(i)).await.expect("room").job.id);
        }
        ids
    });
    let filler = fill(disk.0.path());
    let (more, refused) = rt.block_on(enqueue_until_refused(&queue, 20));
    acked.extend(more);
    eprintln!(
        "checkpoint every {checkpoint_every:?}: {} jobs acknowledged, then refused: {refused}",
        acked.len()
    );
    assert!(refused.is_disk_full(), "{refused:?}");
    assert_eq!(refused.code().as_str(), "disk-full");
    assert!(queue.disk_full().is_some());
    // The queue goes on: reads answer, later commands are refused the same way, not stopped.
    assert!(queue.stats().is_ok(), "{:?}", queue.stats());
    if reserve {
        all_there(&queue, &acked);
    }
    for i in 0..3 {
        let again = rt
            .block_on(queue.enqueue(big_job(100_000 + i)))
            .unwrap_err();
        assert!(again.is_disk_full(), "{again:?}");
    }
    // Room again: work continues without a restart.
    std::fs::remove_file(&filler).expect("free");
    let freed = Instant::now();
    let next = loop {
        match rt.block_on(queue.enqueue(big_job(200_000))) {
            Ok(e) => break e.job.id,
            Err(e) if e.is_disk_full() && freed.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the queue did not recover: {e}"),
        }
    };
    eprintln!(
        "took changes again {:?} after space was freed",
        freed.elapsed()
    );
    acked.push(next);
    assert_eq!(queue.disk_full(), None);
    let leased = rt
        .block_on(queue.lease(1, Duration::from_secs(30)))
        .expect("lease");
    assert_eq!(leased.len(), 1);
    // Every acknowledged job is there, and nothing refused is, before and after a restart.
    all_there(&queue, &acked);
    queue.close();
    let (queue, recovery) = Queue::open(&path, options, Arc::new(SystemClock)).expect("reopen");
    assert_eq!(recovery.disk_full, None);
    all_there(&queue, &acked);
    queue.close();
    drop(disk);
}

#[test]
fn a_full_disk_during_commits_refuses_and_the_queue_recovers_without_a_restart() {
    full_disk_then_room(Duration::from_secs(3600), true);
}

#[test]
fn without_a_reserve_a_full_disk_still_refuses_and_the_queue_recovers() {
    full_disk_then_room(Duration::from_secs(3600), false);
}

#[test]
fn a_full_disk_during_checkpoints_refuses_and_the_queue_recovers_without_a_restart() {
    full_disk_then_room(Duration::ZERO, true);
}

#[test]
fn a_queue_opens_on_a_full_disk_serves_what_it_holds_and_takes_changes_once_there_is_room() {
    let Some((disk, path, options)) = small_disk(Duration::from_secs(3600)) else {
        return;
    };
    let rt = crate::util::runtime();
    let (queue, _) = Queue::open(&path, options.clone(), Arc::new(SystemClock)).expect("open");
    let filler = fill(disk.0.path());
    // Acknowledged into the log, not yet checkpointed, when the process dies with a full disk.
    let (acked, refused) = rt.block_on(enqueue_until_refused(&queue, 0));
    assert!(refused.is_disk_full(), "{refused:?}");
    rt.block_on(queue.lease(1, Duration::from_secs(30)))
        .unwrap_or_default();
    drop(queue); // no close: as after a crash
    let (queue, recovery) =
        Queue::open(&path, options.clone(), Arc::new(SystemClock)).expect("opens anyway");
    eprintln!(
        "opened on a full disk with {} acknowledged jobs: {:?}",
        acked.len(),
        recovery.disk_full
    );
    // The first process brought the database up to date in the reserve's room.
    all_there(&queue, &acked);
    if recovery.disk_full.is_some() {
        let e = rt.block_on(queue.enqueue(big_job(1_000_000))).unwrap_err();
        assert!(e.is_disk_full(), "{e:?}");
    }
    std::fs::remove_file(&filler).expect("free");
    enqueue_once_there_is_room(&rt, &queue, big_job(2_000_000));
    for id in &acked {
        let job = queue
            .get(*id)
            .expect("read")
            .expect("acknowledged job kept");
        assert_eq!(job.state, JobState::Queued, "{job:?}");
    }
    queue.close();
    drop(disk);
}

/// Through the server: readiness and the disk health entry follow the data directory's own file
/// system; uploads are refused under the low-water mark and taken again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_the_data_directorys_file_system_and_refuses_uploads_when_it_is_low() {
    let Some(disk) = SmallDisk::new(24) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let data = tempfile::tempdir_in(disk.0.path()).expect("data dir");
    let data_path = data.path().to_owned();
    let a = api_in(data, None, 64 << 20).await;
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = a.get("/api/health/detailed").await;
    let details = &v["services"]["disk"]["details"];
    assert_eq!(details["fs_type"], "tmpfs", "{v}");
    let total = details["total_bytes"].as_u64().expect("total");
    assert!(
        total <= 24 << 20,
        "the tmpfs, not the root file system: {v}"
    );
    assert_eq!(details["low_water_bytes"].as_u64(), Some(total / 50));

    let filler = fill(&data_path);
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["services"]["disk"], false, "{v}");
    let (_, v) = a.get("/api/health/detailed").await;
    assert_eq!(v["services"]["disk"]["status"], "degraded", "{v}");
    let (s, v) = a
        .upload(&[("image", "a.png", read("spheroid_lumen_8bit.png"))], &[])
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::INSUFFICIENT_STORAGE, Some("disk-full")),
        "{v}"
    );
    // Results are still served.
    let (s, _) = a.get("/api/jobs").await;
    assert_eq!(s, StatusCode::OK);
    let (s, sys) = a.get("/api/system").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sys["disk_low"], true, "{sys}");

    std::fs::remove_file(&filler).expect("free");
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!(s, StatusCode::OK, "ready again once there is room: {v}");
    let (s, v) = a
        .upload(&[("image", "a.png", read("spheroid_lumen_8bit.png"))], &[])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    a.stop().await;
    drop(disk);
}
