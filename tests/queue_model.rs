//! A model-based property test (after redb's fuzzer against a BTreeMap): random sequences of
//! enqueue, lease, heartbeat, complete, fail, cancel, retry, priority change, pause, time passing,
//! sweep, close-and-reopen and crash-and-reopen run against the real queue and a plain in-memory
//! model. After every step both must agree on every job's state, priority and attempts, and on the
//! counters; every lease must hand out the same jobs in the same order. Nothing lost, nothing
//! duplicated.
//!
//! A crash is simulated by copying the database and its write-ahead log, as the disk holds them
//! between two commands, and opening the copy: the database is as of the last checkpoint and the
//! log must bring back everything after it. The log is kept small so that checkpoints (and the log
//! starting over) happen every few steps, and the tail of the ready index spills into the main one
//! after a few jobs, so leases and listings come from both.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use spheroseg::clock::{Clock, ManualClock};
use spheroseg::error_code::ErrorCode;
use spheroseg::queue::{
    Backoff, FailOutcome, JobError, JobFilter, JobId, JobState, LeaseToken, NewJob, Priority,
    Queue, QueueError, QueueOptions,
};

use crate::util;

const TTL: Duration = Duration::from_secs(30);
const T0: u64 = 1_800_000_000_000;

#[derive(Clone, Debug)]
enum Step {
    Enqueue { priority: u8, key: Option<u8> },
    EnqueueBatch { priorities: Vec<u8> },
    Lease { n: usize },
    Heartbeat,
    Complete { pick: usize },
    Fail { pick: usize, transient: bool },
    Cancel { pick: usize },
    Retry { pick: usize },
    ChangePriority { pick: usize, priority: u8 },
    Pause(bool),
    Advance { ms: u64 },
    Sweep,
    Reopen,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..=10, prop::option::of(0u8..4)).prop_map(|(priority, key)| Step::Enqueue { priority, key }),
        1 => prop::collection::vec(1u8..=10, 1..6).prop_map(|priorities| Step::EnqueueBatch { priorities }),
        4 => (0usize..4).prop_map(|n| Step::Lease { n }),
        1 => Just(Step::Heartbeat),
        3 => any::<usize>().prop_map(|pick| Step::Complete { pick }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, transient)| Step::Fail { pick, transient }),
        1 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Retry { pick }),
        1 => (any::<usize>(), 1u8..=10).prop_map(|(pick, priority)| Step::ChangePriority { pick, priority }),
        1 => any::<bool>().prop_map(Step::Pause),
        2 => prop_oneof![0u64..3_000, 20_000u64..70_000].prop_map(|ms| Step::Advance { ms }),
        2 => Just(Step::Sweep),
        1 => Just(Step::Reopen),
        1 => Just(Step::Crash),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct MJob {
    state: JobState,
    priority: u8,
    attempt: u32,
    base: u32,
    max: u32,
    interruptions: u32,
    seq: u64,
    /// When it last became queued (aging counts from here).
    queued_at: u64,
    run_at: u64,
    lease_until: u64,
    key: Option<String>,
}

#[derive(Default)]
struct Model {
    jobs: BTreeMap<JobId, MJob>,
    dedupe: HashMap<String, JobId>,
    next_seq: u64,
    paused: bool,
    /// Every lease handed out, stale or not: `(id, attempt)`.
    held: Vec<(JobId, u32)>,
    /// The clock, as the queue's last operation saw it.
    now: u64,
    /// Aging step in ms, when aging is on.
    aging: Option<u64>,
}

impl Model {
    /// A fresh job the queue accepted: queued now, next in sequence, three attempts.
    fn enqueued(&mut self, id: JobId, priority: u8, key: Option<String>) {
        let job = MJob {
            state: JobState::Queued,
            priority,
            attempt: 0,
            base: 0,
            max: 3,
            interruptions: 0,
            seq: self.next_seq,
            queued_at: self.now,
            run_at: 0,
            lease_until: 0,
            key,
        };
        self.jobs.insert(id, job);
        self.next_seq += 1;
    }

    fn requeue(&mut self, id: JobId) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = self.now;
        let j = self.jobs.get_mut(&id).expect("model job");
        j.state = JobState::Queued;
        j.seq = seq;
        j.queued_at = now;
    }

    fn finish(&mut self, id: JobId, state: JobState) {
        let j = self.jobs.get_mut(&id).expect("model job");
        j.state = state;
        if state != JobState::Completed
            && let Some(k) = j.key.clone()
            && self.dedupe.get(&k) == Some(&id)
        {
            self.dedupe.remove(&k);
        }
    }

    fn fenced(&self, id: JobId, attempt: u32) -> bool {
        self.jobs
            .get(&id)
            .is_some_and(|j| j.state == JobState::Active && j.attempt == attempt)
    }

    /// Jobs in `state` whose `at` is at most `until`, ordered by `(at, id)` like the queue's
    /// time-keyed indexes.
    fn due(&self, state: JobState, at: fn(&MJob) -> u64, until: u64) -> Vec<JobId> {
        let mut due: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == state && at(j) <= until)
            .map(|(id, j)| (at(j), *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Delayed jobs due at `now` become queued, in the order the queue promotes them.
    fn promote(&mut self, now: u64) -> Vec<JobId> {
        let due = self.due(JobState::Delayed, |j| j.run_at, now);
        for &id in &due {
            self.requeue(id);
        }
        due
    }

    /// The job the queue leases next: strict priority then FIFO; with aging, the priority a job's
    /// wait has earned (one level per step, at most 10), ties to the one queued first.
    fn next_ready(&self) -> Option<JobId> {
        let queued = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Queued);
        match self.aging {
            None => queued
                .min_by_key(|(_, j)| (10 - j.priority, j.seq))
                .map(|(id, _)| *id),
            Some(step) => queued
                .map(|(id, j)| {
                    let lifted = (self.now.saturating_sub(j.queued_at) / step).min(10) as u8;
                    let effective = j.priority.saturating_add(lifted).min(10);
                    ((10 - effective, j.seq), *id)
                })
                .min()
                .map(|(_, id)| id),
        }
    }

    fn counts(&self) -> [u64; 6] {
        let mut c = [0u64; 6];
        for j in self.jobs.values() {
            c[JobState::ALL
                .iter()
                .position(|s| *s == j.state)
                .expect("state")] += 1;
        }
        c
    }
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

fn open(
    dir: &std::path::Path,
    clock: &ManualClock,
    aging: Option<Duration>,
) -> (Queue, spheroseg::queue::Recovery) {
    let options = QueueOptions {
        aging,
        wal_bytes: 8 << 10,
        ready_tail_spill: 3,
        ..QueueOptions::default()
    };
    Queue::open(&dir.join("q.redb"), options, Arc::new(clock.clone())).expect("queue opens")
}

fn run(steps: Vec<Step>, aging: Option<Duration>) -> Result<(), TestCaseError> {
    let rt = util::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // Where the queue's files are: a crash moves on to a copy.
    let mut path = dir.path().to_owned();
    let clock = ManualClock::new(T0);
    let (mut queue, _) = open(&path, &clock, aging);
    let mut m = Model {
        aging: aging.map(|a| a.as_millis() as u64),
        ..Model::default()
    };
    let backoff = Backoff::default();

    for (n, s) in steps.into_iter().enumerate() {
        let now = clock.now();
        m.now = now;
        match s {
            Step::Enqueue { priority, key } => {
                let key = key.map(|k| format!("key-{k}"));
                let nj = NewJob {
                    dedupe_key: key.clone(),
                    ..util::job(priority)
                };
                let got = rt.block_on(queue.enqueue(nj)).expect("enqueue");
                match key.as_ref().and_then(|k| m.dedupe.get(k)) {
                    Some(&holder) => {
                        prop_assert!(got.deduplicated, "step {n}: key held by {holder}");
                        prop_assert_eq!(got.job.id, holder);
                    }
                    None => {
                        prop_assert!(!got.deduplicated);
                        prop_assert!(!m.jobs.contains_key(&got.job.id), "duplicate id");
                        if let Some(k) = &key {
                            m.dedupe.insert(k.clone(), got.job.id);
                        }
                        m.enqueued(got.job.id, priority, key);
                    }
                }
            }
            Step::EnqueueBatch { priorities } => {
                let batch: Vec<NewJob> = priorities.iter().map(|&p| util::job(p)).collect();
                let got = rt.block_on(queue.enqueue_batch(batch)).expect("batch");
                prop_assert_eq!(got.len(), priorities.len());
                for (e, &p) in got.iter().zip(&priorities) {
                    prop_assert!(!m.jobs.contains_key(&e.job.id));
                    m.enqueued(e.job.id, p, None);
                }
            }
            Step::Lease { n: want } => {
                let got = rt.block_on(queue.lease(want, TTL)).expect("lease");
                let mut expect = Vec::new();
                if !m.paused && want > 0 {
                    m.promote(now);
                    while expect.len() < want {
                        let Some(id) = m.next_ready() else { break };
                        let j = m.jobs.get_mut(&id).expect("model job");
                        j.state = JobState::Active;
                        j.attempt += 1;
                        j.lease_until = now + TTL.as_millis() as u64;
                        expect.push((id, j.attempt));
                    }
                }
                let got: Vec<(JobId, u32)> = got.iter().map(|l| (l.job.id, l.token.0)).collect();
                prop_assert_eq!(&got, &expect, "step {}: lease order", n);
                m.held.extend(got);
            }
            Step::Heartbeat => {
                let leases = m.held.clone();
                let lost = rt
                    .block_on(queue.heartbeat(
                        leases.iter().map(|&(id, a)| (id, LeaseToken(a))).collect(),
                        TTL,
                    ))
                    .expect("heartbeat");
                let mut expect = Vec::new();
                for (id, attempt) in leases {
                    if m.fenced(id, attempt) {
                        m.jobs.get_mut(&id).expect("job").lease_until =
                            now + TTL.as_millis() as u64;
                    } else {
                        expect.push(id);
                    }
                }
                prop_assert_eq!(lost, expect);
            }
            Step::Complete { pick: i } => {
                let Some((id, attempt)) = pick(&m.held, i) else {
                    continue;
                };
                let r = rt.block_on(queue.complete(id, LeaseToken(attempt), vec![1, 2, 3], 1));
                if m.fenced(id, attempt) {
                    prop_assert!(r.is_ok(), "step {n}: {r:?}");
                    m.finish(id, JobState::Completed);
                } else {
                    prop_assert!(
                        matches!(r, Err(QueueError::Stale { .. })),
                        "step {n}: {r:?}"
                    );
                }
            }
            Step::Fail { pick: i, transient } => {
                let Some((id, attempt)) = pick(&m.held, i) else {
                    continue;
                };
                let err = if transient {
                    JobError::transient(ErrorCode::ML_UNAVAILABLE, "503")
                } else {
                    JobError::permanent(ErrorCode::DECODE_FAILED, "not an image")
                };
                let r = rt.block_on(queue.fail(id, LeaseToken(attempt), err));
                if m.fenced(id, attempt) {
                    let j = m.jobs.get_mut(&id).expect("job");
                    let spent = j.attempt - j.base;
                    if transient && spent < j.max {
                        let run_at = now + backoff.delay(id, spent).as_millis() as u64;
                        j.state = JobState::Delayed;
                        j.run_at = run_at;
                        prop_assert_eq!(r.expect("fail"), FailOutcome::Retrying { run_at });
                    } else {
                        m.finish(id, JobState::Failed);
                        prop_assert_eq!(r.expect("fail"), FailOutcome::Failed);
                    }
                } else {
                    prop_assert!(
                        matches!(r, Err(QueueError::Stale { .. })),
                        "step {n}: {r:?}"
                    );
                }
            }
            Step::Cancel { pick: i } => {
                let ids: Vec<JobId> = m.jobs.keys().copied().collect();
                let Some(id) = pick(&ids, i) else { continue };
                let r = rt.block_on(queue.cancel(id));
                if m.jobs[&id].state.is_finished() {
                    prop_assert!(matches!(r, Err(QueueError::InvalidState { .. })), "{r:?}");
                } else {
                    prop_assert_eq!(r.expect("cancel").state, m.jobs[&id].state);
                    m.finish(id, JobState::Cancelled);
                }
            }
            Step::Retry { pick: i } => {
                let ids: Vec<JobId> = m.jobs.keys().copied().collect();
                let Some(id) = pick(&ids, i) else { continue };
                let r = rt.block_on(queue.retry(id));
                if matches!(m.jobs[&id].state, JobState::Failed | JobState::Cancelled) {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.requeue(id);
                    let j = m.jobs.get_mut(&id).expect("job");
                    j.base = j.attempt;
                    j.interruptions = 0;
                    if let Some(k) = j.key.clone() {
                        m.dedupe.entry(k).or_insert(id);
                    }
                } else {
                    prop_assert!(matches!(r, Err(QueueError::InvalidState { .. })), "{r:?}");
                }
            }
            Step::ChangePriority { pick: i, priority } => {
                let ids: Vec<JobId> = m.jobs.keys().copied().collect();
                let Some(id) = pick(&ids, i) else { continue };
                let p = Priority::new(priority.into()).expect("valid");
                let r = rt.block_on(queue.change_priority(id, p));
                if m.jobs[&id].state.is_finished() {
                    prop_assert!(matches!(r, Err(QueueError::InvalidState { .. })), "{r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.jobs.get_mut(&id).expect("job").priority = priority;
                }
            }
            Step::Pause(p) => {
                rt.block_on(queue.set_paused(p)).expect("pause");
                m.paused = p;
            }
            Step::Advance { ms } => clock.advance(Duration::from_millis(ms)),
            Step::Sweep => sweep(&rt, &queue, &mut m, now)?,
            Step::Reopen | Step::Crash => {
                if matches!(s, Step::Crash) {
                    let image = dir.path().join(format!("crash-{n}"));
                    std::fs::create_dir(&image).expect("crash dir");
                    for file in ["q.redb", "q.wal"] {
                        std::fs::copy(path.join(file), image.join(file)).expect("copy");
                    }
                    path = image;
                }
                queue.close();
                let (q, recovery) = open(&path, &clock, aging);
                queue = q;
                // The queue recovers them in lease-expiry order.
                let active = m.due(JobState::Active, |j| j.lease_until, u64::MAX);
                for &id in &active {
                    let j = m.jobs.get_mut(&id).expect("job");
                    j.interruptions += 1;
                    if j.interruptions > j.max {
                        m.finish(id, JobState::Failed);
                    } else {
                        j.base = (j.base + 1).min(j.attempt);
                        m.requeue(id);
                    }
                }
                prop_assert_eq!(recovery.orphans, active);
            }
        }
        check(&queue, &m, n)?;
    }
    // Drain: everything still waiting comes out in model order, then nothing is left active.
    rt.block_on(queue.set_paused(false)).expect("resume");
    m.paused = false;
    clock.advance(Duration::from_secs(3600));
    m.now = clock.now();
    sweep(&rt, &queue, &mut m, clock.now())?;
    loop {
        let got = rt.block_on(queue.lease(1, TTL)).expect("lease");
        let expect = m.next_ready();
        match (got.first(), expect) {
            (None, None) => break,
            (Some(l), Some(id)) if l.job.id == id => {
                let j = m.jobs.get_mut(&id).expect("job");
                j.state = JobState::Active;
                j.attempt += 1;
                rt.block_on(queue.complete(id, l.token, vec![], 0))
                    .expect("complete");
                m.finish(id, JobState::Completed);
            }
            (g, e) => prop_assert!(
                false,
                "drain order: got {:?}, model {:?}",
                g.map(|l| l.job.id),
                e
            ),
        }
    }
    queue.close();
    Ok(())
}

/// Promotes due delayed jobs and expires due leases, in both, and compares what each did.
fn sweep(
    rt: &tokio::runtime::Runtime,
    queue: &Queue,
    m: &mut Model,
    now: u64,
) -> Result<(), TestCaseError> {
    let r = rt.block_on(queue.sweep()).expect("sweep");
    let promoted = m.promote(now);
    let due = m.due(JobState::Active, |j| j.lease_until, now);
    let mut expired = Vec::new();
    for id in due {
        let j = &m.jobs[&id];
        if j.attempt - j.base >= j.max {
            m.finish(id, JobState::Failed);
        } else {
            m.requeue(id);
        }
        expired.push(id);
    }
    prop_assert_eq!(r.promoted, promoted);
    prop_assert_eq!(r.expired, expired);
    Ok(())
}

/// Every model job exists with the same state, priority and attempts, the counters match, and the
/// listing holds exactly the model's jobs, each once.
fn check(queue: &Queue, m: &Model, step: usize) -> Result<(), TestCaseError> {
    for (id, mj) in &m.jobs {
        let j = queue.get(*id).expect("get");
        prop_assert!(j.is_some(), "step {step}: job {id} lost");
        let j = j.expect("present");
        prop_assert_eq!(j.state, mj.state, "step {}: state of {}", step, id);
        prop_assert_eq!(
            j.priority.get(),
            mj.priority,
            "step {}: priority of {}",
            step,
            id
        );
        prop_assert_eq!(j.lease.0, mj.attempt, "step {}: lease of {}", step, id);
        prop_assert_eq!(
            j.attempts,
            mj.attempt - mj.base,
            "step {}: spent of {}",
            step,
            id
        );
    }
    let stats = queue.stats().expect("stats");
    let counts: Vec<u64> = JobState::ALL.iter().map(|s| stats.counts.get(*s)).collect();
    prop_assert_eq!(counts, m.counts().to_vec(), "step {}: counters", step);
    prop_assert_eq!(stats.paused, m.paused);
    let listed = queue
        .list(&JobFilter::default(), None, usize::MAX)
        .expect("list");
    let ids: Vec<JobId> = listed.jobs.iter().map(|j| j.id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    prop_assert_eq!(unique.len(), ids.len(), "step {}: duplicated jobs", step);
    prop_assert_eq!(ids.len(), m.jobs.len(), "step {}: job count", step);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn queue_matches_its_model(steps in prop::collection::vec(step(), 1..80)) {
        run(steps, None)?;
    }

    #[test]
    fn queue_with_aging_matches_its_model(steps in prop::collection::vec(step(), 1..80)) {
        run(steps, Some(Duration::from_secs(30)))?;
    }
}
