//! A shutdown hands running jobs back (`job_interrupted`), and the next start requeues the job
//! a consumer held when the process stopped (`job_requeued:orphan`): announced over `/ws` in
//! the order of the jobs' transitions, each attempt refunded.

use spheroseg::config::Layer;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_interrupts_running_jobs_and_a_restart_requeues_the_orphan() {
    let flags = tempfile::tempdir().expect("flags");
    let configure = |l: &mut Layer| {
        l.command = CommandLayer {
            argv: Some(program(flags.path())),
            max_parallel: Some(2),
        };
        l.shutdown_grace_secs = Some(0);
    };
    let mut a = api_with(
        tempfile::tempdir().expect("tempdir"),
        None,
        64 << 20,
        configure,
    )
    .await;
    let addr = a.app.as_ref().expect("app").addr();
    let before = Recorder::connect(a.state.clone(), addr, None).await;

    // Both workers hang on a job each; a consumer that stops with the process holds the third.
    let [slow1, slow2, orphan] =
        busy_workers_and_a_lease(&a, &before, flags.path(), Duration::from_secs(3600)).await;
    // Paused, so the next start shows the jobs as they were handed back before it runs them.
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);

    // No grace: the hanging jobs are stopped and handed back. The queue closes right after, so
    // the API is not asked at these events; the restart below reads what they left.
    before.stop_reading();
    let app = a.app.take().expect("app");
    app.shutdown().await.expect("clean shutdown");
    for id in [&slow1, &slow2] {
        before.until(id, "job_interrupted", 1).await;
        assert_eq!(
            before.labels(id),
            ["job_queued", "job_started", "job_interrupted"]
        );
        let last = before.seen(id).pop().expect("an event");
        assert_eq!(last.state.as_deref(), Some("queued"), "{last:?}");
    }
    assert_eq!(before.labels(&orphan), ["job_queued", "job_started"]);
    let problems = before.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    before.close().await;

    // The restart: opening the queue requeues the orphan, the first event of the new process.
    flag(flags.path(), "slow", false);
    let Api { dir, .. } = a;
    let a = api_with(dir, None, 64 << 20, configure).await;
    let addr = a.app.as_ref().expect("app").addr();
    let after = Recorder::connect(a.state.clone(), addr, Some(0)).await;
    after.until(&orphan, "job_requeued:orphan", 1).await;
    for id in [&slow1, &slow2, &orphan] {
        let (_, v) = a.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(
            (v["state"].as_str(), v["attempts"].as_u64()),
            (Some("queued"), Some(0)),
            "handed back with the attempt refunded: {v}"
        );
    }
    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    for id in [&slow1, &slow2, &orphan] {
        after.until(id, "job_completed", 1).await;
    }
    assert_eq!(
        after.labels(&orphan),
        ["job_requeued:orphan", "job_started", "job_completed"]
    );
    for id in [&slow1, &slow2] {
        assert_eq!(after.labels(id), ["job_started", "job_completed"]);
    }
    let problems = after.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    after.close().await;
    a.stop().await;
}
