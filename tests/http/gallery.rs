//! The gallery: thumbnails with outlines (size bound, ETag and cache, 404 and 409, the Host
//! check, released with the image) and the listing of completed jobs with their review.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

/// A GET with `headers`: status, the response's headers and body.
async fn get_with(
    a: &Api,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = a.respond(req.body(Body::empty()).expect("request")).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body.to_vec())
}

/// The thumbnail files in the data directory's cache.
fn thumbnails(a: &Api) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(a.dir.path().join("previews"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains("-thumb-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_is_small_drawn_cached_and_revalidated() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .upload(
            &[("image", "lumen.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;
    let uri = format!("/api/jobs/{id}/thumbnail");

    let (s, h, jpeg) = get_with(&a, &uri, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "image/jpeg");
    assert!(
        h[header::CACHE_CONTROL]
            .to_str()
            .expect("ascii")
            .contains("no-cache")
    );
    let etag = h[header::ETAG].to_str().expect("ascii").to_owned();
    let img = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
    assert_eq!(img.dimensions(), (256, 256), "384 px scaled to 256");
    assert!(
        img.pixels()
            .any(|p| p.0[0] > 180 && p.0[1] > 150 && p.0[2] < 90),
        "the yellow outline is drawn"
    );
    assert_eq!(thumbnails(&a).len(), 1, "cached as a file");

    // A cache hit: what the file says is what is served, nothing drawn again.
    let file = thumbnails(&a).remove(0);
    std::fs::write(&file, b"cached").expect("write");
    let (s, _, body) = get_with(&a, &uri, &[]).await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"cached"[..]));

    // The browser's revalidation: the same ETag is a 304 with no body.
    let (s, h, body) = get_with(&a, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(h[header::ETAG].to_str().expect("ascii"), etag);
    let (s, _, _) = get_with(&a, &uri, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(s, StatusCode::OK);

    // A corrected result is another picture: the old ETag no longer matches, and restoring
    // version 1 makes a third version with an ETag of its own.
    let square = serde_json::json!([{"id": "a", "type": "external", "class": "spheroid",
        "points": [[10, 10], [60, 10], [60, 60], [10, 60]]}]);
    let body = serde_json::json!({"base_version": 1, "polygons": square}).to_string();
    let (s, v) = a
        .call("PUT", &format!("/api/jobs/{id}/result"), Some(&body))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, h, _) = get_with(&a, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(s, StatusCode::OK, "a corrected result is drawn again");
    let corrected = h[header::ETAG].to_str().expect("ascii").to_owned();
    assert_ne!(corrected, etag);
    let (s, v) = a
        .call(
            "POST",
            &format!("/api/jobs/{id}/result/versions/1/restore"),
            Some(r#"{"base_version": 2}"#),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let (s, h, _) = get_with(&a, &uri, &[("if-none-match", &corrected)]).await;
    assert_eq!(s, StatusCode::OK);
    let restored = h[header::ETAG].to_str().expect("ascii").to_owned();
    assert!(restored != corrected && restored != etag, "{restored}");
    let (s, _, _) = get_with(&a, &uri, &[("if-none-match", &restored)]).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);

    // Another size is another thumbnail, with another ETag; sizes out of bounds are refused.
    let (s, h, jpeg) = get_with(&a, &format!("{uri}?size=64"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(h[header::ETAG].to_str().expect("ascii"), etag);
    let img = image::load_from_memory(&jpeg).expect("decodes");
    assert_eq!((img.width(), img.height()), (64, 64));
    for size in ["8", "513", "100000"] {
        let (s, v) = a.get(&format!("{uri}?size={size}")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
            "size {size}: {v}"
        );
        assert!(
            v["message"]
                .as_str()
                .expect("message")
                .contains("16 to 512")
        );
    }
    let (s, v) = a.get(&format!("{uri}?size=big")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Deleted with its job: once no job refers to the image, the collector takes the cache.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"delete","filter":{"state":"completed"}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let queue = a.state.service.queue.clone();
    a.state
        .service
        .images
        .collect_garbage(|h| queue.image_referenced(h).unwrap_or(true));
    assert!(thumbnails(&a).is_empty(), "released with the image");
    let (s, _) = a.get(&uri).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_needs_a_known_completed_job_and_this_host() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .get("/api/jobs/0190d0a4-0000-7000-8000-000000000000/thumbnail")
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found")),
        "{v}"
    );
    let (s, _) = a.get("/api/jobs/nonsense/thumbnail").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = a
        .upload(
            &[("image", "waits.png", read("spheroid_core_8bit.png"))],
            &[],
        )
        .await;
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    let (s, v) = a.get(&format!("/api/jobs/{id}/thumbnail")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("no-result")),
        "{v}"
    );

    let req = Request::get(format!("/api/jobs/{id}/thumbnail"))
        .header(header::HOST, "evil.example:5001")
        .body(Body::empty())
        .expect("request");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::MISDIRECTED_REQUEST);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gallery_lists_completed_jobs_with_their_review() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .upload(
            &[
                ("image", "P1_A01.png", read("spheroid_lumen_8bit.png")),
                ("image", "P1_A02.png", read("spheroid_core_8bit.png")),
            ],
            &[("project", "plate-1")],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    for j in v["jobs"].as_array().expect("jobs") {
        a.wait_state(j["id"].as_str().expect("id"), "completed")
            .await;
    }
    let (s, v) = a.get("/api/gallery?project=plate-1&limit=1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["job"]["state"], "completed");
    assert_eq!(items[0]["job"]["project"], "plate-1");
    let review = &items[0]["review"];
    assert_eq!(review["objects"], items[0]["job"]["objects"]);
    assert!(review["flags"].is_array() && review["touching_border"].is_u64());
    let next = v["next"].as_str().expect("a second page").to_owned();
    let (s, v) = a
        .get(&format!("/api/gallery?project=plate-1&cursor={next}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().expect("items").len(), 1);
    let (s, v) = a.get("/api/gallery?project=other").await;
    assert_eq!(
        (s, v["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    for bad in ["limit=0", "limit=501"] {
        let (s, _) = a.get(&format!("/api/gallery?{bad}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    a.stop().await;
}
