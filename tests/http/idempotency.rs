//! `POST /api/jobs` with an `Idempotency-Key` header or a `dedupe_key` field: a repeated key
//! returns the job it made first (202, `deduplicated`), a key reused for another image is a 422,
//! and a malformed key a 400. Without a key, two identical uploads are two jobs.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

/// An upload of `file` with the header `Idempotency-Key: key` (when given) and extra fields.
async fn upload_keyed(
    a: &Api,
    file: &str,
    key: Option<&str>,
    fields: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let (kind, body) = multipart(&[("image", file, read(file))], fields);
    let mut req = Request::post("/api/jobs").header(header::CONTENT_TYPE, kind);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let (s, b, _) = a.send(req.body(Body::from(body)).expect("request")).await;
    (s, serde_json::from_slice(&b).unwrap_or_default())
}

fn job_of(v: &serde_json::Value) -> (String, bool) {
    (
        v["jobs"][0]["id"].as_str().expect("id").to_owned(),
        v["jobs"][0]["deduplicated"].as_bool().expect("flag"),
    )
}

async fn total(a: &Api) -> u64 {
    let (_, q) = a.get("/api/queue").await;
    [
        "queued",
        "active",
        "completed",
        "failed",
        "delayed",
        "cancelled",
    ]
    .iter()
    .map(|s| q["counts"][s].as_u64().unwrap_or(0))
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_returns_the_first_job() {
    let a = api(None, 64 << 20).await;
    let png = "spheroid_lumen_8bit.png";
    let (s, first) = upload_keyed(&a, png, Some("3f9c-retry-1"), &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, again) = upload_keyed(&a, png, Some("3f9c-retry-1"), &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    let (id, dedup) = job_of(&first);
    assert!(!dedup);
    assert_eq!(job_of(&again), (id.clone(), true));
    // The draft's structured-field form names the same key.
    let (s, quoted) = upload_keyed(&a, png, Some("\"3f9c-retry-1\""), &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{quoted}");
    assert_eq!(job_of(&quoted).0, id);
    // The form field is the same key.
    let (s, field) = upload_keyed(&a, png, None, &[("dedupe_key", "3f9c-retry-1")]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{field}");
    assert_eq!(job_of(&field).0, id);
    assert_eq!(total(&a).await, 1, "one job for four requests");

    // Without a key, the same image twice is two jobs, as before.
    let (_, x) = upload_keyed(&a, png, None, &[]).await;
    let (_, y) = upload_keyed(&a, png, None, &[]).await;
    assert_ne!(job_of(&x).0, job_of(&y).0);
    assert_eq!(total(&a).await, 3);
    a.wait_state(&id, "completed").await;
    // Still the same job once it has completed.
    let (_, late) = upload_keyed(&a, png, Some("3f9c-retry-1"), &[]).await;
    assert_eq!(job_of(&late), (id, true));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_image_or_malformed_is_refused() {
    let a = api(None, 64 << 20).await;
    let (s, _) = upload_keyed(&a, "spheroid_lumen_8bit.png", Some("k-1"), &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = upload_keyed(&a, "spheroid_core_8bit.png", Some("k-1"), &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "idempotency-key-reused");
    let (s, v) = upload_keyed(
        &a,
        "spheroid_lumen_8bit.png",
        Some("k-1"),
        &[("params", r#"{"min_circularity": 0.5}"#)],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "other parameters: {v}");
    for bad in ["", "two words", &"x".repeat(256)] {
        let (s, v) = upload_keyed(&a, "spheroid_lumen_8bit.png", Some(bad), &[]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
    }
    let (s, v) = upload_keyed(
        &a,
        "spheroid_lumen_8bit.png",
        Some("k-2"),
        &[("dedupe_key", "k-3")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "header and field differ: {v}");
    assert_eq!(total(&a).await, 1, "nothing refused made a job");

    // An import by path takes the key too.
    let body = r#"{"paths": ["spheroid_core_8bit.png"], "dedupe_key": "imp-1"}"#;
    let (s, first) = a.call("POST", "/api/jobs", Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (_, again) = a.call("POST", "/api/jobs", Some(body)).await;
    assert_eq!(job_of(&again), (job_of(&first).0, true));
    a.stop().await;
}

/// A proxy in front of `to` that passes the first request on but cuts the connection before
/// its answer (the network failing after the server took it); later ones pass both ways.
async fn cutting_proxy(to: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(to).await.expect("server");
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
            if std::mem::take(&mut first) {
                // The server answered: the job exists. The client hears nothing.
                let mut buf = [0u8; 1];
                let _ = sr.read(&mut buf).await;
                drop(cw);
            } else {
                tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_retries_a_cut_connection_with_its_key_and_makes_one_job() {
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.allowed_hosts = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let proxy = cutting_proxy(a.app.as_ref().expect("app").addr()).await;
    let s = spheroseg::client::Submit {
        base: format!("http://{proxy}"),
        token: None,
        fields: vec![("project", "cli".into())],
        tries: 3,
        timeout: std::time::Duration::from_secs(30),
    };
    let done =
        spheroseg::client::submit_one(&s, &crate::util::fixture("spheroid_core_8bit.png")).await;
    let job = done.outcome.expect("taken");
    assert_eq!(done.tries, 2, "the first answer was cut off");
    assert_eq!(
        job["deduplicated"], true,
        "the second try got the first try's job"
    );
    assert_eq!(total(&a).await, 1, "one job");
    a.stop().await;
}
