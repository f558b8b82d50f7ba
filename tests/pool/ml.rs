//! ML services behind the circuit breaker: it opens, holds jobs without spending attempts, falls
//! back to the builtin segmenter when told to, and closes again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use spheroseg::clock::{Clock, SystemClock};
use spheroseg::events::EventKind;
use spheroseg::queue::JobState;
use spheroseg::segment::SegmenterId;
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::{Builtin, MlService, Segmenters};

use super::*;

/// A `command` ML service whose behaviour a flag file controls: present, the program fails with
/// exit code 2 (transient); absent, it returns a square.
fn flaky_service(dir: &Path, flag: &Path, fallback_builtin: bool) -> Arc<MlService> {
    let script = format!(
        r#"if [ -e '{}' ]; then echo 'service down' >&2; exit 2; fi
echo '{{"success":true,"polygons":[{{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}}]}}' > "$1""#,
        flag.display()
    );
    crate::util::sh_service(
        dir,
        &script,
        Breaker::new(
            BreakerConfig {
                min_calls: 3,
                open_base: Duration::from_millis(1500),
                ..BreakerConfig::default()
            },
            SystemClock.now(),
        ),
        fallback_builtin,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_holds_jobs_without_spending_attempts_and_closes_again() {
    let h = harness();
    let flag = h.dir.path().join("down");
    std::fs::write(&flag, b"").expect("flag");
    let svc = flaky_service(h.dir.path(), &flag, false);
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("command").expect("name"), Arc::clone(&svc))]),
    };
    let pool = h.start(segmenters, config(1));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            h.enqueue(
                "spheroid_lumen_8bit.png",
                SegmenterId::new("command").expect("name"),
            )
            .await,
        );
    }
    // Three transient failures (the minimum number of calls) open it; each failure is also a
    // retry of its job. The two events come from different places, so wait for both.
    h.wait_for(30, |e| {
        count(
            e,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "open"),
        ) >= 1
            && count(
                e,
                |k| matches!(k, EventKind::JobRetrying { code, .. } if code == "command-failed"),
            ) >= 3
    })
    .await;
    // While it is open, leased jobs are handed back with their attempt refunded.
    h.wait_for(10, |e| {
        count(
            e,
            |k| matches!(k, EventKind::JobRetrying { code, .. } if code == "breaker-open"),
        ) >= 1
    })
    .await;
    let snapshot = svc
        .breaker
        .lock()
        .expect("lock")
        .snapshot(SystemClock.now());
    assert!(snapshot.stats.failures >= 3);
    // The service recovers: the half-open trial succeeds, the breaker closes, every job completes.
    std::fs::remove_file(&flag).expect("recover");
    let events = h.wait_for(60, |e| count(e, completed) == 6).await;
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "half-open")
        ) >= 1
    );
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::BreakerChanged { to, .. } if to == "closed")
        ) >= 1
    );
    for id in &ids {
        let job = h.queue.get(*id).expect("get").expect("exists");
        assert_eq!(job.state, JobState::Completed);
        assert!(
            job.attempts <= 3,
            "held jobs spent no attempts: {}",
            job.attempts
        );
        let r = SegmentResult::from_bytes(&h.queue.result(*id).expect("read").expect("stored"))
            .expect("decodes");
        assert_eq!(r.segmenter, "command");
        assert_eq!(r.metrics[0].area, 2500.0);
    }
    let all = h
        .queue
        .list(&JobFilter::default(), None, 100)
        .expect("list");
    assert_eq!(all.jobs.len(), 6, "none lost, none duplicated");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_jobs_run_on_builtin_while_the_breaker_is_open() {
    let h = harness();
    let flag = h.dir.path().join("down");
    std::fs::write(&flag, b"").expect("flag");
    let svc = flaky_service(h.dir.path(), &flag, true);
    svc.breaker
        .lock()
        .expect("lock")
        .force_open(SystemClock.now());
    let segmenters = Segmenters {
        builtin: Arc::new(Builtin),
        ml: HashMap::from([(SegmenterId::new("command").expect("name"), svc)]),
    };
    let pool = h.start(segmenters, config(1));
    let id = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            SegmenterId::new("command").expect("name"),
        )
        .await;
    h.wait_for(60, |e| count(e, completed) == 1).await;
    let r = SegmentResult::from_bytes(&h.queue.result(id).expect("read").expect("stored"))
        .expect("decodes");
    assert!(
        r.segmenter.starts_with("builtin (fallback: command"),
        "{}",
        r.segmenter
    );
    assert_eq!(r.objects[0].holes.len(), 1, "the builtin pipeline's result");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ml_service_fails_the_job_with_a_reason() {
    let h = harness();
    let pool = h.start(builtin_only(), config(1));
    let id = h
        .enqueue(
            "spheroid_lumen_8bit.png",
            SegmenterId::new("nowhere").expect("name"),
        )
        .await;
    h.wait_for(30, |e| {
        count(e, |k| matches!(k, EventKind::JobFailed { .. })) == 1
    })
    .await;
    let job = h.queue.get(id).expect("get").expect("exists");
    assert_eq!(job.last_error.expect("reason").code, "unknown-segmenter");
    pool.shutdown(Duration::from_secs(5)).await;
}
