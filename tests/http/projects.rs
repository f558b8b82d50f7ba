//! Projects remember a pixel size (`/api/projects`); their jobs that give none take it, and the
//! results and exports say where each pixel size came from.

use axum::http::StatusCode;

use crate::util::api::*;

async fn submit(a: &Api, fields: &[(&str, &str)]) -> String {
    let fixture = "spheroid_lumen_8bit.png";
    let (s, v) = a.upload(&[("image", fixture, read(fixture))], fields).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["jobs"][0]["id"].as_str().expect("id").to_owned()
}

async fn pixel_size(a: &Api, id: &str) -> serde_json::Value {
    a.wait_state(id, "completed").await;
    let (s, r) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r["pixel_size"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_remembers_its_pixel_size_and_its_jobs_take_it() {
    let a = api(None, 64 << 20).await;
    let before = submit(&a, &[("project", "screen-1")]).await;
    assert_eq!(pixel_size(&a, &before).await, serde_json::Value::Null);

    let (s, v) = a
        .call(
            "PUT",
            "/api/projects/screen-1",
            Some(r#"{"pixel_size_um": 0.65, "objective": " 10× objective "}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "screen-1");
    assert_eq!(v["objective"], "10× objective", "trimmed: {v}");
    let (_, one) = a.get("/api/projects/screen-1").await;
    assert_eq!(one, v);

    // A job of the project that gives no pixel size takes the project's.
    let taken = submit(&a, &[("project", "screen-1")]).await;
    let (_, job) = a.get(&format!("/api/jobs/{taken}")).await;
    assert_eq!(job["params"]["pixel_size_from"], "project", "{job}");
    let px = pixel_size(&a, &taken).await;
    assert_eq!(px["source"], "project", "{px}");
    assert!((px["um"].as_f64().expect("um") - 0.65).abs() < 1e-6, "{px}");
    // One given with the job wins, and says so; a client cannot claim another origin.
    let own = submit(
        &a,
        &[
            ("project", "screen-1"),
            (
                "params",
                r#"{"pixel_size_um": 1.3, "pixel_size_from": "watch"}"#,
            ),
        ],
    )
    .await;
    let px = pixel_size(&a, &own).await;
    assert_eq!(px["source"], "job", "{px}");
    assert!((px["um"].as_f64().expect("um") - 1.3).abs() < 1e-6, "{px}");
    // Another project is not touched; the jobs made before the setting keep theirs.
    let other = submit(&a, &[("project", "screen-2")]).await;
    assert_eq!(pixel_size(&a, &other).await, serde_json::Value::Null);
    assert_eq!(pixel_size(&a, &before).await, serde_json::Value::Null);

    // A rerun that keeps the pixel size keeps where it came from.
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/jobs/{taken}/rerun"),
            Some(r#"{"params": {"fill_holes_below": 0.05}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let rerun = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(pixel_size(&a, &rerun).await["source"], "project");

    // The objects table says it too, with the µm columns filled.
    let (s, csv, _) = a
        .get_raw("/api/export?project=screen-1&table=objects")
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(csv).expect("utf-8");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).expect(n);
    let sources: Vec<String> = lines
        .map(|l| {
            l.split(',')
                .nth(col("Pixel Size Source"))
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for want in ["project", "job"] {
        assert!(sources.iter().any(|s| s == want), "{want} in {sources:?}");
    }

    // The list holds both projects, the one with settings carrying them.
    let (_, list) = a.get("/api/projects").await;
    let names: Vec<&str> = list["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["screen-1", "screen-2"], "{list}");
    assert!((list["projects"][0]["pixel_size_um"].as_f64().expect("um") - 0.65).abs() < 1e-6);
    assert_eq!(
        list["projects"][1]["pixel_size_um"],
        serde_json::Value::Null
    );

    // Forgetting the settings: later jobs go back to the file's.
    let (s, _) = a
        .call(
            "PUT",
            "/api/projects/screen-1",
            Some(r#"{"pixel_size_um": null}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let after = submit(&a, &[("project", "screen-1")]).await;
    assert_eq!(pixel_size(&a, &after).await, serde_json::Value::Null);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_settings_are_checked_and_refused_whole() {
    let a = api(None, 64 << 20).await;
    for (body, status, field) in [
        (
            r#"{"pixel_size_um": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "pixel_size_um",
        ),
        (
            r#"{"pixel_size_um": 1e9}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "pixel_size_um",
        ),
        (r#"{"pixel": 0.65}"#, StatusCode::BAD_REQUEST, ""),
        (r#"not json"#, StatusCode::BAD_REQUEST, ""),
    ] {
        let (s, v) = a.call("PUT", "/api/projects/p", Some(body)).await;
        assert_eq!(s, status, "{body}: {v}");
        if !field.is_empty() {
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(field), "names {field}: {v}");
        }
    }
    let (s, v) = a
        .call(
            "PUT",
            "/api/projects/%20padded%20",
            Some(r#"{"pixel_size_um": 1}"#),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A text/plain body is how another site would post: refused before it is read.
    let req = axum::http::Request::put("/api/projects/p")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from(r#"{"pixel_size_um": 2}"#))
        .expect("request");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, list) = a.get("/api/projects").await;
    assert_eq!(
        list["projects"],
        serde_json::json!([]),
        "nothing stored: {list}"
    );
    a.stop().await;
}
