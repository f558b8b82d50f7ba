//! The dispatcher (a tokio task) and the worker pool (N OS threads).
//!
//! The dispatcher leases a job only when it can start at once (`slots`): a builtin job when a
//! worker is free, handed over a bounded channel (and a worker that finishes a builtin job
//! leases the next queued one itself, `worker::serve`, so a busy runtime never keeps it idle);
//! an ML job when its service has a free slot (`max_in_flight` calls of a remote service run on
//! the runtime, `max_parallel` runs of a local program on blocking threads, `remote`), so ML
//! jobs never hold a worker. It renews the leases
//! of running jobs (any job may run for minutes), stops jobs past their timeout, and sweeps
//! delayed jobs and expired leases on a schedule of its own. It wakes when the queue says a job
//! became leasable (`Queue::ready`), when a worker or an ML slot comes free, when the next
//! delayed job falls due, and on its timers; it never busy-polls, and nobody outside has to wake
//! it.
//!
//! A job names a segmenter; any ML service serving it may take the job (`route`: least
//! outstanding calls, weighted, among those whose breaker admits a call). A job none of them may
//! take now is not leased and spends no attempt: the lease holds it until one may (`slots`), or
//! it runs on the builtin segmenter when the services say `fallback_builtin`.
//!
//! Workers run each job inside `catch_unwind`, so a panic fails that job and the thread lives on.
//! They talk to the queue with its blocking calls (the writer is another OS thread), keep a
//! running job's progress in the pool's map, and publish it as the one non-durable event; every
//! other job event comes from the queue's commits.
//!
//! Shutdown: the dispatcher stops leasing; running jobs (calls in flight too) get the grace
//! period; the rest are stopped (a call's request dropped) and handed back to the queue
//! (requeued, their attempt refunded); the ML tasks and the threads are joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::error_code::ErrorCode;
use crate::events::{EventBus, EventKind};
use crate::images::ImageStore;
use crate::liveness::Beat;
use crate::queue::{FailOutcome, JobError, JobId, Lease, LeaseToken, Queue, QueueError};
use crate::segment::breaker::{Permit, Transition};
use crate::segment::{
    DecodeBudget, DecodeLimits, Failure, MlService, SegmenterId, Segmenters, Stop, StopReason,
};

/// How often expired leases and due delayed jobs are swept, whatever else happens.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How the pool runs.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub workers: usize,
    pub lease_ttl: Duration,
    pub builtin_timeout: Duration,
    pub ml_timeout: Duration,
    pub limits: DecodeLimits,
    /// Decoded bytes in flight, shared with the uploads.
    pub budget: DecodeBudget,
}

/// What runs a leased job.
#[derive(Clone)]
enum Target {
    /// The builtin segmenter; `fallback_from` the ML service whose breaker is open.
    Builtin { fallback_from: Option<SegmenterId> },
    /// An ML service, with the breaker's permit taken when the job was admitted.
    Ml(SegmenterId, Arc<MlService>, Permit),
}

struct Work {
    lease: Lease,
    stop: Arc<Stop>,
    deadline: Instant,
    target: Target,
}

struct Running {
    token: LeaseToken,
    stop: Arc<Stop>,
    deadline: Instant,
    /// 0..=100, as the segmenter last reported it.
    progress: Arc<AtomicU8>,
}

struct Shared {
    queue: Queue,
    images: ImageStore,
    events: EventBus,
    segmenters: Segmenters,
    config: PoolConfig,
    clock: Arc<dyn Clock>,
    running: Mutex<HashMap<JobId, Running>>,
    /// Jobs whose failed half-open trial was held for free once: a second such failure spends an
    /// attempt, so a job that itself breaks the service cannot hold every other job back forever.
    trial_failed: Mutex<std::collections::HashSet<JobId>>,
    busy: AtomicUsize,
    /// True once a shutdown began: the dispatcher stops and no worker takes another job.
    stop: watch::Receiver<bool>,
    /// A worker slot came free, or the dispatcher should look again (a breaker was reset).
    nudge: Notify,
    idle: Notify,
    /// The dispatcher went round its loop (read by the systemd watchdog).
    dispatcher_beat: Arc<Beat>,
    /// The runtime the pool started on, for tasks the worker threads hand off (never blocked on).
    runtime: tokio::runtime::Handle,
    /// The ML jobs running off the CPU workers (remote calls, local programs): joined at shutdown.
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

/// The running pool; `shutdown` stops it in order.
pub struct Pool {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// A cheap handle for reading the pool's state and acting on its running jobs and breakers.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
}

impl PoolHandle {
    /// Workers busy and in total.
    pub fn workers(&self) -> (usize, usize) {
        (
            self.shared.busy.load(Ordering::SeqCst),
            self.shared.config.workers,
        )
    }

    /// Stops a running job (after it was cancelled in the queue).
    pub fn stop_job(&self, id: JobId) {
        if let Some(r) = self.shared.running.lock().expect("running lock").get(&id) {
            r.stop.request(StopReason::Cancelled);
        }
    }

    /// The progress of a running job, as its segmenter last reported it.
    pub fn progress(&self, id: JobId) -> Option<u8> {
        self.shared
            .running
            .lock()
            .expect("running lock")
            .get(&id)
            .map(|r| r.progress.load(Ordering::Relaxed))
    }

    /// When the dispatcher last went round its loop: at least every second (its sweep timer)
    /// unless it is stuck.
    pub fn dispatcher_beat(&self) -> Arc<Beat> {
        Arc::clone(&self.shared.dispatcher_beat)
    }

    /// The ML services and their breakers.
    pub fn ml(&self) -> &HashMap<SegmenterId, Arc<MlService>> {
        &self.shared.segmenters.ml
    }

    /// Closes a service's breaker by hand and releases the jobs it held: they are queued at once.
    pub async fn reset_breaker(&self, name: &str) -> Option<crate::segment::breaker::Snapshot> {
        let (id, svc) = self.shared.segmenters.ml.get_key_value(name)?;
        // Jobs name the segmenter the service serves.
        let id = svc.segmenter_of(id);
        let now = self.shared.clock.now();
        let snapshot = {
            let mut b = svc.breaker.lock().expect("breaker lock");
            if let Some(t) = b.reset(now) {
                tracing::warn!(service = %name, from = t.from.as_str(), "circuit breaker reset by hand");
                publish_transition(&self.shared, name, Some(t));
            }
            b.snapshot(now)
        };
        match self.shared.queue.promote_segmenter(id.clone()).await {
            Ok(released) if !released.is_empty() => {
                tracing::info!(service = %name, jobs = released.len(), "held jobs released");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(service = %name, error = %e, "cannot release held jobs"),
        }
        Some(snapshot)
    }

    /// The breaker of each ML service, by name, as of now on the pool's clock.
    pub fn breakers(&self) -> Vec<(String, crate::segment::breaker::Snapshot)> {
        let now = self.shared.clock.now();
        let mut out: Vec<_> = self
            .shared
            .segmenters
            .ml
            .iter()
            .map(|(name, svc)| {
                (
                    name.to_string(),
                    svc.breaker.lock().expect("breaker lock").snapshot(now),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Pool {
    /// Builds the workers, then starts them and the dispatcher on the current tokio runtime.
    pub fn start(
        queue: Queue,
        images: ImageStore,
        events: EventBus,
        segmenters: Segmenters,
        config: PoolConfig,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Pool> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            queue,
            images,
            events,
            segmenters,
            clock,
            running: Mutex::new(HashMap::new()),
            trial_failed: Mutex::default(),
            busy: AtomicUsize::new(0),
            stop: stop_rx.clone(),
            nudge: Notify::new(),
            idle: Notify::new(),
            dispatcher_beat: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::default(),
            config,
        });
        let n = shared.config.workers.max(1);
        let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(n);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, s) = (work_rx.clone(), Arc::clone(&shared));
            workers.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker::serve(&s, &rx))?,
            );
        }
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&shared), work_tx, stop_rx));
        Ok(Pool {
            shared,
            stop_tx,
            dispatcher: Some(dispatcher),
            workers,
        })
    }

    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops leasing, gives running jobs `grace` to finish, stops the rest (they are handed back
    /// to the queue), and joins every thread.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop_tx.send(true);
        if let Some(d) = self.dispatcher.take() {
            let _ = d.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.shared.idle.notified();
            if self.shared.running.lock().expect("running lock").is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let running = self.shared.running.lock().expect("running lock");
                tracing::info!(
                    jobs = running.len(),
                    "grace period over; stopping running jobs"
                );
                for r in running.values() {
                    r.stop.request(StopReason::Shutdown);
                }
                break;
            }
        }
        // Stopped ML jobs end within moments: a dropped request, a killed program.
        let mut tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("tasks lock"));
        while let Some(r) = tasks.join_next().await {
            if r.is_err() {
                tracing::error!("an ML job's task panicked outside the job");
            }
        }
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                if w.join().is_err() {
                    tracing::error!("a worker thread panicked outside a job");
                }
            }
        })
        .await;
    }
}

fn publish_workers(s: &Shared) {
    s.events.publish(EventKind::Workers {
        busy: s.busy.load(Ordering::SeqCst),
        total: s.config.workers,
    });
}

fn publish_transition(s: &Shared, service: &str, t: Option<Transition>) {
    if let Some(t) = t {
        tracing::warn!(
            service,
            from = t.from.as_str(),
            to = t.to.as_str(),
            "circuit breaker changed"
        );
        s.events.publish(EventKind::BreakerChanged {
            service: service.to_owned(),
            from: t.from.as_str().into(),
            to: t.to.as_str().into(),
        });
    }
}

async fn dispatch(
    s: Arc<Shared>,
    work_tx: crossbeam_channel::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::time::{Instant as Tick, MissedTickBehavior, interval, sleep_until};

    let ready = s.queue.ready();
    let beat_every = (s.config.lease_ttl / 3).max(Duration::from_millis(100));
    let mut beat = interval(beat_every);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sweep = interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stats_tick = interval(Duration::from_secs(1));
    stats_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_stats = None;
    loop {
        s.dispatcher_beat.beat();
        if *stop.borrow() {
            break;
        }
        let (free, fits, held) = slots::slots(&s);
        if free > 0 {
            match s.queue.lease_routed(free, s.config.lease_ttl, fits).await {
                Ok(leases) => {
                    for lease in leases {
                        admit(&s, &work_tx, lease).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease failed"),
            }
            // It stopped at its limit of holds: more jobs may wait behind the held ones.
            if held.load(Ordering::Relaxed) >= free + crate::queue::HOLDS_PER_LEASE {
                s.nudge.notify_one();
            }
        }
        // When the next delayed job falls due, as a deadline: a wake-up in between does not move
        // it (only a new earliest job does).
        let due = match s.queue.next_due() {
            Ok(Some(at)) if free > 0 => {
                let wait = Duration::from_millis(at.saturating_sub(s.clock.now()));
                Some(Tick::now() + wait.max(Duration::from_millis(1)))
            }
            _ => None,
        };
        tokio::select! {
            _ = stop.changed() => break,
            _ = ready.notified() => {}
            _ = s.nudge.notified() => {}
            _ = async { sleep_until(due.expect("checked")).await }, if due.is_some() => {}
            _ = beat.tick() => heartbeat(&s).await,
            _ = sweep.tick() => {
                if let Err(e) = s.queue.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
                }
            }
            _ = stats_tick.tick() => publish_stats(&s, &mut last_stats),
        }
    }
    tracing::debug!("dispatcher stopped");
}

/// Publishes the queue's counts when they changed since the last time (the read is O(1)).
fn publish_stats(s: &Shared, last: &mut Option<(crate::queue::StateCounts, bool)>) {
    let Ok(stats) = s.queue.stats() else { return };
    let now = (stats.counts, stats.paused);
    if last.as_ref() != Some(&now) {
        *last = Some(now);
        s.events.publish(EventKind::QueueStats {
            counts: stats.counts,
            paused: stats.paused,
            oldest_queued_ms: stats.oldest_queued_ms,
        });
    }
}

/// Decides where a leased job runs and hands it to a worker, or holds it back.
async fn admit(s: &Arc<Shared>, work_tx: &crossbeam_channel::Sender<Work>, lease: Lease) {
    let job = &lease.job;
    let now = s.clock.now();
    let name = &job.segmenter;
    let target = if name.is_builtin() {
        Target::Builtin {
            fallback_from: None,
        }
    } else if s.segmenters.serving(name).next().is_none() {
        let err = JobError::permanent(
            ErrorCode::UNKNOWN_SEGMENTER,
            format!("no ML service named {name} is configured"),
        );
        fail(s, &lease, err).await;
        return;
    } else {
        // The service's slot and its breaker's permit are taken here, when the job is admitted:
        // a half-open breaker lets exactly its trials through, however many jobs are leased.
        match route::pick(s, name, now, &[]) {
            Some((svc_name, svc, p)) => Target::Ml(svc_name, svc, p),
            None if s
                .segmenters
                .serving(name)
                .all(|(_, v)| v.fallback_builtin && !route::admits(v, now)) =>
            {
                Target::Builtin {
                    fallback_from: Some(name.clone()),
                }
            }
            None => {
                let (until, reason) = route::hold_of(s, name, now);
                hold(s, &lease, until, reason).await;
                return;
            }
        }
    };
    if let Target::Builtin {
        fallback_from: Some(from),
    } = &target
        && s.busy.load(Ordering::SeqCst) >= s.config.workers.max(1)
    {
        // Its breaker opened after the job was counted on the service's slots: no worker is
        // free for the fallback, so it waits a moment without spending an attempt.
        let reason = JobError::transient(
            ErrorCode::BREAKER_OPEN,
            format!("{from} is unavailable (circuit open) and no worker is free for the fallback"),
        );
        hold(s, &lease, now + 500, reason).await;
        return;
    }
    let work = work(s, lease, target);
    if let Target::Ml(..) = &work.target {
        // Off the CPU workers (its slot taken by `route::pick`): a call on the runtime, or a
        // program on a thread of its own.
        remote::spawn(s, work);
        return;
    }
    s.busy.fetch_add(1, Ordering::SeqCst);
    publish_workers(s);
    // The channel holds as many items as there are workers, and a builtin job is sent only for a
    // free worker: the send never waits.
    if let Err(e) = work_tx.try_send(work) {
        let w = e.into_inner();
        if let Target::Ml(_, svc, permit) = &w.target {
            svc.breaker.lock().expect("breaker lock").abandon(*permit);
        }
        tracing::error!(job.id = %w.lease.job.id, "no worker slot although one was free; the lease will expire");
        s.running
            .lock()
            .expect("running lock")
            .remove(&w.lease.job.id);
        s.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A leased job as it starts: counted as running, with its stop and its deadline.
fn work(s: &Shared, lease: Lease, target: Target) -> Work {
    let timeout = match target {
        Target::Builtin { .. } => s.config.builtin_timeout,
        Target::Ml(..) => s.config.ml_timeout,
    };
    let stop = Arc::new(Stop::default());
    let deadline = Instant::now() + timeout;
    s.running.lock().expect("running lock").insert(
        lease.job.id,
        Running {
            token: lease.token,
            stop: Arc::clone(&stop),
            deadline,
            progress: Arc::new(AtomicU8::new(0)),
        },
    );
    Work {
        lease,
        stop,
        deadline,
        target,
    }
}

/// Renews the leases of running jobs, stops those whose lease was lost or whose time is up.
async fn heartbeat(s: &Arc<Shared>) {
    let now = Instant::now();
    let leases: Vec<(JobId, LeaseToken)> = {
        let running = s.running.lock().expect("running lock");
        for r in running.values().filter(|r| now >= r.deadline) {
            r.stop.request(StopReason::Timeout);
        }
        running.iter().map(|(id, r)| (*id, r.token)).collect()
    };
    if leases.is_empty() {
        return;
    }
    match s.queue.heartbeat(leases, s.config.lease_ttl).await {
        Ok(lost) => {
            let running = s.running.lock().expect("running lock");
            for id in lost {
                if let Some(r) = running.get(&id) {
                    // Cancelled in the queue, or expired and re-leased: this attempt is over.
                    r.stop.request(StopReason::LeaseLost);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
    }
}

/// A segmenter's failure as the job keeps it.
fn job_error(f: &Failure) -> JobError {
    match f {
        Failure::Transient { code, message } | Failure::Unavailable { code, message, .. } => {
            JobError::transient(*code, message.clone())
        }
        Failure::Permanent { code, message } => JobError::permanent(*code, message.clone()),
        Failure::Stopped => JobError::transient(ErrorCode::STOPPED, "stopped"),
    }
}

/// Hands a leased job back until `until` without spending its attempt.
async fn hold(s: &Shared, lease: &Lease, until: crate::clock::Millis, reason: JobError) {
    let id = lease.job.id;
    match s.queue.release(id, lease.token, until, reason).await {
        Ok(_) => tracing::debug!(job.id = %id, until, "job held back"),
        Err(QueueError::Stale { .. }) => {}
        Err(e) => tracing::warn!(job.id = %id, error = %e, "cannot hold the job back"),
    }
}

/// Records a failed attempt; logs and counts what it did.
async fn fail(s: &Shared, lease: &Lease, error: JobError) {
    let (code, message) = (error.code.clone(), error.message.clone());
    let r = s.queue.fail(lease.job.id, lease.token, error).await;
    log_failure(lease.job.id, lease.token, &code, &message, r);
}

/// Logs and counts what recording a failure did.
fn log_failure(
    id: JobId,
    token: LeaseToken,
    code: &str,
    message: &str,
    r: Result<FailOutcome, QueueError>,
) {
    match r {
        Ok(FailOutcome::Retrying { run_at }) => {
            metrics::counter!("spheroseg_jobs_retried_total").increment(1);
            tracing::warn!(job.id = %id, lease = %token, code, run_at, "job failed; retrying");
        }
        Ok(FailOutcome::Failed) => {
            metrics::counter!("spheroseg_jobs_failed_total").increment(1);
            tracing::info!(job.id = %id, code, message, "job failed");
        }
        Err(QueueError::Stale { .. }) => {
            tracing::debug!(job.id = %id, "failure of a stale attempt ignored")
        }
        Err(e) => tracing::error!(job.id = %id, error = %e, "cannot record the job's failure"),
    }
}

mod remote;
mod route;
mod slots;
mod worker;
