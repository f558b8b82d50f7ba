//! Running a job again with other parameters: `POST /api/jobs/{id}/rerun`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

/// Uploads `fixture` with `fields` and returns the job's id.
async fn submit(a: &Api, fixture: &str, fields: &[(&str, &str)]) -> String {
    let (s, v) = a.upload(&[("image", fixture, read(fixture))], fields).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["jobs"][0]["id"].as_str().expect("id").to_owned()
}

/// How many jobs the queue holds.
async fn job_count(a: &Api) -> usize {
    let (_, page) = a.get("/api/jobs?limit=1000").await;
    page["jobs"].as_array().expect("jobs").len()
}

/// Image files in the store (not temp files).
fn stored_images(a: &Api) -> usize {
    crate::util::files_under(&a.dir.path().join("images"))
        .iter()
        .filter(|p| !p.starts_with(a.dir.path().join("images/incoming")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_segments_the_same_image_with_the_changed_parameters() {
    let a = api(None, 64 << 20).await;
    let id = submit(
        &a,
        "spheroid_lumen_8bit.png",
        &[
            ("priority", "7"),
            ("project", "screen-1"),
            (
                "params",
                r#"{"pixel_size_um": 0.65, "fill_holes_below": 0.05}"#,
            ),
        ],
    )
    .await;
    a.wait_state(&id, "completed").await;
    let (_, original) = a.get(&format!("/api/jobs/{id}")).await;
    assert!(original["objects"].as_u64().expect("objects") >= 1);
    assert_eq!(stored_images(&a), 1);

    // Without a pixel size the area minimum is a fraction of the image; all of it drops
    // everything.
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/jobs/{id}/rerun"),
            Some(r#"{"params": {"pixel_size_um": null, "min_area_fraction": 1.0}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{v}");
    let rerun = jobs[0]["id"].as_str().expect("id").to_owned();
    assert_ne!(rerun, id);
    assert_eq!(jobs[0]["priority"], 7, "the original's priority: {v}");
    assert_eq!(jobs[0]["deduplicated"], false);
    a.wait_state(&rerun, "completed").await;
    let (_, job) = a.get(&format!("/api/jobs/{rerun}")).await;
    assert_eq!(job["rerun_of"], id.as_str());
    assert_eq!(
        job["image"], original["image"],
        "the same image, hash and name"
    );
    assert_eq!(job["project"], "screen-1");
    assert_eq!(job["metadata"], original["metadata"]);
    assert_eq!(job["segmenter"], original["segmenter"]);
    assert_eq!(
        (
            &job["params"]["pixel_size_um"],
            &job["params"]["min_area_fraction"]
        ),
        (&serde_json::Value::Null, &serde_json::json!(1.0))
    );
    assert_eq!(
        job["params"]["fill_holes_below"], 0.05,
        "what the rerun does not change is the original's"
    );
    assert_eq!(job["objects"], 0, "the changed parameters are in effect");
    let (_, r) = a.get(&format!("/api/jobs/{rerun}/result")).await;
    assert_eq!(r["params"]["min_area_fraction"], 1.0, "{}", r["params"]);
    assert_eq!(r["polygons"].as_array().map(Vec::len), Some(0));
    assert_eq!(stored_images(&a), 1, "nothing stored again");
    let (_, first) = a.get(&format!("/api/jobs/{id}")).await;
    assert!(first["rerun_of"].is_null(), "the original is unchanged");

    // Only a priority, or nothing at all: the original's parameters.
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/jobs/{id}/rerun"),
            Some(r#"{"priority": 2}"#),
        )
        .await;
    assert_eq!(
        (s, &v["jobs"][0]["priority"]),
        (StatusCode::ACCEPTED, &2.into()),
        "{v}"
    );
    let again = v["jobs"][0]["id"].as_str().expect("id");
    let (_, job) = a.get(&format!("/api/jobs/{again}")).await;
    assert_eq!(job["params"], original["params"]);
    assert_eq!(job["rerun_of"], id.as_str());
    // A rerun of a rerun links to the job it runs again.
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/jobs/{rerun}/rerun"),
            Some(r#"{"params": {}, "segmenter": "builtin"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let third = v["jobs"][0]["id"].as_str().expect("id");
    let (_, job) = a.get(&format!("/api/jobs/{third}")).await;
    assert_eq!(
        (&job["rerun_of"], &job["params"]["min_area_fraction"]),
        (&rerun.as_str().into(), &1.0.into())
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_refuses_what_it_cannot_do_and_enqueues_nothing() {
    let a = api(None, 64 << 20).await;
    let id = submit(&a, "spheroid_core_8bit.png", &[]).await;
    a.wait_state(&id, "completed").await;
    let uri = format!("/api/jobs/{id}/rerun");
    let cases = [
        (
            "/api/jobs/01a2f0c0-0000-7000-8000-000000000000/rerun",
            "{}",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "/api/jobs/not-a-job/rerun",
            "{}",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            &uri,
            r#"{"params": {"min_area_fraction": 2}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"params": {"min_circularity": 0.9, "max_circularity": 0.5}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"params": {"smoothness": 2}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"params": {"keep_largest": "two"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"priority": 11}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"segmenter": "gpu-box"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            &uri,
            r#"{"params": "#,
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            &uri,
            r#"{"parameters": {}}"#,
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ];
    for (uri, body, status, code) in cases {
        let (s, v) = a.call("POST", uri, Some(body)).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| m.len() > 10), "{v}");
    }
    let (_, v) = a
        .call(
            "POST",
            &uri,
            Some(r#"{"params": {"min_area_fraction": 2}}"#),
        )
        .await;
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("params.min_area_fraction: ")),
        "the same error body as an upload's: {v}"
    );
    // JSON only when it says so.
    let req = Request::post(&uri)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(job_count(&a).await, 1, "nothing enqueued");

    // The image is gone (removed behind the store's back): nothing to run again.
    let (_, job) = a.get(&format!("/api/jobs/{id}")).await;
    let hash = job["image"]["hash"].as_str().expect("hash");
    let file = a.dir.path().join("images").join(&hash[..2]).join(hash);
    std::fs::remove_file(&file).expect("the stored image");
    let (s, v) = a.call("POST", &uri, Some("{}")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("image-missing")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("upload it again")),
        "{v}"
    );
    assert_eq!(job_count(&a).await, 1, "nothing enqueued");
    // Its pictures say so too, as a 404 naming no server path.
    for route in ["image", "preview.png", "thumbnail", "overlay.png"] {
        let (s, v) = a
            .call("GET", &format!("/api/jobs/{id}/{route}"), None)
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("image-missing")),
            "{route}: {v}"
        );
        let message = v["message"].as_str().unwrap_or_default();
        assert!(!message.contains(hash), "{route}: {message}");
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_needs_the_token_and_this_servers_own_page() {
    let a = api(Some("s3cret"), 64 << 20).await;
    let (kind, body) = multipart(
        &[("image", "core.png", read("spheroid_core_8bit.png"))],
        &[],
    );
    let req = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, kind)
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from(body))
        .expect("request");
    let (s, body, _) = a.send(req).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let uri = format!(
        "/api/jobs/{}/rerun",
        v["jobs"][0]["id"].as_str().expect("id")
    );
    let rerun = |headers: &[(&str, &str)]| {
        let mut req = Request::post(&uri).header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Body::from(r#"{"params": {"keep_largest": 1}}"#))
            .expect("request")
    };
    let bearer = ("authorization", "Bearer s3cret");
    for (headers, status) in [
        (vec![], StatusCode::UNAUTHORIZED),
        (
            vec![("authorization", "Bearer s3creT")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            vec![bearer, ("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![bearer, ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![bearer, ("host", "evil.example:5001")],
            StatusCode::MISDIRECTED_REQUEST,
        ),
    ] {
        let (s, body, _) = a.send(rerun(&headers)).await;
        assert_eq!(s, status, "{headers:?}: {}", String::from_utf8_lossy(&body));
    }
    // The page's own request, and a script's.
    for headers in [
        vec![
            bearer,
            ("origin", "http://127.0.0.1:5001"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![bearer],
    ] {
        let (s, body, _) = a.send(rerun(&headers)).await;
        assert_eq!(
            s,
            StatusCode::ACCEPTED,
            "{headers:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let req = Request::get("/api/jobs")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .expect("request");
    let (_, body, _) = a.send(req).await;
    let page: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        page["jobs"].as_array().map(Vec::len),
        Some(3),
        "the original and the two accepted reruns only"
    );
    a.stop().await;
}
