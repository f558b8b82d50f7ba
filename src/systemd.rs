//! systemd's notify protocol (`sd_notify(3)`) for the `Type=notify` unit in `packaging/`:
//! `READY=1` once spheroseg serves (the queue is open, the pool runs, the listener accepts),
//! `STOPPING=1` when shutdown begins, a `STATUS=` line that `systemctl status` shows (jobs queued
//! and active, workers, breakers), sent when it changes, and, when the unit sets `WatchdogSec=`,
//! `WATCHDOG=1` at half that interval, sent only while the queue writer and its sync thread, the
//! dispatcher and the HTTP server all answer (`systemd/watchdog.rs`): one that is stuck stops the
//! pings and systemd restarts the service. Without `NOTIFY_SOCKET` (not under systemd, or in
//! tests) nothing is sent and no task runs.
//!
//! `NotifyAccess=main` in the unit: only this process may speak for the service, not the
//! programs a `command` segmenter runs (they inherit `NOTIFY_SOCKET`).

mod watchdog;

use std::net::SocketAddr;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pool::PoolHandle;
use crate::queue::{Queue, StateCounts};
use crate::segment::breaker::State;

/// How often the status line is made again (it is sent only when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The parts whose life the watchdog checks, and what the status line reads.
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) queue: Queue,
    pub(crate) pool: PoolHandle,
    /// Where the HTTP server listens.
    pub(crate) http: SocketAddr,
}

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd that spheroseg serves, with the first status line, and starts the status and
/// watchdog tasks; they end when `stop` turns true. Returns them for the caller to join.
pub(crate) fn ready(parts: &Parts, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    if !enabled() {
        return Vec::new();
    }
    let line = status_line(parts);
    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
    let mut tasks = vec![tokio::spawn(report_status(
        parts.clone(),
        line,
        stop.clone(),
    ))];
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let every = timeout / 2;
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "systemd watchdog on: pinged while the queue writer, the dispatcher and the HTTP server answer"
        );
        tasks.push(tokio::spawn(watchdog::run(
            parts.clone(),
            every,
            stop.clone(),
        )));
    }
    tasks
}

/// Tells systemd that shutdown began.
pub(crate) fn stopping() {
    if enabled() {
        send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }
}

/// Sends the status line whenever it changed, checking every [`STATUS_EVERY`].
async fn report_status(parts: Parts, mut last: String, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let line = status_line(&parts);
                if line != last {
                    send(&[NotifyState::Status(&line)]);
                    last = line;
                }
            }
        }
    }
}

/// What `systemctl status` shows under "Status:", from the queue's counters (O(1)).
fn status_line(parts: &Parts) -> String {
    let stats = match parts.queue.stats() {
        Ok(s) => s,
        Err(e) => return format!("queue stopped: {e}"),
    };
    let breakers: Vec<(String, State)> = parts
        .pool
        .breakers()
        .into_iter()
        .map(|(name, b)| (name, b.state))
        .collect();
    describe(&Status {
        counts: stats.counts,
        paused: stats.paused,
        workers: parts.pool.workers(),
        breakers,
        disk_full: parts.queue.disk_full().is_some(),
    })
}

/// What the status line says.
struct Status {
    counts: StateCounts,
    paused: bool,
    /// Busy and in total.
    workers: (usize, usize),
    breakers: Vec<(String, State)>,
    disk_full: bool,
}

/// `queued 12, active 2 (2 of 4 workers busy), delayed 1, failed 3; breaker http open`.
fn describe(s: &Status) -> String {
    let c = &s.counts;
    let mut line = format!(
        "queued {}, active {} ({} of {} workers busy), delayed {}, completed {}, failed {}",
        c.queued, c.active, s.workers.0, s.workers.1, c.delayed, c.completed, c.failed
    );
    if s.paused {
        line.push_str("; paused");
    }
    if s.disk_full {
        line.push_str("; disk full: new images refused");
    }
    for (name, state) in &s.breakers {
        line.push_str(&format!("; breaker {name} {}", state.as_str()));
    }
    line
}

#[cfg(test)]
mod tests;
