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

/// Every route of the OpenAPI document but liveness refuses a request without the token, and
/// takes it with: the token is an extractor each data handler takes, so this is what shows that
/// none was left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_requires_the_token() {
    let a = api(Some("s3cret"), 1 << 20).await;
    let doc = serde_json::to_value(spheroseg::http::openapi()).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        let uri = path
            .replace("{id}", "01a2f0c0-0000-7000-8000-000000000000")
            .replace("{name}", "http")
            .replace("{service}", "storage")
            // The long-poll answers at once.
            .replace("/api/events", "/api/events?timeout=0");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let open = path == "/api/health/live";
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("req");
            let (s, _, _) = a.send(req).await;
            assert_eq!(
                s == StatusCode::UNAUTHORIZED,
                !open,
                "{method} {path} without the token: {s}"
            );
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("req");
            let (s, _, _) = a.send(req).await;
            assert_ne!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with the token"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "every route: {checked}");
    // The page and its assets hold no data and ask for the token themselves.
    for path in ["/", "/static/app.js"] {
        let (s, _, _) = a.get_raw(path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    a.stop().await;
}
