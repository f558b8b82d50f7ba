//! The API token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_everywhere_but_liveness() {
    let a = api(Some("s3cret"), 1 << 20).await;
    let (s, v) = a.get("/api/queue").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, _) = a.get("/api/health").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = a.get("/api/health/live").await;
    assert_eq!(s, StatusCode::OK);
    let req = |token: &str| {
        Request::get("/api/queue")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("req")
    };
    assert_eq!(a.send(req("s3cret")).await.0, StatusCode::OK);
    assert_eq!(a.send(req("s3creT")).await.0, StatusCode::UNAUTHORIZED);
    a.stop().await;
}
