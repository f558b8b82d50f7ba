//! What `serve` logs: at the default level its lifecycle and each job's final state, not the
//! requests (a page polling `/api/jobs/{id}` once filled the log); with
//! `SPHEROSEG_LOG_FORMAT=json`, one JSON object per line for log shippers.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use spheroseg::clock::SystemClock;
use spheroseg::images::ImageStore;
use spheroseg::queue::{NewJob, Queue, QueueOptions};
use spheroseg::segment::DecodeLimits;

use crate::util::child::{http, serve};

/// A data directory holding one queued job of a fixture image; its id.
fn queued_job(data: &std::path::Path) -> String {
    std::fs::create_dir_all(data).expect("data dir");
    let (queue, _) = Queue::open(
        &data.join("spheroseg.redb"),
        QueueOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("queue");
    let images = ImageStore::open(data, DecodeLimits::default()).expect("images");
    let job = NewJob {
        image: images
            .put_path(&crate::util::fixture("spheroid_lumen_8bit.png"))
            .expect("stored")
            .image,
        ..NewJob::default()
    };
    let id = crate::util::runtime()
        .block_on(queue.enqueue(job))
        .expect("enqueued")
        .job
        .id;
    queue.close();
    id.to_string()
}

#[test]
fn at_the_default_level_a_job_is_logged_and_a_request_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let id = queued_job(&data);
    let mut served = serve(&data, &[]);
    let addr = served.address();
    let done = served
        .wait_line(Duration::from_secs(60), |l| l.contains("job completed"))
        .unwrap_or_else(|| panic!("the job completes: {:#?}", served.log));
    assert!(done.contains(&id) && done.contains("INFO"), "{done}");
    for path in ["/api/jobs", &format!("/api/jobs/{id}"), "/api/queue"] {
        assert_eq!(http(addr, "GET", path).0, 200, "{path}");
    }
    let (status, log) = served.stop();
    assert!(status.success(), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("/api/")),
        "no request at info: {log:#?}"
    );
}

#[test]
fn json_lines_parse_and_carry_the_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let id = queued_job(&data);
    let mut served = serve(
        &data,
        &[
            ("SPHEROSEG_LOG_FORMAT", "json"),
            // Requests are at debug: asked for here, to see one.
            ("SPHEROSEG_LOG", "info,spheroseg::http=debug"),
        ],
    );
    let addr = served.address();
    served
        .wait_line(Duration::from_secs(60), |l| l.contains("job completed"))
        .unwrap_or_else(|| panic!("the job completes: {:#?}", served.log));
    assert_eq!(http(addr, "GET", "/api/queue").0, 200);
    let (status, log) = served.stop();
    assert!(status.success(), "{log:#?}");
    let lines: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|v| v["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {lines:#?}"))
    };
    let done = find("job completed");
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["fields"]["job.id"], id.as_str());
    assert!(done["timestamp"].is_string());
    let request = find("request");
    assert_eq!(request["level"], "DEBUG");
    assert_eq!(request["fields"]["route"], "/api/queue");
    find("stopped");
}

#[test]
fn an_unknown_log_format_is_one_line_and_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_spheroseg"))
        .args(["config", "default"])
        .env("SPHEROSEG_LOG_FORMAT", "xml")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("SPHEROSEG_LOG_FORMAT") && err.contains("json"),
        "{err}"
    );
}
