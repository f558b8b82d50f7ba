//! A job's history over the API: a job that fails twice and then succeeds shows three attempts,
//! each with its segmenter, times and error, and every event of its life in order.

use axum::http::StatusCode;
use spheroseg::config::{CommandLayer, QueueLayer};

use crate::util::api::*;

/// A `command` program that fails (transiently) on its first two runs and then returns a square;
/// it counts its runs in `dir/runs`.
fn fails_twice(dir: &std::path::Path) -> Vec<String> {
    let script = format!(
        r#"d='{}'
n=$(cat "$d/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$d/runs"
if [ $n -le 2 ]; then echo "GPU busy on run $n" >&2; exit 2; fi
echo '{{"success":true,"polygons":[{{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}}]}}' > "$1""#,
        dir.display()
    );
    ["sh", "-c", &script, "sh", "{output_json}", "{input}"]
        .map(String::from)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failures_then_a_result_show_three_attempts_and_every_event() {
    let runs = tempfile::tempdir().expect("runs");
    let argv = fails_twice(runs.path());
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.command = CommandLayer {
            argv: Some(argv),
            max_parallel: Some(1),
        };
        l.queue = QueueLayer {
            backoff_base_ms: Some(10),
            backoff_jitter: Some(0.0),
            ..QueueLayer::default()
        };
    })
    .await;
    let (s, v) = a
        .upload(
            &[("image", "core.png", read("spheroid_core_8bit.png"))],
            &[("segmenter", "command")],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;

    let (s, h) = a.get(&format!("/api/jobs/{id}/history")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["job_id"], id.as_str());
    assert_eq!(h["dropped"], 0);
    let kinds: Vec<&str> = h["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "queued",
            "started",
            "retrying",
            "requeued",
            "started",
            "retrying",
            "requeued",
            "started",
            "completed"
        ],
        "{h}"
    );
    let attempts = h["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{h}");
    for (i, at) in attempts.iter().enumerate() {
        assert_eq!(at["number"], i + 1, "{at}");
        assert_eq!(at["segmenter"], "command", "{at}");
        let (start, end) = (
            at["started_at"].as_u64().expect("start"),
            at["ended_at"].as_u64().expect("end"),
        );
        assert!(start <= end, "{at}");
    }
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "completed"]);
    for (n, at) in attempts[..2].iter().enumerate() {
        let message = at["error"]["message"].as_str().expect("an error");
        assert!(
            message.contains(&format!("GPU busy on run {}", n + 1)),
            "{at}"
        );
        assert_eq!(at["error"]["transient"], true);
    }
    assert!(attempts[2]["error"].is_null());
    // The job itself shows no error once it has its result; the history keeps them.
    let (_, job) = a.get(&format!("/api/jobs/{id}")).await;
    assert!(job["error"].is_null(), "{job}");

    let (s, _) = a
        .get("/api/jobs/0190c0de-0000-7000-8000-000000000000/history")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = a.get("/api/jobs/not-a-job/history").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    a.stop().await;
}
