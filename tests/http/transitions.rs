//! Every transition a job can make reaches a WebSocket client as its event: once, in the order of
//! the job's transitions, and only after the change is readable through the API. Driven through
//! a real `App` with two workers and a `command` segmenter that flag files make fail (transient or
//! permanent) or hang.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use spheroseg::config::{CommandLayer, QueueLayer};
use spheroseg::queue::{Limit, Retention};

use crate::util::api::*;

/// What one job's events said, in order: the type (a requeue with its reason), and whether the
/// API showed the change when the event arrived.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn program(flags: &Path) -> Vec<String> {
    let script = format!(
        r#"d='{}'
if [ -e "$d/permanent" ]; then echo 'cannot open image' >&2; exit 1; fi
if [ -e "$d/transient" ]; then echo 'GPU busy' >&2; exit 2; fi
if [ -e "$d/slow" ]; then sleep 30; fi
echo '{{"success":true,"polygons":[{{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}}]}}' > "$1""#,
        flags.display()
    );
    vec![
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        "{output_json}".into(),
        "{input}".into(),
    ]
}

async fn upload(a: &Api, file: &str, fields: &[(&str, &str)]) -> String {
    let (s, v) = a.upload(&[("image", file, read(file))], fields).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["jobs"][0]["id"].as_str().expect("id").to_owned()
}

/// Waits until `id`'s events include `kind` (`n` times).
async fn until(seen: &Seen, id: &str, kind: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let count = seen
            .lock()
            .expect("seen")
            .get(id)
            .map_or(0, |v| v.iter().filter(|k| *k == kind).count());
        if count >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never had {n}× {kind}: {:?}",
            seen.lock().expect("seen").get(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn flag(dir: &Path, name: &str, on: bool) -> PathBuf {
    let p = dir.join(name);
    if on {
        std::fs::write(&p, b"").expect("flag");
    } else {
        let _ = std::fs::remove_file(&p);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_announced_once_in_order_after_it_is_readable() {
    let flags = tempfile::tempdir().expect("flags");
    let argv = program(flags.path());
    let a = Arc::new(
        api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
            l.command = CommandLayer { argv: Some(argv) };
            l.queue = QueueLayer {
                backoff_base_ms: Some(100),
                ..QueueLayer::default()
            };
        })
        .await,
    );
    let addr = a.app.as_ref().expect("app").addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    let seen: Seen = Arc::default();
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    // The reader: for each job event, what the API says at that moment.
    let reader = {
        let (a, seen, problems) = (Arc::clone(&a), Arc::clone(&seen), Arc::clone(&problems));
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if !m.is_text() {
                    continue;
                }
                let Ok(text) = m.to_text() else { continue };
                let e: serde_json::Value = serde_json::from_str(text).expect("json");
                let kind = e["type"].as_str().unwrap_or_default().to_owned();
                if kind == "jobs_deleted" {
                    for id in e["job_ids"].as_array().expect("ids") {
                        let id = id.as_str().expect("id");
                        let (s, _) = a.get(&format!("/api/jobs/{id}")).await;
                        if s != StatusCode::NOT_FOUND {
                            problems
                                .lock()
                                .expect("p")
                                .push(format!("{id} deleted but {s}"));
                        }
                        seen.lock()
                            .expect("seen")
                            .entry(id.into())
                            .or_default()
                            .push(kind.clone());
                    }
                    continue;
                }
                if !kind.starts_with("job_") || kind == "job_progress" {
                    continue;
                }
                let id = e["job_id"].as_str().expect("job_id").to_owned();
                let (s, now) = a.get(&format!("/api/jobs/{id}")).await;
                let (event_at, now_at) = (&e["job"]["updated_at"], &now["updated_at"]);
                // The change, or one after it (a lease and the requeue before it can share a
                // commit and a millisecond), never an older state.
                let readable = s == StatusCode::OK && now_at.as_u64() >= event_at.as_u64();
                if !readable {
                    problems.lock().expect("p").push(format!(
                        "{kind} of {id}: the API said {s} {now}, the event {}",
                        e["job"]
                    ));
                }
                let label = match e["reason"].as_str() {
                    Some(reason) => format!("{kind}:{reason}"),
                    None if e["retried"] == true => format!("{kind}:retried"),
                    None => kind,
                };
                seen.lock()
                    .expect("seen")
                    .entry(id)
                    .or_default()
                    .push(label);
            }
        })
    };

    // Queued, priority changed, cancelled, retried: while paused.
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let job_a = upload(&a, "spheroid_core_8bit.png", &[]).await;
    let job_b = upload(&a, "spheroid_lumen_8bit.png", &[]).await;
    let (s, _) = a
        .call(
            "PATCH",
            &format!("/api/jobs/{job_a}"),
            Some(r#"{"priority":9}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = a.call("DELETE", &format!("/api/jobs/{job_b}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = a
        .call("POST", &format!("/api/jobs/{job_b}/retry"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Started, retrying, requeued when due, completed.
    flag(flags.path(), "transient", true);
    let job_c = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    until(&seen, &job_c, "job_retrying", 1).await;
    flag(flags.path(), "transient", false);
    until(&seen, &job_c, "job_completed", 1).await;
    until(&seen, &job_a, "job_completed", 1).await;
    until(&seen, &job_b, "job_completed", 1).await;

    // Failed (a permanent error).
    flag(flags.path(), "permanent", true);
    let job_d = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    until(&seen, &job_d, "job_failed", 1).await;
    flag(flags.path(), "permanent", false);

    // A lease that runs out: both workers busy on hanging jobs, a consumer that never renews its
    // lease takes the next job.
    flag(flags.path(), "slow", true);
    let slow1 = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    let slow2 = upload(&a, "spheroid_lumen_8bit.png", &[("segmenter", "command")]).await;
    until(&seen, &slow1, "job_started", 1).await;
    until(&seen, &slow2, "job_started", 1).await;
    let job_e = upload(&a, "spheroid_plain_16bit.tif", &[]).await;
    let leased = a
        .state
        .service
        .queue
        .lease(1, Duration::from_millis(200))
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "the workers are busy: the job is ours");
    until(&seen, &job_e, "job_requeued:lease-expired", 1).await;
    // Cancelled while running.
    for id in [&slow1, &slow2] {
        let (s, _) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
        assert_eq!(s, StatusCode::OK);
    }
    flag(flags.path(), "slow", false);
    until(&seen, &job_e, "job_completed", 1).await;

    // A retention sweep removes the completed jobs; a bulk delete the rest.
    let sweep = Retention {
        completed: Limit {
            age: Some(Duration::ZERO),
            count: None,
        },
        ..Retention::default()
    };
    let removed = a
        .state
        .service
        .queue
        .retain(sweep, 100)
        .await
        .expect("retain");
    assert_eq!(removed.removed.len(), 4);
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"delete","filter":{"all":true}}"#),
        )
        .await;
    assert_eq!(
        (s, v["affected"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{v}"
    );
    // One event names the three, and the reader records them one at a time, each after a GET.
    for id in [&job_d, &slow1, &slow2] {
        until(&seen, id, "jobs_deleted", 1).await;
    }

    let seen = seen.lock().expect("seen").clone();
    let expect: [(&str, &[&str]); 7] = [
        (
            &job_a,
            &[
                "job_queued",
                "job_priority_changed",
                "job_started",
                "job_completed",
                "jobs_deleted",
            ],
        ),
        (
            &job_b,
            &[
                "job_queued",
                "job_cancelled",
                "job_queued:retried",
                "job_started",
                "job_completed",
                "jobs_deleted",
            ],
        ),
        (
            &job_c,
            &[
                "job_queued",
                "job_started",
                "job_retrying",
                "job_requeued:due",
                "job_started",
                "job_completed",
                "jobs_deleted",
            ],
        ),
        (
            &job_d,
            &["job_queued", "job_started", "job_failed", "jobs_deleted"],
        ),
        (
            &slow1,
            &["job_queued", "job_started", "job_cancelled", "jobs_deleted"],
        ),
        (
            &slow2,
            &["job_queued", "job_started", "job_cancelled", "jobs_deleted"],
        ),
        (
            &job_e,
            &[
                "job_queued",
                "job_started",
                "job_requeued:lease-expired",
                "job_started",
                "job_completed",
                "jobs_deleted",
            ],
        ),
    ];
    for (id, kinds) in expect {
        assert_eq!(
            seen.get(id).map(Vec::as_slice).unwrap_or_default(),
            kinds,
            "the events of {id}, once each and in order"
        );
    }
    let problems = problems.lock().expect("p").clone();
    assert!(problems.is_empty(), "{problems:#?}");
    reader.abort();
    let _ = reader.await;
    Arc::into_inner(a).expect("last handle").stop().await;
}
