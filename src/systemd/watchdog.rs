//! The watchdog task: every half of `WATCHDOG_USEC` it asks each part for a sign of life and
//! sends `WATCHDOG=1` only when all of them gave one:
//!
//! - the queue writer and its sync thread: [`Queue::ping`] is answered (it goes through a
//!   transaction and past the sync thread, behind whatever they are doing);
//! - the dispatcher: its loop went round lately ([`Beat`]; it goes round at least every second);
//! - the HTTP server: `GET /api/health/live` on its own listener answers `200`.
//!
//! Each check must answer within a quarter of the watchdog timeout, so that a round that
//! passes still pings in time. A round that fails sends nothing; systemd restarts the service
//! once a whole timeout passed without a ping (`WatchdogSec=` and `Restart=on-failure` in the
//! unit). A part that is merely slow costs a missed round, not a restart.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::Parts;
use crate::liveness::Beat;
use crate::queue::Queue;

/// A dispatcher that has not gone round its loop for this long is stuck (it wakes at least every
/// second; a slow writer delays it by as much as the writer is slow).
const DISPATCHER_QUIET: Duration = Duration::from_secs(10);

/// What the watchdog checks.
pub(super) struct Watched {
    pub(super) queue: Queue,
    pub(super) dispatcher: Arc<Beat>,
    pub(super) http: SocketAddr,
}

/// How long each part may take to show it lives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) answer_within: Duration,
    pub(super) dispatcher_quiet: Duration,
}

/// The part that gave no sign of life.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stuck {
    Writer,
    Dispatcher(Duration),
    Http(String),
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stuck::Writer => write!(f, "the queue writer did not answer"),
            Stuck::Dispatcher(age) => {
                write!(f, "the dispatcher has not run for {} ms", age.as_millis())
            }
            Stuck::Http(why) => write!(f, "the HTTP server did not answer: {why}"),
        }
    }
}

/// Pings systemd every `every` while every part answers, until `stop` turns true.
pub(super) async fn run(parts: Parts, every: Duration, stop: watch::Receiver<bool>) {
    let watched = Watched {
        queue: parts.queue,
        dispatcher: parts.pool.dispatcher_beat(),
        http: parts.http,
    };
    let limits = Limits {
        answer_within: every / 2,
        dispatcher_quiet: DISPATCHER_QUIET.max(every),
    };
    let pet = || {
        if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
            tracing::warn!(error = %e, "cannot ping the systemd watchdog");
        }
    };
    pet_while(every, || check(&watched, limits), pet, stop).await;
}

/// Every `every`: runs `check` and calls `pet` if it passed. Logs when a part stops answering
/// and when all answer again, not every round.
pub(super) async fn pet_while<C, F>(
    every: Duration,
    mut check: C,
    mut pet: impl FnMut(),
    mut stop: watch::Receiver<bool>,
) where
    C: FnMut() -> F,
    F: Future<Output = Result<(), Stuck>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck = false;
    loop {
        let verdict = tokio::select! {
            _ = stop.changed() => return,
            v = async { tick.tick().await; check().await } => v,
        };
        match verdict {
            Ok(()) => {
                if std::mem::take(&mut stuck) {
                    tracing::info!("every part answers again; the systemd watchdog is pinged");
                }
                pet();
            }
            Err(part) => {
                if !std::mem::replace(&mut stuck, true) {
                    tracing::error!(%part, "systemd watchdog not pinged; systemd restarts spheroseg if this lasts");
                }
            }
        }
    }
}

/// Asks every part for a sign of life, all at once.
pub(super) async fn check(w: &Watched, limits: Limits) -> Result<(), Stuck> {
    let within = limits.answer_within;
    let (writer, http) = tokio::join!(
        tokio::time::timeout(within, w.queue.ping()),
        tokio::time::timeout(within, probe_http(w.http)),
    );
    if writer.is_err() {
        return Err(Stuck::Writer);
    }
    let age = w.dispatcher.age();
    if age > limits.dispatcher_quiet {
        return Err(Stuck::Dispatcher(age));
    }
    match http {
        Err(_) => Err(Stuck::Http(format!(
            "no answer within {} ms",
            within.as_millis()
        ))),
        Ok(r) => r.map_err(Stuck::Http),
    }
}

/// `GET /api/health/live` on the server's own listener (a loopback address when it listens on
/// all of them); `Ok` if it answers `200`. That route needs no token and takes any `Host`.
async fn probe_http(addr: SocketAddr) -> Result<(), String> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    conn.write_all(
        b"GET /api/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut status = [0u8; 12];
    conn.read_exact(&mut status)
        .await
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    if status.starts_with(b"HTTP/1.") && &status[9..] == b"200" {
        Ok(())
    } else {
        Err(format!("answered {}", String::from_utf8_lossy(&status)))
    }
}
