//! Every transition a job can make reaches a WebSocket client as its event: once, in the order of
//! the job's transitions, and only after the change is readable through the API (the state the
//! API shows is the event's or a later one's). Driven through a real `App` with a `command`
//! segmenter of two slots that flag files make fail (transient or permanent) or hang; a shutdown
//! and restart, and ML services that hold jobs back, in the files beside this one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use spheroseg::config::{CommandLayer, QueueLayer};
use spheroseg::queue::{Limit, Retention};

use crate::util::api::*;
use crate::util::ws::Recorder;

/// An ML service that cannot take a job holds it back without spending an attempt.
mod held;
/// A shutdown interrupts running jobs; a restart requeues the orphans of the one before.
mod restart;

/// A shell script for the `command` segmenter: a file in `flags` named `permanent` makes
/// it fail so, `transient-once` makes the next call fail transiently (the call
/// removes it, so a retry does not depend on how soon the test reacts), `slow` makes it hang for
/// 30 s; otherwise it returns a square.
pub(super) fn program(flags: &Path) -> Vec<String> {
    let script = format!(
        r#"d='{}'
if [ -e "$d/permanent" ]; then echo 'cannot open image' >&2; exit 1; fi
if rm "$d/transient-once" 2>/dev/null; then echo 'GPU busy' >&2; exit 2; fi
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

pub(super) async fn upload(a: &Api, file: &str, fields: &[(&str, &str)]) -> String {
    let (s, v) = a.upload(&[("image", file, read(file))], fields).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["jobs"][0]["id"].as_str().expect("id").to_owned()
}

/// Sets (`on`) or clears the flag file `name` in `dir`.
pub(super) fn flag(dir: &Path, name: &str, on: bool) -> PathBuf {
    let p = dir.join(name);
    if on {
        std::fs::write(&p, b"").expect("flag");
    } else {
        let _ = std::fs::remove_file(&p);
    }
    p
}

/// Both slots of the `command` segmenter (its `max_parallel` is 2) hang on a job each (the `slow`
/// flag is set in `flags`), and a consumer that never renews its lease (nor hands the job back)
/// takes a third, which waits for a slot, for `ttl`. Their ids.
pub(super) async fn busy_workers_and_a_lease(
    a: &Api,
    seen: &Recorder,
    flags: &Path,
    ttl: Duration,
) -> [String; 3] {
    flag(flags, "slow", true);
    let slow1 = upload(a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    let slow2 = upload(a, "spheroid_lumen_8bit.png", &[("segmenter", "command")]).await;
    seen.until(&slow1, "job_started", 1).await;
    seen.until(&slow2, "job_started", 1).await;
    let leased_job = upload(a, "spheroid_plain_16bit.tif", &[("segmenter", "command")]).await;
    let leased = a.state.service.queue.lease(1, ttl).await.expect("lease");
    assert_eq!(
        leased.len(),
        1,
        "the program's slots are busy: the job is ours"
    );
    seen.until(&leased_job, "job_started", 1).await;
    [slow1, slow2, leased_job]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_announced_once_in_order_after_it_is_readable() {
    let flags = tempfile::tempdir().expect("flags");
    let argv = program(flags.path());
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.command = CommandLayer {
            argv: Some(argv),
            max_parallel: Some(2),
        };
        l.queue = QueueLayer {
            backoff_base_ms: Some(100),
            ..QueueLayer::default()
        };
    })
    .await;
    let addr = a.app.as_ref().expect("app").addr();
    let seen = Recorder::connect(a.state.clone(), addr, None).await;

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
    flag(flags.path(), "transient-once", true);
    let job_c = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    seen.until(&job_c, "job_retrying", 1).await;
    seen.until(&job_c, "job_completed", 1).await;
    seen.until(&job_a, "job_completed", 1).await;
    seen.until(&job_b, "job_completed", 1).await;

    // Failed (a permanent error).
    flag(flags.path(), "permanent", true);
    let job_d = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    seen.until(&job_d, "job_failed", 1).await;
    flag(flags.path(), "permanent", false);

    // A lease that runs out: both workers busy on hanging jobs, a consumer that never renews its
    // lease takes the next job.
    let [slow1, slow2, job_e] =
        busy_workers_and_a_lease(&a, &seen, flags.path(), Duration::from_millis(200)).await;
    seen.until(&job_e, "job_requeued:lease-expired", 1).await;
    // Cancelled while running.
    for id in [&slow1, &slow2] {
        let (s, _) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
        assert_eq!(s, StatusCode::OK);
    }
    flag(flags.path(), "slow", false);
    seen.until(&job_e, "job_completed", 1).await;

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
        seen.until(id, "jobs_deleted", 1).await;
    }
    // One jobs_deleted event per commit: the retention sweep's four, the bulk delete's three.
    let sorted = |ids: &[&String]| {
        let mut v: Vec<String> = ids.iter().map(|id| (*id).clone()).collect();
        v.sort();
        v
    };
    let deleted: Vec<(Vec<String>, u64)> = seen
        .deleted()
        .into_iter()
        .map(|(ids, count)| (sorted(&ids.iter().collect::<Vec<_>>()), count))
        .collect();
    assert_eq!(
        deleted,
        [
            (sorted(&[&job_a, &job_b, &job_c, &job_e]), 4),
            (sorted(&[&job_d, &slow1, &slow2]), 3),
        ]
    );

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
            seen.labels(id),
            kinds,
            "the events of {id}, once each and in order"
        );
    }
    // The builtin segmenter reports progress: inside each attempt (checked with the rest below).
    for id in [&job_a, &job_b, &job_e] {
        assert!(seen.progress(id) >= 1, "{id}: {:?}", seen.seen(id));
    }
    let problems = seen.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    seen.close().await;
    a.stop().await;
}
