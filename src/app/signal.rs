//! SIGTERM and Ctrl-C as the shutdown future `serve` waits on.

use std::future::Future;

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once (the database is safe:
/// every acknowledged write is already durable). The signal handlers are installed when this is
/// called, not when the future is first polled, so a signal during start-up is not lost (nor
/// fatal). Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let mut first = Signals::install();
    async move {
        first.recv().await;
        let mut second = Signals::install();
        tokio::spawn(async move {
            second.recv().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    }
}

/// SIGTERM and SIGINT, listened to from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(signal = name, error = %e, "cannot listen for a signal");
                    None
                }
            };
            Signals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
