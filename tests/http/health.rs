//! The five health endpoints and readiness on shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::util::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_health_endpoints() {
    let a = api(None, 1 << 20).await;
    let (s, v) = a.get("/api/health/live").await;
    assert_eq!((s, v["alive"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!((s, v["ready"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = a.get("/api/health").await;
    // Healthy, or degraded on a machine short of disk or memory: never unhealthy here.
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        matches!(v["status"].as_str(), Some("healthy" | "degraded")),
        "{v}"
    );
    assert_eq!(v["services"]["storage"], "healthy");
    for k in ["storage", "queue", "workers", "ml", "disk", "memory"] {
        assert!(v["services"].get(k).is_some(), "{k}: {v}");
    }
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let (s, v) = a.get("/api/health/detailed").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["services"]["workers"]["details"]["total"].as_u64() == Some(2),
        "{v}"
    );
    let (s, v) = a.get("/api/health/services/queue").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("healthy")));
    let (s, v) = a.get("/api/health/services/flux").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("Unknown service: flux"))
    );

    let (s, v) = a.get("/api/system").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["memory_total_bytes"].as_u64() > Some(0) && v["process_rss_bytes"].as_u64() > Some(0),
        "{v}"
    );
    assert!(v["disk_available_bytes"].as_u64().is_some(), "{v}");

    // Shutdown turns readiness off first; liveness stays.
    a.state.ready.store(false, Ordering::SeqCst);
    let (s, v) = a.get("/api/health/ready").await;
    assert_eq!(
        (s, v["ready"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(false))
    );
    let (s, _) = a.get("/api/health/live").await;
    assert_eq!(s, StatusCode::OK);
    a.stop().await;
}

/// On shutdown readiness answers 503 while the listener still accepts, for `shutdown_delay_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_before_the_listener_closes() {
    use spheroseg::config::{Config, Layer, Sources};

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("spheroseg.toml");
    std::fs::write(&file, "shutdown_delay_ms = 1500\n").expect("config");
    let config = Config::load(&Sources {
        file: Some(file),
        env: HashMap::new(),
        flags: Layer {
            data_dir: Some(dir.path().join("data")),
            workers: Some(1),
            ..Layer::default()
        },
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spheroseg::app::run(config, listener, async {
        let _ = stopped.await;
    }));
    spheroseg::segment::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let ready = |c: reqwest::Client, b: String| async move {
        c.get(format!("{b}/api/health/ready"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(client.clone(), base.clone()).await.ok() != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).expect("stop");
    // Still listening, but no longer ready.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ready(client.clone(), base.clone()).await {
            Ok(503) => break,
            Ok(200) => {}
            other => panic!("expected 503 before the listener closed, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = client
        .get(format!("{base}/api/health/live"))
        .send()
        .await
        .expect("still listening");
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    server.await.expect("server task").expect("clean shutdown");
    assert!(
        ready(client.clone(), base.clone()).await.is_err(),
        "closed after the delay"
    );
}
