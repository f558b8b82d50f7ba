//! `serve` over TCP: uploads, the WebSocket and `since` resume.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::util::api::*;

/// `serve` on 127.0.0.1:0: upload over TCP, watch the WebSocket until the job completes, fetch the
/// result, then reconnect with `since` and receive only what was missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tcp_with_websocket_and_since_resume() {
    use futures_util::{SinkExt, StreamExt};
    use spheroseg::config::{Config, Layer, Sources};

    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::load(&Sources {
        file: None,
        env: HashMap::from([("SPHEROSEG_WORKERS".to_owned(), "2".to_owned())]),
        flags: Layer {
            data_dir: Some(dir.path().join("data")),
            ..Layer::default()
        },
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spheroseg::app::run(config, listener, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    spheroseg::segment::http::install_crypto_provider();
    let client = reqwest::Client::new();
    // Wait on readiness, no sleep to let it start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/api/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("ws");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "snapshot");

    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(read("spheroid_lumen_8bit.png")).file_name("lumen.png"),
    );
    let resp = client
        .post(format!("{base}/api/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let v: serde_json::Value = resp.json().await.expect("json");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();

    let mut last_id = 0u64;
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        if !msg.is_text() {
            continue;
        }
        let e: serde_json::Value =
            serde_json::from_str(msg.to_text().expect("text")).expect("json");
        if let Some(n) = e["id"].as_u64() {
            assert!(n > last_id, "ids rise");
            last_id = n;
        }
        types.push(e["type"].as_str().unwrap_or_default().to_owned());
        if e["type"] == "job_completed" && e["job_id"] == id.as_str() {
            break;
        }
    }
    assert!(
        types.contains(&"job_queued".to_owned()) && types.contains(&"job_started".to_owned()),
        "{types:?}"
    );
    let _ = ws.close(None).await;
    let r: serde_json::Value = client
        .get(format!("{base}/api/jobs/{id}/result"))
        .send()
        .await
        .expect("result")
        .json()
        .await
        .expect("json");
    assert_eq!(r["polygons"][0]["type"], "external");

    // Something happens while disconnected; reconnecting with since gets only that.
    let resp = client
        .post(format!("{base}/api/queue/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(read("spheroid_core_8bit.png")).file_name("core.png"),
    );
    client
        .post(format!("{base}/api/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?since={last_id}"))
        .await
        .expect("ws");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    let missed = next_json(&mut ws).await;
    assert!(
        missed["id"].as_u64().expect("an event") > last_id,
        "{missed}"
    );
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;

    // A foreign origin is refused.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/ws"),
    )
    .expect("request");
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    stop.send(()).expect("stop");
    server.await.expect("server task").expect("clean shutdown");
}

/// A WebSocket client that stops reading is disconnected after the send timeout instead of being
/// held (and buffered for) forever, while events keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    use futures_util::StreamExt;
    use spheroseg::events::EventKind;

    let mut a = api(None, 1 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    a.state.guard = std::sync::Arc::new(spheroseg::http::Guard::new(addr, vec![], vec![]));
    a.state.ws_send_timeout = Duration::from_secs(1);
    let events = a.state.service.events.clone();
    let server = tokio::spawn(spheroseg::http::serve(
        listener,
        a.state.clone(),
        std::future::pending(),
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    // The client reads nothing while some 25 MB of events go out: far more than the socket
    // buffers hold, so the server's sends stall.
    let message = "x".repeat(64 << 10);
    for _ in 0..400 {
        events.publish(EventKind::BreakerChanged {
            service: message.clone(),
            from: "closed".into(),
            to: "open".into(),
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Now it reads: what was in the buffers, then the end of a connection the server dropped.
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(m) if m.is_text() => received += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server dropped the stalled client");
    assert!(received < 400, "it was cut off: {received} of 400 events");
    server.abort();
    a.stop().await;
}
