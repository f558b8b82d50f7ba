//! The embedded status page and the OpenAPI document.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use spheroseg::http::router;
use tower::ServiceExt;

use crate::util::api::*;

/// The OpenAPI document lists every route the router serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route() {
    let a = api(None, 1 << 20).await;
    let (s, doc) = a.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let expect = [
        ("/api/jobs", &["get", "post"][..]),
        ("/api/jobs/{id}", &["get", "delete", "patch"][..]),
        ("/api/jobs/{id}/retry", &["post"][..]),
        ("/api/jobs/{id}/rerun", &["post"][..]),
        ("/api/jobs/{id}/result", &["get", "put"][..]),
        ("/api/jobs/{id}/result/versions", &["get"][..]),
        (
            "/api/jobs/{id}/result/versions/{version}/restore",
            &["post"][..],
        ),
        ("/api/jobs/{id}/result.csv", &["get"][..]),
        ("/api/jobs/{id}/mask.png", &["get"][..]),
        ("/api/jobs/{id}/coco.json", &["get"][..]),
        ("/api/jobs/{id}/rois.zip", &["get"][..]),
        ("/api/jobs/{id}/labels.png", &["get"][..]),
        ("/api/jobs/{id}/overlay.png", &["get"][..]),
        ("/api/jobs/{id}/image", &["get"][..]),
        ("/api/jobs/{id}/preview.png", &["get"][..]),
        ("/api/jobs/{id}/thumbnail", &["get"][..]),
        ("/api/gallery", &["get"][..]),
        ("/api/jobs/bulk", &["post"][..]),
        ("/api/export", &["get"][..]),
        ("/api/queue", &["get"][..]),
        ("/api/queue/pause", &["post"][..]),
        ("/api/queue/resume", &["post"][..]),
        ("/api/segmenters/builtin/params", &["get"][..]),
        ("/api/ml", &["get"][..]),
        ("/api/ml/{name}/reset", &["post"][..]),
        ("/api/system", &["get"][..]),
        ("/api/watch", &["get"][..]),
        ("/api/projects", &["get"][..]),
        ("/api/projects/{name}", &["get", "put"][..]),
        ("/api/events", &["get"][..]),
        ("/ws", &["get"][..]),
        ("/api/health", &["get"][..]),
        ("/api/health/live", &["get"][..]),
        ("/api/health/ready", &["get"][..]),
        ("/api/health/detailed", &["get"][..]),
        ("/api/health/services/{name}", &["get"][..]),
        ("/metrics", &["get"][..]),
        ("/api/openapi.json", &["get"][..]),
        ("/api/segmentation/queue/status", &["get"][..]),
        ("/api/segmentation/job/{id}", &["get"][..]),
        ("/ml/segment", &["post"][..]),
        ("/ml/health", &["get"][..]),
        ("/api/admin/backup", &["post"][..]),
    ];
    for (path, methods) in expect {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the document"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing");
        }
    }
    assert_eq!(
        paths.len(),
        expect.len(),
        "no undocumented extras: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // And every documented path answers something other than the fallback 404.
    for (path, methods) in expect {
        if methods.contains(&"get") && !path.contains('{') && path != "/ws" && path != "/api/events"
        {
            let (s, _, _) = a.get_raw(path).await;
            assert_ne!(s, StatusCode::NOT_FOUND, "{path}");
        }
    }
    a.stop().await;
}

/// Every operation of the document says what it answers: a success with its content (the
/// WebSocket's is the 101 upgrade), the parameters its path names, and the refusals every route
/// can give (401 without the token, 421 for a foreign Host) wherever the route gives them.
#[test]
fn every_operation_documents_its_answers_and_parameters() {
    let doc = serde_json::to_value(spheroseg::http::openapi()).expect("json");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().expect("responses");
            let success = responses.iter().any(|(status, r)| {
                (status.starts_with('2') || status.starts_with('3'))
                    && r["content"].as_object().is_some_and(|c| !c.is_empty())
            });
            if path == "/ws" {
                assert!(responses.contains_key("101"), "{what}: the upgrade");
            } else {
                assert!(success, "{what}: no 2xx/3xx response with content");
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{what}: the path parameter {name} is not declared"
                );
            }
            if path.contains("{id}") {
                assert!(
                    params.iter().any(|p| p["name"] == "id"),
                    "{what}: no id parameter"
                );
            }
            let open = path == "/api/health/live";
            assert_eq!(responses.contains_key("401"), !open, "{what}: 401");
            let probe = matches!(path.as_str(), "/api/health/live" | "/api/health/ready");
            assert_eq!(responses.contains_key("421"), !probe, "{what}: 421");
            // Every schema an answer names is in the document.
            for (status, r) in responses {
                let Some(schema) = r["content"]["application/json"]["schema"].as_object() else {
                    continue;
                };
                if let Some(reference) = schema.get("$ref").and_then(|v| v.as_str()) {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    assert!(
                        schemas.contains_key(name),
                        "{what} {status}: {name} missing"
                    );
                }
            }
            operations += 1;
        }
    }
    assert!(operations >= 30, "{operations} operations");
}

/// The embedded status page: content types, security headers, 404 for anything not embedded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_served_from_the_binary() {
    let a = api(Some("s3cret"), 1 << 20).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ] {
        let resp = router(a.state.clone())
            .oneshot(
                Request::get(path)
                    .header(header::HOST, "127.0.0.1:5001")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("response");
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{path}: the page needs no token"
        );
        let h = resp.headers();
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with(kind),
            "{path}"
        );
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("csp")
                .contains("script-src 'self'")
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    }
    for path in [
        "/static/nope.js",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
    ] {
        let (s, _, _) = a.get_raw(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    // The WebSocket checks the Origin: its own address and the configured extra ones pass.
    for (origin, allowed) in [
        ("http://127.0.0.1:5001", true),
        ("http://localhost:5001", true),
        ("https://lab.example", true),
        ("http://evil.example", false),
    ] {
        let req = Request::get("/ws?access_token=s3cret")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("req");
        let (s, _, _) = a.send(req).await;
        assert_eq!(s == StatusCode::FORBIDDEN, !allowed, "{origin}: {s}");
    }
    // The WebSocket takes the token as a query parameter (browsers cannot set its headers).
    let (s, _, _) = a.get_raw("/ws").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = a.get_raw("/ws?access_token=s3cret").await;
    assert_ne!(
        s,
        StatusCode::UNAUTHORIZED,
        "authorised; the upgrade itself needs a real socket"
    );
    a.stop().await;
}
