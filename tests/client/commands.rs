//! `submit --wait`, `status`, `jobs` and `export` against a running server, as text and as JSON,
//! with and without a token.

use super::{Served, text};
use crate::util::fixture;

fn json(out: &std::process::Output) -> serde_json::Value {
    let (stdout, all) = text(out);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {all}"))
}

/// `submit --wait` follows the jobs to their end and prints their objects and area (exit 0);
/// then the overview, the listing, a job, a refused retry and the exports, as text and JSON.
#[test]
fn submit_wait_then_status_jobs_and_export() {
    let s = Served::start(None, |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let plate = dir.path().join("plate");
    std::fs::create_dir_all(&plate).expect("dir");
    for f in ["spheroid_core_8bit.png", "spheroid_lumen_8bit.png"] {
        std::fs::copy(fixture(f), plate.join(f)).expect("copy");
    }
    let plate_arg = plate.to_string_lossy().into_owned();
    let out = s.cli(&["submit", &plate_arg, "--project", "p1", "--wait"]);
    let (stdout, all) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(stdout.contains("2 of 2 completed"), "{all}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\tcompleted\t"))
        .collect();
    assert_eq!(lines.len(), 2, "{all}");
    for l in &lines {
        assert!(l.contains("1 object(s)") && l.contains("area "), "{l}");
    }

    // The same image again, as JSON: the jobs as the server shows them, completed.
    let core = fixture("spheroid_core_8bit.png")
        .to_string_lossy()
        .into_owned();
    let out = s.cli(&["submit", &core, "--project", "p1", "--wait", "--json"]);
    let jobs = json(&out);
    assert_eq!(jobs[0]["state"], "completed", "{jobs}");
    assert_eq!(jobs[0]["objects"], 1, "{jobs}");

    let out = s.cli(&["status"]);
    let (stdout, all) = text(&out);
    assert!(out.status.success(), "{all}");
    for part in ["completed 3", "workers", "disk", "database", "running"] {
        assert!(stdout.contains(part), "{part}: {all}");
    }
    let status = json(&s.cli(&["status", "--json"]));
    assert_eq!(status["queue"]["counts"]["completed"], 3, "{status}");
    assert!(
        status["system"]["disk_total_bytes"].as_u64() > Some(0),
        "{status}"
    );
    assert!(status["ml"].is_array(), "{status}");

    let out = s.cli(&["jobs", "list", "--project", "p1"]);
    let (stdout, all) = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(stdout.lines().count(), 4, "a header and three jobs: {all}");
    let page = json(&s.cli(&["jobs", "list", "--state", "completed", "--json"]));
    let id = page["jobs"][0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(3), "{page}");

    let out = s.cli(&["jobs", "show", &id]);
    let (stdout, all) = text(&out);
    assert!(
        stdout.contains(&id) && stdout.contains("completed"),
        "{all}"
    );
    assert_eq!(json(&s.cli(&["jobs", "show", &id, "--json"]))["id"], id);
    // A completed job cannot be retried: the server's 409 and exit 1.
    let out = s.cli(&["jobs", "retry", &id]);
    let (_, all) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("409"), "{all}");

    let csv = dir.path().join("p1.csv");
    let out = s.cli(&[
        "export",
        "--project",
        "p1",
        "--format",
        "csv",
        "-o",
        &csv.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let table = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(table.lines().count(), 4, "{table}");
    for (format, magic) in [("xlsx", &b"PK"[..]), ("zip", &b"PK"[..])] {
        let file = dir.path().join(format!("p1.{format}"));
        let out = s.cli(&[
            "export",
            "--project",
            "p1",
            "--format",
            format,
            "-o",
            &file.to_string_lossy(),
            "--json",
        ]);
        let said = json(&out);
        let bytes = std::fs::read(&file).expect("written");
        assert!(bytes.starts_with(magic), "{format}");
        assert_eq!(said["bytes"], bytes.len() as u64, "{said}");
    }
    s.stop();
}

/// A job that fails makes `submit --wait` exit 1 and print why.
#[test]
fn submit_wait_exits_1_when_a_job_fails() {
    let s = Served::start(None, |l| {
        l.command.argv = Some(["sh", "-c", "exit 1", "{input}"].map(String::from).to_vec());
    });
    let core = fixture("spheroid_core_8bit.png")
        .to_string_lossy()
        .into_owned();
    let lumen = fixture("spheroid_lumen_8bit.png")
        .to_string_lossy()
        .into_owned();
    let out = s.cli(&["submit", &core, "--segmenter", "command", "--wait"]);
    let (stdout, all) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stdout.contains("\tfailed\t") && stdout.contains("0 of 1 completed"),
        "{all}"
    );
    // One completed beside it is not enough either.
    let out = s.cli(&["submit", &lumen, "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    s.stop();
}

/// Against a server with a token: refused without it (exit 1, the server's 401), served with
/// SPHEROSEG_TOKEN.
#[test]
fn a_token_protected_server_takes_spheroseg_token() {
    let s = Served::start(Some("s3cret-token"), |_| {});
    let out = s.cli(&["status"]);
    let (_, all) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("401"), "{all}");
    let token = [("SPHEROSEG_TOKEN", "s3cret-token")];
    let out = s.cli_with(&["status", "--json"], &token);
    assert!(out.status.success(), "{}", text(&out).1);
    let core = fixture("spheroid_core_8bit.png")
        .to_string_lossy()
        .into_owned();
    let out = s.cli_with(&["submit", &core, "--wait"], &token);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = s.cli_with(&["jobs", "list", "--json"], &token);
    assert_eq!(json(&out)["jobs"].as_array().map(Vec::len), Some(1));
    s.stop();
}
