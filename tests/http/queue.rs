//! The queue's routes: the breakers `/api/ml` and the health details show are taken on the
//! pool's clock, as the breakers themselves run on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use spheroseg::clock::{Clock, ManualClock};
use spheroseg::pool::Pool;
use spheroseg::segment::breaker::{Breaker, BreakerConfig};
use spheroseg::segment::{Builtin, SegmenterId, Segmenters};

use crate::util::api::*;

/// The breaker's state and next probe as `/api/ml` and `/api/health/detailed` show them.
async fn shown(a: &Api) -> [(Option<String>, Option<u64>); 2] {
    let (s, ml) = a.get("/api/ml").await;
    assert_eq!(s, StatusCode::OK, "{ml}");
    let (_, health) = a.get("/api/health/detailed").await;
    let of = |b: &serde_json::Value| {
        (
            b["state"].as_str().map(str::to_owned),
            b["nextProbe"].as_u64(),
        )
    };
    [
        of(&ml[0]["breaker"]),
        of(&health["services"]["ml"]["details"]["command"]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_snapshots_are_taken_on_the_pools_clock() {
    let mut a = api(None, 1 << 20).await;
    // A pool of its own on a manual clock, decades before the system's, with one ML service
    // whose breaker is open for 10 s of that clock.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let open = Duration::from_secs(10);
    let breaker = Breaker::new(
        BreakerConfig {
            open_base: open,
            ..BreakerConfig::default()
        },
        clock.now(),
    );
    let svc = crate::util::sh_service(dir.path(), "exit 2", breaker, false);
    svc.breaker.lock().expect("lock").force_open(clock.now());
    let (queue, images, events) = crate::util::stack(dir.path());
    let pool = Pool::start(
        queue,
        images,
        events,
        Segmenters {
            builtin: Arc::new(Builtin),
            ml: HashMap::from([(SegmenterId::new("command").expect("name"), svc)]),
        },
        crate::util::pool_config(1),
        clock.clone(),
    )
    .expect("pool starts");
    a.state.service.pool = Some(pool.handle());

    // On the system clock it would have been half-open long ago.
    let [ml, health] = shown(&a).await;
    assert_eq!(ml, health);
    assert_eq!(ml.0.as_deref(), Some("open"), "{ml:?}");
    let probe = ml.1.expect("an open breaker's next probe");
    assert!(
        probe > clock.now() && probe <= clock.now() + 60_000,
        "{probe}"
    );
    clock.advance(open / 2);
    assert_eq!(shown(&a).await[0].0.as_deref(), Some("open"));
    // Its probe is due by the pool's clock: the snapshot lets a trial through.
    clock.set(probe);
    let [ml, health] = shown(&a).await;
    assert_eq!(ml, health);
    assert_eq!(ml.0.as_deref(), Some("half-open"), "{ml:?}");
    pool.shutdown(Duration::from_secs(5)).await;
    a.stop().await;
}
