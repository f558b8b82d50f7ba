//! Exactly once across SIGKILL: `spheroseg serve` watching a folder is killed at moments spread
//! over taking, segmenting and writing results, with new files arriving between runs; a last
//! run finishes. Every file then has exactly one job (no kill made a second one, none lost
//! one), every job completed, and `results.csv` holds each file's rows once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::watch::png;

/// A child process, killed if the test fails before it ends it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(exe: &std::path::Path, config: &std::path::Path) -> Running {
    let mut c = Command::new(exe);
    for var in ["SPHEROSEG_DATA_DIR", "SPHEROSEG_BIND", "QUEUE_CONCURRENCY"] {
        c.env_remove(var);
    }
    c.arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--bind", "127.0.0.1:0", "--workers", "2"])
        .env("SPHEROSEG_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Running(c.spawn().expect("serve starts"))
}

/// Reads the child's log on a thread, line by line into a channel; returns the address it
/// listens on once it says so.
fn follow(child: &mut Child) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve logs its address");
        if line.contains("listening")
            && let Some(a) = line
                .split("address=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
        {
            return (a.parse().expect("an address"), rx);
        }
    }
    panic!("serve never said where it listens");
}

/// When a cycle kills the child: after a delay, or right as it logs the n-th such line.
enum Kill {
    After(Duration),
    AtLine(&'static str, usize),
}

/// A GET's JSON body.
fn get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let mut c = TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("answer");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn all_jobs(addr: SocketAddr) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = get(addr, &format!("/api/jobs?limit=500{cursor}"));
        out.extend(v["jobs"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => return out,
        }
    }
}

#[test]
fn sigkill_while_taking_files_makes_no_second_job_and_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A copy: the build directory's binary may be rebuilt by another build while this runs.
    let exe = dir.path().join("spheroseg");
    std::fs::copy(env!("CARGO_BIN_EXE_spheroseg"), &exe).expect("copy of the binary");
    let folder = dir.path().join("scope");
    std::fs::create_dir_all(&folder).expect("folder");
    let config = dir.path().join("spheroseg.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[watch]]\npath = {:?}\nsettle_ms = 200\n",
            dir.path().join("data").display().to_string(),
            folder.display().to_string()
        ),
    )
    .expect("config");
    let mut next = 0u64;
    let mut add = |n: u64| {
        for _ in 0..n {
            std::fs::write(folder.join(format!("f{next:03}.png")), png(500 + next, 256))
                .expect("write");
            next += 1;
        }
    };
    add(40);
    // Spread over the moments that matter: before anything is taken, right after a batch's
    // commit, while jobs run, right after results are written.
    let kills = [
        Kill::After(Duration::from_millis(150)),
        Kill::AtLine("file taken", 1),
        Kill::AtLine("job completed", 3),
        Kill::AtLine("results written", 1),
        Kill::AtLine("file taken", 2),
        Kill::After(Duration::from_millis(900)),
        Kill::AtLine("results written", 3),
        Kill::AtLine("job completed", 1),
    ];
    for (cycle, kill) in kills.iter().enumerate() {
        let mut child = serve(&exe, &config);
        let (_addr, lines) = follow(&mut child.0);
        let started = Instant::now();
        let (mut taken, mut written) = (0, 0);
        let mut tally = |line: &str| {
            taken += usize::from(line.contains("file taken"));
            written += usize::from(line.contains("results written"));
        };
        match kill {
            Kill::After(d) => {
                while started.elapsed() < *d {
                    if let Ok(l) = lines.recv_timeout(Duration::from_millis(10)) {
                        tally(&l);
                    }
                }
            }
            Kill::AtLine(what, n) => {
                let mut seen = 0;
                while seen < *n && started.elapsed() < Duration::from_secs(30) {
                    if let Ok(l) = lines.recv_timeout(Duration::from_millis(10)) {
                        seen += usize::from(l.contains(what));
                        tally(&l);
                    }
                }
            }
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reaped");
        for l in lines.try_iter() {
            tally(&l);
        }
        eprintln!(
            "cycle {cycle}: killed after {:?}; {taken} files taken, {written} results written",
            started.elapsed()
        );
        add(6);
    }

    let mut child = serve(&exe, &config);
    let (addr, lines) = follow(&mut child.0);
    let files = next;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = &get(addr, "/api/watch")["folders"][0];
        if s["done"] == files && s["queued"] == 0 && s["waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never finished: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let jobs = all_jobs(addr);
    let mut per_name: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for j in &jobs {
        per_name
            .entry(j["image"]["name"].as_str().expect("name").to_owned())
            .or_default()
            .push(j);
    }
    assert_eq!(per_name.len() as u64, files, "every file has a job");
    for (name, js) in &per_name {
        assert_eq!(js.len(), 1, "{name} has {} jobs", js.len());
        assert_eq!(js[0]["state"], "completed", "{}", js[0]);
    }
    let mut rows: HashMap<String, usize> = HashMap::new();
    let mut csv =
        csv::Reader::from_path(folder.join("spheroseg-results/results.csv")).expect("csv");
    for r in csv.records() {
        let r = r.expect("row");
        *rows.entry(r[0].to_owned()).or_default() += 1;
        assert_eq!(r[1], per_name[&r[0]][0]["id"], "rows of the file's one job");
    }
    for (name, js) in &per_name {
        assert_eq!(
            rows.get(name).copied().unwrap_or(0) as u64,
            js[0]["objects"].as_u64().expect("objects"),
            "{name}: its rows once"
        );
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.0.wait().expect("exits").success());
    assert!(lines.iter().any(|l| l.contains("stopped")));
}
