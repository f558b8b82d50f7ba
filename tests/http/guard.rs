//! Who may call: every request a web page on another site (or a DNS-rebound name) could make is
//! refused, and nothing changed; scripts without an Origin keep working; a bulk action must name
//! what it acts on.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

/// A finished job and a queued one (the queue is paused, so the queued one stays).
async fn two_jobs(a: &Api) -> (String, String) {
    let (s, v) = a
        .upload(
            &[("image", "done.png", read("spheroid_core_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let done = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&done, "completed").await;
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = a
        .upload(
            &[("image", "waits.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    (done, v["jobs"][0]["id"].as_str().expect("id").to_owned())
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

async fn refused(a: &Api, req: Request<Body>, status: StatusCode, code: &str) {
    let what = format!("{} {} {:?}", req.method(), req.uri(), req.headers());
    let (s, body, _) = a.send(req).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.len() > 20),
        "a message that says why: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_from_other_sites_are_refused_and_change_nothing() {
    let a = api(None, 64 << 20).await;
    let (done, waiting) = two_jobs(&a).await;
    let wipe = r#"{"action":"delete","filter":{"all":true}}"#;
    let cancel = r#"{"action":"cancel","filter":{"all":true}}"#;
    // The attack of the issue: a page on evil.example posts text/plain (no CORS preflight).
    refused(
        &a,
        request(
            "POST",
            "/api/jobs/bulk",
            &[
                ("origin", "http://evil.example"),
                ("content-type", "text/plain"),
            ],
            r#"{"action":"delete"}"#,
        ),
        StatusCode::FORBIDDEN,
        "cross-site-request",
    )
    .await;
    // The same with a proper JSON body and every other state-changing route.
    for (method, uri, body) in [
        ("POST", "/api/jobs/bulk", wipe),
        ("POST", "/api/jobs/bulk", cancel),
        ("DELETE", &*format!("/api/jobs/{waiting}"), ""),
        (
            "PATCH",
            &*format!("/api/jobs/{waiting}"),
            r#"{"priority":10}"#,
        ),
        ("POST", &*format!("/api/jobs/{done}/retry"), ""),
        ("POST", &*format!("/api/jobs/{done}/rerun"), "{}"),
        ("POST", "/api/queue/resume", ""),
        ("POST", "/api/ml/http/reset", ""),
    ] {
        for headers in [
            vec![
                ("origin", "http://evil.example"),
                ("content-type", "application/json"),
            ],
            vec![("origin", "null"), ("content-type", "application/json")],
            vec![
                ("sec-fetch-site", "cross-site"),
                ("content-type", "application/json"),
            ],
            vec![
                ("sec-fetch-site", "same-site"),
                ("content-type", "application/json"),
            ],
            // A page of another port on the same machine is another origin.
            vec![
                ("origin", "http://127.0.0.1:8080"),
                ("content-type", "application/json"),
            ],
        ] {
            refused(
                &a,
                request(method, uri, &headers, body),
                StatusCode::FORBIDDEN,
                "cross-site-request",
            )
            .await;
        }
    }
    // An upload from another site's form.
    let (kind, body) = multipart(&[("image", "x.png", read("spheroid_core_8bit.png"))], &[]);
    let req = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, kind)
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::from(body))
        .expect("request");
    refused(&a, req, StatusCode::FORBIDDEN, "cross-site-request").await;
    // JSON sent as text/plain, even without an Origin: 415.
    for (method, uri, body) in [
        ("POST", "/api/jobs/bulk", wipe),
        (
            "PATCH",
            &*format!("/api/jobs/{waiting}"),
            r#"{"priority":10}"#,
        ),
        (
            "POST",
            "/api/jobs",
            r#"{"paths":["spheroid_core_8bit.png"]}"#,
        ),
        ("POST", &*format!("/api/jobs/{done}/rerun"), "{}"),
    ] {
        refused(
            &a,
            request(method, uri, &[("content-type", "text/plain")], body),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        )
        .await;
    }
    // Nothing changed.
    let (_, j) = a.get(&format!("/api/jobs/{done}")).await;
    assert_eq!(j["state"], "completed");
    let (_, j) = a.get(&format!("/api/jobs/{waiting}")).await;
    assert_eq!(
        (j["state"].as_str(), j["priority"].as_u64()),
        (Some("queued"), Some(5))
    );
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(q["paused"], true);
    assert_eq!(q["counts"]["completed"], 1);
    let (_, r) = a.get(&format!("/api/jobs/{done}/result")).await;
    assert!(r["polygons"].is_array(), "the result is still there");

    // The page's own requests pass: same origin, or an allowed one.
    for headers in [
        vec![
            ("origin", "http://127.0.0.1:5001"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("origin", "http://localhost:5001")],
        vec![
            ("origin", "https://lab.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        let mut h = headers.clone();
        h.push(("content-type", "application/json"));
        let (s, body, _) = a
            .send(request(
                "PATCH",
                &format!("/api/jobs/{waiting}"),
                &h,
                r#"{"priority":6}"#,
            ))
            .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{headers:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // And so do scripts: no Origin, no Sec-Fetch-Site.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"cancel","filter":{"state":"queued"}}"#),
        )
        .await;
    assert_eq!(
        (s, v["affected"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_reads_nothing() {
    let a = api(None, 64 << 20).await;
    let (done, _) = two_jobs(&a).await;
    // What a page of evil.example sees after its name was rebound to 127.0.0.1.
    for host in [
        "evil.example:5001",
        "evil.example",
        "127.0.0.1.nip.io:5001",
        "localhost:6000",
    ] {
        for uri in [
            format!("/api/jobs/{done}/image"),
            format!("/api/jobs/{done}/preview.png"),
            format!("/api/jobs/{done}/thumbnail"),
            "/api/gallery".to_owned(),
            format!("/api/jobs/{done}/result"),
            "/api/export?state=completed".to_owned(),
            "/api/jobs".to_owned(),
            "/metrics".to_owned(),
            "/ml/health".to_owned(),
            "/ws".to_owned(),
            "/".to_owned(),
            "/static/app.js".to_owned(),
            "/api/health".to_owned(),
        ] {
            let req = request("GET", &uri, &[("host", host)], "");
            let (s, body, _) = a.send(req).await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::MISDIRECTED_REQUEST, Some("host-not-allowed")),
                "{host} {uri}"
            );
            assert!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("allowed_hosts")),
                "says which setting to change: {v}"
            );
        }
    }
    // The probes hold no data: a prober that sends an IP address as Host is answered.
    for uri in ["/api/health/live", "/api/health/ready"] {
        let (s, _, _) = a
            .send(request("GET", uri, &[("host", "10.0.0.7:5001")], ""))
            .await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
    // A request without a Host is refused too (HTTP/1.1 requires one).
    let mut req = request("GET", "/api/jobs", &[], "");
    req.headers_mut().remove(header::HOST);
    let resp = tower::ServiceExt::oneshot(spheroseg::http::router(a.state.clone()), req)
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    // The names of this server pass.
    for host in ["127.0.0.1:5001", "localhost:5001", "[::1]:5001"] {
        let (s, _, _) = a
            .send(request(
                "GET",
                &format!("/api/jobs/{done}/image"),
                &[("host", host)],
                "",
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{host}");
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_let_a_lab_server_be_reached_by_name() {
    let mut a = api(None, 64 << 20).await;
    a.state.guard = std::sync::Arc::new(spheroseg::http::Guard::new(
        "0.0.0.0:5001".parse().expect("addr"),
        vec![spheroseg::http::HostRule::parse("lab-server.example.org").expect("rule")],
        vec![],
    ));
    for (host, ok) in [
        ("lab-server.example.org", true),
        ("lab-server.example.org:443", true),
        ("192.168.1.20:5001", true),
        ("localhost:5001", true),
        ("evil.example:5001", false),
    ] {
        let (s, _, _) = a
            .send(request("GET", "/api/queue", &[("host", host)], ""))
            .await;
        assert_eq!(s == StatusCode::OK, ok, "{host}: {s}");
    }
    // Its own page, reached by that name, may change the queue.
    let (s, _, _) = a
        .send(request(
            "POST",
            "/api/queue/pause",
            &[
                ("host", "lab-server.example.org"),
                ("origin", "https://lab-server.example.org"),
            ],
            "",
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_action_must_name_what_it_acts_on() {
    let a = api(None, 64 << 20).await;
    let (done, waiting) = two_jobs(&a).await;
    for body in [
        r#"{"action":"delete"}"#,
        r#"{"action":"delete","filter":{}}"#,
        r#"{"action":"delete","filter":{"project":""}}"#,
        r#"{"action":"delete","filter":{"all":false}}"#,
    ] {
        let (s, v) = a.call("POST", "/api/jobs/bulk", Some(body)).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
            "{body}: {v}"
        );
    }
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(
        (
            q["counts"]["completed"].as_u64(),
            q["counts"]["queued"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // A dry run counts what the action would touch and changes nothing.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"delete","filter":{"all":true},"dry_run":true}"#),
        )
        .await;
    assert_eq!(
        (
            s,
            v["matched"].as_u64(),
            v["affected"].as_u64(),
            v["dry_run"].as_bool()
        ),
        (StatusCode::OK, Some(2), Some(1), Some(true)),
        "{v}"
    );
    let (s, _) = a.get(&format!("/api/jobs/{done}")).await;
    assert_eq!(s, StatusCode::OK, "still there after the dry run");
    // By ids: only the named jobs.
    let body = format!(r#"{{"action":"cancel","filter":{{"ids":["{waiting}","{done}"]}}}}"#);
    let (s, v) = a.call("POST", "/api/jobs/bulk", Some(&body)).await;
    assert_eq!(
        (s, v["matched"].as_u64(), v["affected"].as_u64()),
        (StatusCode::OK, Some(2), Some(1)),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"cancel","filter":{"ids":["nope"]}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Named explicitly, everything finished goes, in one commit.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"delete","filter":{"all":true}}"#),
        )
        .await;
    assert_eq!(
        (s, v["affected"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(q["counts"]["completed"], 0);
    // The retention in force is on the overview: results are kept until deleted.
    assert!(q["retention"]["completed"]["max_age_days"].is_null(), "{q}");
    assert!(q["retention"]["completed"]["max_count"].is_null(), "{q}");
    assert_eq!(q["retention"]["failed"]["max_age_days"], 30.0);
    a.stop().await;
}
