//! The crash test (after redb's `crash_consistency.rs`): a child process enqueues, leases and
//! completes jobs in a loop and prints every acknowledged id; the parent SIGKILLs it at a random
//! moment, reopens the database and checks that every acknowledged job exists exactly once, every
//! acknowledged completion stuck, the counters agree with the jobs, and nothing is left `active`.
//!
//! The child is this same test binary, re-run on `child_process` with `SPHEROSEG_CRASH_CHILD` set.
//! On odd cycles it runs with a 64 KiB write-ahead log and a checkpoint every 20 ms, so kills also
//! land around checkpoints and on a log that has started over; on even cycles with the defaults,
//! so the reopen has a long log to replay.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::clock::SystemClock;
use spheroseg::queue::{JobFilter, JobId, JobState, Queue, QueueOptions};

use crate::util;

const CHILD_ENV: &str = "SPHEROSEG_CRASH_CHILD";
/// Set for the cycles that run on a small log with frequent checkpoints.
const SMALL_LOG_ENV: &str = "SPHEROSEG_CRASH_SMALL_LOG";
const CYCLES: usize = 8;

/// The child's loop: runs until killed (or for at most a minute, if the parent is gone).
#[test]
fn child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let rt = util::runtime();
    let mut options = QueueOptions::default();
    if std::env::var_os(SMALL_LOG_ENV).is_some() {
        options.wal_bytes = 64 << 10;
        options.checkpoint_every = Duration::from_millis(20);
    }
    let (queue, _) = Queue::open(
        &std::path::Path::new(&dir).join("q.redb"),
        options,
        Arc::new(SystemClock),
    )
    .expect("queue opens");
    let out = std::io::stdout();
    let started = Instant::now();
    let mut round = 0u64;
    rt.block_on(async {
        // Producers and a consumer run concurrently so the kill lands in group commits.
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = queue.clone();
                let out = std::io::stdout();
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while started.elapsed() < Duration::from_secs(60) {
                        i += 1;
                        let n = 1 + (i % 7) as usize;
                        let batch = (0..n)
                            .map(|k| util::job(((p + k + i as usize) % 10 + 1) as u8))
                            .collect();
                        let done = q.enqueue_batch(batch).await.expect("enqueue");
                        let mut o = out.lock();
                        for e in done {
                            writeln!(o, "ACK {}", e.job.id).expect("stdout");
                        }
                        o.flush().expect("flush");
                    }
                })
            })
            .collect();
        while started.elapsed() < Duration::from_secs(60) {
            round += 1;
            let leases = queue
                .lease(8, Duration::from_secs(60))
                .await
                .expect("lease");
            if leases.is_empty() {
                tokio::task::yield_now().await;
            }
            for (k, l) in leases.into_iter().enumerate() {
                // Leave some active on purpose, so the kill finds running jobs.
                if (k as u64 + round).is_multiple_of(5) {
                    continue;
                }
                queue
                    .complete(l.job.id, l.token, vec![7; 64], 0)
                    .await
                    .expect("complete");
                let mut o = out.lock();
                writeln!(o, "DONE {}", l.job.id).expect("stdout");
                o.flush().expect("flush");
            }
        }
        for p in producers {
            let _ = p.await;
        }
    });
}

#[test]
fn sigkill_loses_no_acknowledged_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked: BTreeSet<JobId> = BTreeSet::new();
    let mut done: BTreeSet<JobId> = BTreeSet::new();
    let mut seed = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut replayed = 0;

    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe);
        if cycle % 2 == 1 {
            child.env(SMALL_LOG_ENV, "1");
        }
        let mut child = child
            .args([
                "crash::child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Kill at a random moment 100-700 ms after the start (the child acknowledges within ~50 ms).
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(100 + (seed >> 33) % 600);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let lines = reader.join().expect("reader");
        let mut new_acks = 0;
        for l in lines {
            // A line cut by the kill is not an acknowledgement: take only whole, parsable ids.
            if let Some(id) = l.strip_prefix("ACK ").and_then(|s| s.parse::<JobId>().ok()) {
                new_acks += 1;
                assert!(
                    acked.insert(id),
                    "cycle {cycle}: id {id} acknowledged twice"
                );
            } else if let Some(id) = l
                .strip_prefix("DONE ")
                .and_then(|s| s.parse::<JobId>().ok())
            {
                done.insert(id);
            }
        }

        let opened = Instant::now();
        let (queue, recovery) = util::open(dir.path(), Arc::new(SystemClock));
        let open_time = opened.elapsed();
        let jobs = queue
            .list(&JobFilter::default(), None, usize::MAX)
            .expect("list")
            .jobs;
        let ids: BTreeSet<JobId> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(
            ids.len(),
            jobs.len(),
            "cycle {cycle}: a job is listed twice"
        );
        let missing: Vec<String> = acked.difference(&ids).map(|id| id.to_string()).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged jobs lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
        for j in &jobs {
            assert_ne!(
                j.state,
                JobState::Active,
                "cycle {cycle}: {} still active after open",
                j.id
            );
            if done.contains(&j.id) {
                assert_eq!(
                    j.state,
                    JobState::Completed,
                    "cycle {cycle}: completion of {} lost",
                    j.id
                );
                assert!(queue.result(j.id).expect("result").is_some());
            }
        }
        let stats = queue.stats().expect("stats");
        for state in JobState::ALL {
            let n = jobs.iter().filter(|j| j.state == state).count() as u64;
            assert_eq!(
                stats.counts.get(state),
                n,
                "cycle {cycle}: counter of {state}"
            );
        }
        eprintln!(
            "cycle {cycle}: killed after {delay:?}, {new_acks} new acks, {} jobs, {} log records redone, {} orphans requeued, reopened in {open_time:?}",
            jobs.len(),
            recovery.replayed,
            recovery.orphans.len()
        );
        replayed += recovery.replayed;
        queue.close();
    }
    assert!(
        acked.len() > CYCLES,
        "the child acknowledged too little to prove anything"
    );
    assert!(replayed > 0, "no kill left a write-ahead log to replay");
}
