//! The binary as a user runs it: help and version, the configuration commands, a bad value, and
//! `serve` starting on a fresh data directory and stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn spheroseg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spheroseg"));
    // Keep the caller's environment from leaking into the configuration under test.
    for var in [
        "SPHEROSEG_DATA_DIR",
        "SPHEROSEG_BIND",
        "SPHEROSEG_WORKERS",
        "SPHEROSEG_TOKEN",
        "QUEUE_CONCURRENCY",
        "ML_SERVICE_URL",
    ] {
        c.env_remove(var);
    }
    c
}

/// `serve` on `data`, on a free loopback port, logging at info to a piped stderr.
fn serve(data: &std::path::Path) -> Command {
    let mut c = spheroseg();
    c.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--bind", "127.0.0.1:0"])
        .env("SPHEROSEG_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Sends SIGTERM to a child, as systemd does to stop a service.
fn sigterm(child: &std::process::Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
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

/// Each subcommand's help shows its own flags and not the others', and an example.
#[test]
fn every_subcommand_has_its_own_flags_and_an_example() {
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["segment"],
            &["--workers", "--out", "--params"],
            &["--bind", "--data-dir", "--server"],
        ),
        (
            &["submit"],
            &["--server", "--wait", "--json"],
            &["--bind", "--data-dir", "--workers"],
        ),
        (
            &["status"],
            &["--server", "--json"],
            &["--bind", "--data-dir", "--workers"],
        ),
        (
            &["jobs", "list"],
            &["--state", "--project", "--json"],
            &["--bind", "--workers"],
        ),
        (&["jobs", "show"], &["--server"], &["--bind"]),
        (&["jobs", "cancel"], &["--server"], &["--bind"]),
        (&["jobs", "retry"], &["--server"], &["--bind"]),
        (
            &["export"],
            &["--format", "--output", "--project"],
            &["--bind", "--workers"],
        ),
        (
            &["db", "backup"],
            &["--data-dir", "--images", "--server"],
            &["--bind", "--workers"],
        ),
        (
            &["db", "check"],
            &["--data-dir", "--json"],
            &["--bind", "--workers", "--server"],
        ),
        (
            &["healthcheck"],
            &["--server", "--ready"],
            &["--bind", "--data-dir", "--workers"],
        ),
        (
            &["demo-images"],
            &["--size"],
            &["--bind", "--data-dir", "--workers"],
        ),
        (
            &["config", "default"],
            &[],
            &["--bind", "--data-dir", "--workers"],
        ),
        (
            &["config", "show"],
            &["--data-dir", "--bind", "--workers"],
            &[],
        ),
        (
            &["serve"],
            &["--data-dir", "--bind", "--workers", "--watch"],
            &["--server"],
        ),
    ];
    for (cmd, has, lacks) in cases {
        let out = spheroseg().args(*cmd).arg("--help").output().expect("runs");
        assert!(out.status.success(), "{cmd:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "{cmd:?} has no example: {help}");
        assert!(help.contains("--config"), "{cmd:?}: {help}");
        for flag in *has {
            assert!(help.contains(flag), "{cmd:?} --help lacks {flag}: {help}");
        }
        for flag in *lacks {
            assert!(
                !help.contains(&format!("{flag} ")),
                "{cmd:?} --help shows {flag}: {help}"
            );
        }
    }
    // `segment --help` names what it writes and every parameter with its default.
    let out = spheroseg()
        .args(["segment", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "NAME.spheroseg.json",
        "objects.csv",
        "NAME_mask.png",
        "coco.json",
    ] {
        assert!(help.contains(text), "segment --help lacks {text}: {help}");
    }
    for field in spheroseg::view::param_fields() {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", field.name)))
            .unwrap_or_else(|| panic!("segment --help lacks {}: {help}", field.name));
        assert!(line.contains(field.help), "{line}");
    }
    assert!(help.contains("min_area_fraction        0.002"), "{help}");
}

/// `segment DIR` walks the folder (in name order, images only) instead of failing.
#[test]
fn segment_walks_a_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("plate");
    std::fs::create_dir_all(input.join("row-b")).expect("dirs");
    std::fs::copy(
        crate::util::fixture("spheroid_core_8bit.png"),
        input.join("a.png"),
    )
    .expect("copy");
    std::fs::copy(
        crate::util::fixture("spheroid_lumen_8bit.png"),
        input.join("row-b/b.png"),
    )
    .expect("copy");
    std::fs::write(input.join("notes.txt"), "not an image").expect("write");
    let out = dir.path().join("out");
    let done = spheroseg()
        .arg("segment")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--format", "json,csv"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{stdout}"
    );
    assert!(out.join("a.spheroseg.json").exists() && out.join("b.spheroseg.json").exists());
    let images = std::fs::read_to_string(out.join("images.csv")).expect("images.csv");
    assert_eq!(images.lines().count(), 3, "{images}");
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

/// Runs `c`, expects exit code 2 and one line on stderr, and returns that line.
fn one_line_exit_2(c: &mut Command) -> String {
    let out = c.output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn a_bad_value_is_one_line_and_exit_code_2() {
    let err = one_line_exit_2(
        spheroseg()
            .args(["config", "show"])
            .env("QUEUE_CONCURRENCY", "many"),
    );
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

    // A watched folder that is not there, as `serve --watch` names it.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("export");
    let err = one_line_exit_2(
        spheroseg()
            .arg("serve")
            .arg("--watch")
            .arg(&missing)
            .arg("--data-dir")
            .arg(dir.path().join("data")),
    );
    assert!(
        err.contains("watch[0].path") && err.contains("--watch") && err.contains("export"),
        "{err}"
    );
}

/// Starts `serve`, waits for its start line, sends SIGTERM, and expects a clean exit; a second
/// start on the same data directory finds the database and refuses a concurrent instance.
#[test]
fn serve_starts_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = serve(&data)
        .env("REDIS_URL", "redis://old-deployment:6379")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    // The page's address as a link, on stdout beside the log.
    let mut link = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut link)
        .expect("a line");
    assert!(
        link.starts_with("spheroseg: the status page is at http://127.0.0.1:")
            && link.trim_end().ends_with('/'),
        "{link}"
    );
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    assert!(log.contains("spheroseg started"), "{log}");
    assert!(
        log.contains("REDIS_URL"),
        "the ignored variable is named: {log}"
    );
    assert!(data.join("spheroseg.redb").exists());

    let second = serve(&data).output().expect("runs");
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another spheroseg"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    assert!(sigterm(&child).success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("exits");
    assert!(
        exit.success(),
        "exit {exit:?}; log: {log}{}",
        rest.join("\n")
    );
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// `serve` processes what is queued: jobs enqueued into its data directory beforehand (as a
/// previous run would have left them) are segmented, and the results are in the database after a
/// clean SIGTERM.
#[test]
fn serve_processes_queued_jobs_end_to_end() {
    use std::sync::Arc;

    use spheroseg::clock::SystemClock;
    use spheroseg::images::ImageStore;
    use spheroseg::queue::{JobState, NewJob, Queue, QueueOptions};
    use spheroseg::segment::{DecodeLimits, SegmentResult};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rt = crate::util::runtime();
    std::fs::create_dir_all(&data).expect("data dir");
    let ids = {
        let (queue, _) = Queue::open(
            &data.join("spheroseg.redb"),
            QueueOptions::default(),
            Arc::new(SystemClock),
        )
        .expect("queue");
        let images = ImageStore::open(&data, DecodeLimits::default()).expect("images");
        let jobs: Vec<NewJob> = ["spheroid_lumen_8bit.png", "spheroid_plain_16bit.tif"]
            .iter()
            .map(|f| NewJob {
                image: images
                    .put_path(&crate::util::fixture(f))
                    .expect("stored")
                    .image,
                ..NewJob::default()
            })
            .collect();
        let ids: Vec<_> = rt
            .block_on(queue.enqueue_batch(jobs))
            .expect("enqueued")
            .into_iter()
            .map(|e| e.job.id)
            .collect();
        queue.close();
        ids
    };

    let mut child = serve(&data)
        .args(["--workers", "2"])
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    let mut done = 0;
    while done < ids.len() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        done += usize::from(line.contains("job completed"));
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(done, ids.len(), "{log}");
    sigterm(&child);
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("exits").success());

    let (queue, recovery) = Queue::open(
        &data.join("spheroseg.redb"),
        QueueOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("reopen");
    assert!(recovery.orphans.is_empty());
    for id in ids {
        assert_eq!(
            queue.get(id).expect("get").expect("exists").state,
            JobState::Completed
        );
        let r = SegmentResult::from_bytes(&queue.result(id).expect("read").expect("stored"))
            .expect("decodes");
        assert_eq!(r.objects.len(), 1);
    }
}

/// `healthcheck` exits 0 against a running serve (health and readiness) and 1 once it is gone;
/// `submit` sends files to it.
#[test]
fn healthcheck_exits_0_when_up_and_1_when_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = serve(&dir.path().join("data"))
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut address = None;
    while address.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("listening") {
            address = line
                .split("address=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_owned);
        }
    }
    let url = format!("http://{}", address.expect("serve logs its address"));
    for extra in [&[][..], &["--ready"][..]] {
        let out = spheroseg()
            .args(["healthcheck", "--url", &url])
            .args(extra)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("200"));
    }
    // `submit` sends a file and prints its job; a file that is not an image fails it.
    let out = spheroseg()
        .args(["submit", "--server", &url, "--project", "cli"])
        .arg(crate::util::fixture("spheroid_core_8bit.png"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("spheroid_core_8bit.png\t") && printed.contains("queued"),
        "{printed}"
    );
    let out = spheroseg()
        .args(["submit", "--url", &url])
        .arg(crate::util::fixture("not_an_image.txt"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("415"));
    sigterm(&child);
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("exits").success());
    let out = spheroseg()
        .args(["healthcheck", "--url", &url])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
}

/// A damaged database stops `serve` with one line that names the file and what to do, exit code
/// 2: never a panic and its backtrace. Both kinds of damage: not a database at all, and a real
/// database whose pages were overwritten (on which the storage engine itself panics).
#[test]
fn a_damaged_database_is_one_clear_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage");
    std::fs::create_dir_all(&garbage).expect("dir");
    std::fs::write(garbage.join("spheroseg.redb"), vec![0x5a; 100_000]).expect("write");

    let damaged = dir.path().join("damaged");
    let mut child = serve(&damaged).spawn().expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("listening") {
            break;
        }
    }
    assert!(sigterm(&child).success());
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("exits").success());
    let file = damaged.join("spheroseg.redb");
    let mut bytes = std::fs::read(&file).expect("read");
    for i in (4096..bytes.len()).step_by(7) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&file, bytes).expect("write");

    for data in [garbage, damaged] {
        let out = serve(&data)
            .env("SPHEROSEG_LOG", "warn")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        let line = lines[0];
        assert!(line.starts_with("spheroseg: database is damaged"), "{line}");
        assert!(
            line.contains(&*data.join("spheroseg.redb").to_string_lossy()),
            "{line}"
        );
        assert!(
            line.contains("restore") && line.contains("move"),
            "says what to do: {line}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
