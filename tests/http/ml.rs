//! spheroseg as another spheroseg's ML service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spheroseg::http::AppState;
use spheroseg::segment::DecodeLimits;

use crate::util::api::*;
use crate::util::fixture;

/// One spheroseg serves the ML contract at /ml; another's http segmenter uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spheroseg_serves_the_ml_contract_to_another_spheroseg() {
    use spheroseg::segment::http::HttpSegmenter;

    let a = api(None, 64 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let url = format!("http://{addr}/ml");
    let state = AppState {
        guard: Arc::new(spheroseg::http::Guard::new(addr, vec![], vec![])),
        ..a.state.clone()
    };
    let server = tokio::spawn(spheroseg::http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let client = HttpSegmenter::new("http", &url, Duration::from_secs(30), false).expect("client");
    let h = client.health().await;
    assert!(h.up, "{h:?}");
    assert_eq!(h.body.expect("json")["status"], "healthy");

    let client = Arc::new(client);
    let r = tokio::task::spawn_blocking(move || {
        let path = fixture("spheroid_lumen_8bit.png");
        let bytes = std::fs::read(&path).expect("fixture");
        let image = spheroseg::queue::ImageRef {
            hash: "h".into(),
            name: "lumen.png".into(),
            width: 384,
            height: 384,
            bytes: bytes.len() as u64,
        };
        let params = spheroseg::segment::SegmentParams::default();
        let limits = DecodeLimits::default();
        let input = spheroseg::segment::Input {
            bytes: &bytes,
            path: &path,
            name: &image.name,
            params: &params,
            limits: &limits,
            budget: &Default::default(),
            decoded: None,
        };
        let stop = spheroseg::segment::Stop::default();
        let mut progress = |_| {};
        let mut control = spheroseg::segment::Control {
            stop: &stop,
            deadline: Instant::now() + Duration::from_secs(30),
            progress: &mut progress,
        };
        spheroseg::segment::Segmenter::segment(&*client, &input, &mut control)
    })
    .await
    .expect("thread")
    .expect("segmented by the other spheroseg");
    assert_eq!(r.objects.len(), 1);
    assert_eq!(
        r.objects[0].holes.len(),
        1,
        "the lumen survives the round trip"
    );
    server.abort();
    a.stop().await;
}
