//! The real `spheroseg serve` as a child process, as systemd runs it: its stderr read on a
//! thread (every line kept, in order), its address taken from the `listening` line, and a raw
//! HTTP/1.1 client that needs nothing but the standard library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `serve`.
pub struct Served {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

/// `spheroseg serve` on `data` and a free loopback port, with the caller's environment kept out
/// of the configuration; `env` adds variables (and `SPHEROSEG_LOG` is unset unless it names it).
pub fn serve(data: &std::path::Path, env: &[(&str, &str)]) -> Served {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spheroseg"));
    for var in [
        "SPHEROSEG_DATA_DIR",
        "SPHEROSEG_BIND",
        "SPHEROSEG_WORKERS",
        "SPHEROSEG_LOG",
        "SPHEROSEG_LOG_FORMAT",
        "RUST_LOG",
        "QUEUE_CONCURRENCY",
        "ML_SERVICE_URL",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
    ] {
        c.env_remove(var);
    }
    c.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--bind", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("serve starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Served {
        child,
        lines,
        log: Vec::new(),
    }
}

impl Served {
    /// The first line, already read or read from stderr before `within` passes, that satisfies
    /// `pred`. Lines read earlier count: a job may complete before `listening` is logged.
    pub fn wait_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(line) = self.log.iter().find(|l| pred(l)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                return None;
            };
            self.log.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
        None
    }

    /// The address from the `listening` line (text `address=…` or JSON `"address":"…"`).
    pub fn address(&mut self) -> SocketAddr {
        let line = self
            .wait_line(Duration::from_secs(60), |l| l.contains("listening"))
            .unwrap_or_else(|| panic!("serve logs its address: {:#?}", self.log));
        let after = line
            .split("address=")
            .nth(1)
            .or_else(|| line.split("\"address\":\"").nth(1))
            .expect("an address field");
        after
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("an address in {line}"))
    }

    /// SIGTERM, as systemd stops a service; then every remaining line, and the exit status.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = self.child.wait().expect("exits");
        self.log.extend(self.lines.iter());
        (status, self.log)
    }
}

/// One HTTP/1.1 request on a fresh connection; the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).expect("connects");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("sends");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("reads");
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {reply}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
