//! The binary as a user runs it: help and version, the configuration commands, a bad value, and
//! `serve` starting on a fresh data directory and stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spheroseg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spheroseg"));
    // Keep the caller's environment from leaking into the configuration under test.
    for var in [
        "SPHEROSEG_DATA_DIR",
        "SPHEROSEG_BIND",
        "SPHEROSEG_WORKERS",
        "QUEUE_CONCURRENCY",
        "ML_SERVICE_URL",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn help_and_version() {
    let out = spheroseg().arg("--version").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("spheroseg {}", env!("CARGO_PKG_VERSION"))
    );
    let out = spheroseg().arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("config"), "{help}");
    let out = spheroseg()
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--data-dir", "--bind", "--workers"] {
        assert!(help.contains(flag), "serve --help lacks {flag}: {help}");
    }
}

#[test]
fn config_default_round_trips_through_config_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spheroseg()
        .args(["config", "default"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let file = dir.path().join("spheroseg.toml");
    std::fs::write(&file, &out.stdout).expect("write");
    let shown = spheroseg()
        .args(["config", "show", "--config"])
        .arg(&file)
        .args(["--workers", "3"])
        .env("ML_SERVICE_TIMEOUT", "1234")
        .output()
        .expect("runs");
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("workers = 3"), "{text}");
    assert!(text.contains("timeout_ms = 1234"), "{text}");
    assert!(text.contains("bind = \"127.0.0.1:5001\""), "{text}");
}

#[test]
fn a_bad_value_is_one_line_and_exit_code_2() {
    let out = spheroseg()
        .args(["config", "show"])
        .env("QUEUE_CONCURRENCY", "many")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("workers") && err.contains("QUEUE_CONCURRENCY"),
        "{err}"
    );

    let out = spheroseg()
        .args(["serve", "--bind", "0.0.0.0:5001"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.token"));
}

/// Starts `serve`, waits for its start line, sends SIGTERM, and expects a clean exit; a second
/// start on the same data directory finds the database and refuses a concurrent instance.
#[test]
fn serve_starts_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = spheroseg()
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .env("SPHEROSEG_LOG", "info")
        .env("REDIS_URL", "redis://old-deployment:6379")
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("spheroseg started") {
            break;
        }
    }
    assert!(log.contains("spheroseg started"), "{log}");
    assert!(
        log.contains("REDIS_URL"),
        "the ignored variable is named: {log}"
    );
    assert!(data.join("spheroseg.redb").exists());

    let second = spheroseg()
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("runs");
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another spheroseg"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("exits");
    assert!(
        exit.success(),
        "exit {exit:?}; log: {log}{}",
        rest.join("\n")
    );
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}
