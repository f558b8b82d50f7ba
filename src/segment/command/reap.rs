//! Ending a local program and everything it started.
//!
//! A program runs in its own process group, so one signal reaches its children; but a child can
//! leave the group (`setsid`) and keep the program's stderr, or the GPU, held. Every process of a
//! run therefore carries a mark in its environment ([`MARKER_VAR`](super::MARKER_VAR)), which
//! descendants inherit, and spheroseg is a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`), so
//! orphans of a program become its children rather than init's and can be reaped once killed.

use std::collections::HashSet;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

use super::{LEFTOVER_DEADLINE, TERM_GRACE};

/// Makes this process the subreaper of its descendants, once.
pub(super) fn ensure_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_os = "linux")]
        if let Err(e) = rustix::process::set_child_subreaper(Some(Pid::INIT)) {
            tracing::warn!(error = %e, "cannot become a child subreaper; processes a program leaves behind are found by their mark only");
        }
    });
}

/// The environment mark of one run.
pub(super) struct Marker {
    pub(super) value: String,
}

impl Marker {
    pub(super) fn next() -> Marker {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        Marker {
            value: format!("{}-{n}", std::process::id()),
        }
    }

    fn needle(&self) -> Vec<u8> {
        format!("{}={}\0", super::MARKER_VAR, self.value).into_bytes()
    }

    /// Live processes carrying the mark, other than `except`.
    fn marked(&self, except: Pid) -> Vec<Pid> {
        let needle = self.needle();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(Pid::from_raw)
            .filter(|p| *p != except)
            .filter(|p| {
                // A zombie's environment reads as empty: only the living are found.
                std::fs::read(format!("/proc/{}/environ", p.as_raw_nonzero()))
                    .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle))
            })
            .collect()
    }

    /// Kills the rest of the program's process group and every marked process, and reaps those
    /// that became this process's children, for at most [`LEFTOVER_DEADLINE`].
    pub(super) fn end_leftovers(&self, group: Pid) {
        let deadline = Instant::now() + LEFTOVER_DEADLINE;
        let mut killed = HashSet::new();
        // Marked processes first, while they are alive and readable; the group kill would turn
        // them into zombies that no scan finds.
        for p in self.marked(group) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
            killed.insert(p);
        }
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
        loop {
            for p in self.marked(group) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
                killed.insert(p);
            }
            killed.retain(
                |p| match rustix::process::waitpid(Some(*p), WaitOptions::NOHANG) {
                    Ok(Some(_)) => false,
                    Ok(None) => true,
                    // Not (yet) a child of ours: still there while its parent has not reaped it.
                    Err(_) => {
                        std::path::Path::new(&format!("/proc/{}", p.as_raw_nonzero())).exists()
                    }
                },
            );
            if killed.is_empty() || Instant::now() >= deadline {
                if !killed.is_empty() {
                    tracing::warn!(
                        left = killed.len(),
                        "processes a program left behind outlived its end"
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Stops a program that ran out of time or was cancelled: SIGTERM to its group, a grace, then
/// SIGKILL; returns once the program itself is reaped.
pub(super) fn stop_group(child: &mut Child, group: Pid) {
    let _ = rustix::process::kill_process_group(group, Signal::TERM);
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}
