//! The dispatcher (a tokio task) and the worker pool (N OS threads).
//!
//! The dispatcher leases a job only when a worker slot is free, hands it over a bounded channel,
//! renews the leases of running jobs (a worker may be busy for minutes), stops jobs past their
//! timeout, and sweeps delayed jobs and expired leases. It wakes on `wake()` (after an enqueue),
//! when a worker finishes, when the next delayed job falls due, and on its heartbeat; it never
//! busy-polls.
//!
//! A job for an ML service whose circuit breaker is open is not run and spends no attempt: it is
//! handed back until the breaker's next probe, or run on the builtin segmenter when the service
//! says `fallback_builtin`.
//!
//! Workers run each job inside `catch_unwind`, so a panic fails that job and the thread lives on.
//! A result is stored and the job completed in one durable commit before `job_completed` is sent.
//!
//! Shutdown: the dispatcher stops leasing; running jobs get the grace period; the rest are stopped
//! and keep their lease (the next start requeues them without spending an attempt); the threads
//! are joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::error_code::ErrorCode;
use crate::events::{EventBus, EventKind, job as jid};
use crate::images::ImageStore;
use crate::queue::{FailOutcome, JobError, JobId, Lease, LeaseToken, Queue, QueueError};
use crate::segment::SegmenterId;
use crate::segment::breaker::Transition;
use crate::segment::{DecodeBudget, DecodeLimits, MlService, Segmenters, Stop, StopReason};

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
    Builtin {
        fallback_from: Option<SegmenterId>,
    },
    Ml(SegmenterId, Arc<MlService>),
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
}

struct Shared {
    queue: Queue,
    images: ImageStore,
    events: EventBus,
    segmenters: Segmenters,
    config: PoolConfig,
    clock: Arc<dyn Clock>,
    running: Mutex<HashMap<JobId, Running>>,
    busy: AtomicUsize,
    wake: Notify,
    idle: Notify,
    handle: Handle,
}

/// The running pool; `shutdown` stops it in order.
pub struct Pool {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// A cheap handle for telling the dispatcher that jobs were enqueued, and for reading its state.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
}

impl PoolHandle {
    /// Wakes the dispatcher (call after an enqueue).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

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

    /// The ML services and their breakers.
    pub fn ml(&self) -> &HashMap<SegmenterId, Arc<MlService>> {
        &self.shared.segmenters.ml
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
        let shared = Arc::new(Shared {
            queue,
            images,
            events,
            segmenters,
            clock,
            running: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            wake: Notify::new(),
            idle: Notify::new(),
            handle: Handle::current(),
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
                    .spawn(move || {
                        for work in rx {
                            let id = work.lease.job.id;
                            worker::run(&s, work);
                            s.running.lock().expect("running lock").remove(&id);
                            s.busy.fetch_sub(1, Ordering::SeqCst);
                            publish_workers(&s);
                            s.wake.notify_one();
                            s.idle.notify_waiters();
                        }
                    })?,
            );
        }
        let (stop_tx, stop_rx) = watch::channel(false);
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

    /// Stops leasing, gives running jobs `grace` to finish, stops the rest (they are requeued at
    /// the next start), and joins every thread.
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
    let beat_every = (s.config.lease_ttl / 3).max(Duration::from_millis(100));
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_stats = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let free = s
            .config
            .workers
            .saturating_sub(s.running.lock().expect("running lock").len());
        if free > 0 {
            match s.queue.lease(free, s.config.lease_ttl).await {
                Ok(leases) => {
                    for lease in leases {
                        admit(&s, &work_tx, lease).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease failed"),
            }
        }
        let now = s.clock.now();
        let sleep = match s.queue.next_due() {
            Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now)),
            _ => Duration::from_secs(1),
        }
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => break,
            _ = s.wake.notified() => {}
            _ = beat.tick() => heartbeat(&s).await,
            _ = stats_tick.tick() => publish_stats(&s, &mut last_stats),
            _ = tokio::time::sleep(sleep) => {
                if let Err(e) = s.queue.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
                }
            }
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
    let target = match name.is_builtin() {
        true => Target::Builtin {
            fallback_from: None,
        },
        false => match s.segmenters.ml.get(name) {
            None => {
                let err = JobError::permanent(
                    ErrorCode::UNKNOWN_SEGMENTER,
                    format!("no ML service named {name} is configured"),
                );
                finish_failed(s, &lease, err).await;
                return;
            }
            Some(svc) => {
                let (allowed, next) = {
                    let mut b = svc.breaker.lock().expect("breaker lock");
                    publish_transition(s, name.as_str(), b.tick(now));
                    (b.would_allow(now), b.next_probe())
                };
                if allowed {
                    Target::Ml(name.clone(), Arc::clone(svc))
                } else if svc.fallback_builtin {
                    Target::Builtin {
                        fallback_from: Some(name.clone()),
                    }
                } else {
                    let until = next.unwrap_or(now + 1000);
                    let reason = JobError::transient(
                        ErrorCode::BREAKER_OPEN,
                        format!(
                            "{name} is unavailable (circuit open); the job waits without spending an attempt"
                        ),
                    );
                    match s
                        .queue
                        .release(job.id, lease.token, until, reason.clone())
                        .await
                    {
                        Ok(_) => {
                            s.events.publish(EventKind::JobRetrying {
                                job_id: jid(job.id),
                                attempt: lease.job.attempts.saturating_sub(1),
                                run_at: until,
                                code: reason.code,
                                message: reason.message,
                            });
                        }
                        Err(e) => {
                            tracing::warn!(job.id = %job.id, error = %e, "cannot hold the job back")
                        }
                    }
                    return;
                }
            }
        },
    };
    let timeout = match target {
        Target::Builtin { .. } => s.config.builtin_timeout,
        Target::Ml(..) => s.config.ml_timeout,
    };
    let stop = Arc::new(Stop::default());
    let deadline = Instant::now() + timeout;
    s.running.lock().expect("running lock").insert(
        job.id,
        Running {
            token: lease.token,
            stop: Arc::clone(&stop),
            deadline,
        },
    );
    s.busy.fetch_add(1, Ordering::SeqCst);
    publish_workers(s);
    // The channel holds as many items as there are workers, and a job is sent only for a free
    // slot: the send never waits.
    let work = Work {
        lease,
        stop,
        deadline,
        target,
    };
    if let Err(e) = work_tx.try_send(work) {
        let w = e.into_inner();
        tracing::error!(job.id = %w.lease.job.id, "no worker slot although one was free; the lease will expire");
        s.running
            .lock()
            .expect("running lock")
            .remove(&w.lease.job.id);
        s.busy.fetch_sub(1, Ordering::SeqCst);
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

async fn finish_failed(s: &Shared, lease: &Lease, error: JobError) {
    let id = lease.job.id;
    match s.queue.fail(id, lease.token, error.clone()).await {
        Ok(FailOutcome::Retrying { run_at }) => {
            metrics::counter!("spheroseg_jobs_retried_total").increment(1);
            tracing::warn!(job.id = %id, lease = %lease.token, code = %error.code, "job failed; retrying");
            s.events.publish(EventKind::JobRetrying {
                job_id: jid(id),
                attempt: lease.job.attempts,
                run_at,
                code: error.code,
                message: error.message,
            });
        }
        Ok(FailOutcome::Failed) => {
            metrics::counter!("spheroseg_jobs_failed_total").increment(1);
            tracing::info!(job.id = %id, code = %error.code, message = %error.message, "job failed");
            s.events.publish(EventKind::JobFailed {
                job_id: jid(id),
                code: error.code,
                message: error.message,
            });
        }
        Err(QueueError::Stale { .. }) => {
            tracing::debug!(job.id = %id, "failure of a stale attempt ignored")
        }
        Err(e) => tracing::error!(job.id = %id, error = %e, "cannot record the job's failure"),
    }
}

mod worker;
