//! `serve` speaking systemd's notify protocol to a socket of ours, as it does under a
//! `Type=notify` unit with `WatchdogSec=`: READY=1 once the listener accepts, a STATUS= line,
//! WATCHDOG=1 pings at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM. (That a stuck queue writer
//! stops the pings is shown in the unit tests of `src/systemd/`, on a disk whose syncs hang.)

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::child::{http, serve};

/// Every datagram until one holds `want` (that one included), within `within`.
fn until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == want);
        got.push(msg);
        if done {
            return got;
        }
    }
    panic!("no {want} within {within:?}; got {got:#?}");
}

#[test]
fn serve_tells_systemd_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let mut served = serve(
        &dir.path().join("data"),
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("utf-8 path")),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let first = until(&sock, "READY=1", Duration::from_secs(60));
    assert!(
        !first.iter().any(|m| m.contains("WATCHDOG=1")),
        "no ping before READY: {first:?}"
    );
    let ready = first.last().expect("READY's datagram");
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=queued 0, active 0")),
        "READY comes with the first status line: {ready}"
    );
    // Ready means accepting: the listener answers at once.
    let addr = served.address();
    assert_eq!(http(addr, "GET", "/api/health/live").0, 200);

    // Pings at half of the 400 ms timeout, while every part answers.
    let mut pings = 0;
    while pings < 4 {
        let got = until(&sock, "WATCHDOG=1", Duration::from_secs(30));
        pings += got
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count();
    }
    let (status, log) = served.stop();
    let last = until(&sock, "STOPPING=1", Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {log:#?}");
    assert!(log.iter().any(|l| l.contains("watchdog on")), "{log:#?}");
    assert!(
        last.last()
            .expect("STOPPING")
            .contains("STATUS=shutting down")
    );
}
