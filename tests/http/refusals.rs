//! What requests refuse, and that a refused one stores nothing: uploads that are not images or
//! too large, oversize bodies, import by path outside the import directories, and malformed
//! queries and bodies with their JSON error body.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_store_nothing_and_say_why() {
    let a = api(None, 64 << 20).await;
    let png = read("spheroid_core_8bit.png");
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    // A valid header: the IHDR checksum (over type and data, bytes 12..29) is recomputed.
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let truncated = png[..png.len() / 3].to_vec();
    let big_field = "p".repeat(100 << 10);
    // Valid JSON, over the 64 KiB limit: refused for its size before it is parsed.
    let big_params = format!(r#"{{"min_area_fraction": 0.01{}}}"#, " ".repeat(100 << 10));
    let cases: Vec<Case> = vec![
        (
            vec![("image", "notes.tif", b"Image Name,Area\n".to_vec())],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-an-image",
        ),
        (
            vec![("image", "cut.png", truncated)],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "damaged-image",
        ),
        (
            vec![("image", "bomb.png", bomb)],
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "image-too-large",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("priority", "11")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("priority", "high")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("params", r#"{"min_area_fraction": 3}"#)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("params", r#"{"colour": 1}"#)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("segmenter", "magic")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![],
            vec![("priority", "5")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            vec![("image", "../../etc/passwd", b"nope".to_vec())],
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-an-image",
        ),
        // What could only fail later is refused now: a segmenter this server does not have, an
        // image too small for the builtin segmenter.
        (
            vec![("image", "ok.png", png.clone())],
            vec![("segmenter", "http")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        ),
        (
            vec![("image", "tiny.png", tiny_png(6, 40))],
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-too-small",
        ),
        // Fields other than images are read with a limit, not held whole.
        (
            vec![("image", "ok.png", png.clone())],
            vec![("project", &big_field)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "field-too-large",
        ),
        (
            vec![("image", "ok.png", png.clone())],
            vec![("params", &big_params)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "field-too-large",
        ),
    ];
    for (files, fields, status, code) in cases {
        let (s, v) = a.upload(&files, &fields).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, v) = a
        .upload(&[("image", "ok.png", png.clone())], &[("priority", "11")])
        .await;
    assert!(
        v["message"].as_str().expect("message").contains("priority"),
        "{v}"
    );
    let (_, v) = a
        .upload(
            &[("image", "ok.png", png)],
            &[("params", r#"{"min_area_fraction": 3}"#)],
        )
        .await;
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("min_area_fraction"),
        "{v}"
    );
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(
        q["counts"]["queued"].as_u64().unwrap_or(0)
            + q["counts"]["completed"].as_u64().unwrap_or(0),
        0,
        "{q}"
    );

    let (_, v) = a
        .upload(
            &[("image", "ok.png", read("spheroid_core_8bit.png"))],
            &[("segmenter", "command")],
        )
        .await;
    assert!(
        v["message"].as_str().expect("message").contains("builtin"),
        "says what is configured: {v}"
    );

    // Nothing was left behind: no job, no image file, no upload file.
    let left = crate::util::files_under(&a.dir.path().join("images"));
    assert!(left.is_empty(), "{left:?}");

    // Malformed multipart.
    let req = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
        .body(Body::from("garbage"))
        .expect("req");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    a.stop().await;
}

/// An image larger than the in-memory threshold goes through a temp file and is stored the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_streamed_through_disk() {
    let a = api(None, 64 << 20).await;
    let img = image::GrayImage::from_fn(2400, 2400, |x, y| {
        image::Luma([((x * 31 + y * 17) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Bmp)
        .expect("bmp");
    let bmp = out.into_inner();
    assert!(bmp.len() > 4 << 20, "larger than the in-memory threshold");
    a.call("POST", "/api/queue/pause", None).await; // storing is the point, not segmenting
    let (s, v) = a.upload(&[("image", "big.bmp", bmp.clone())], &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id");
    let (s, original, _) = a.get_raw(&format!("/api/jobs/{id}/image")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(original == bmp, "stored byte for byte");
    assert_eq!(a.incoming(), 0, "temp file adopted");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_413() {
    let a = api(None, 4096).await;
    let (s, v) = a
        .upload(
            &[("image", "big.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_by_path_stays_inside_the_import_dirs() {
    let a = api(None, 1 << 20).await;
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["spheroid_core_8bit.png"], "priority": 8, "project": "imported"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["jobs"][0]["priority"], 8);
    let outside = ["../cli.rs", "../../Cargo.toml", "/etc/passwd"];
    for p in outside {
        let (s, v) = a
            .call(
                "POST",
                "/api/jobs",
                Some(&format!(r#"{{"paths": ["{p}"]}}"#)),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("path-not-allowed")),
            "{p}: {v}"
        );
    }
    let (s, v) = a
        .call("POST", "/api/jobs", Some(r#"{"paths": ["nope.png"]}"#))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().expect("message").contains("paths[0]"));
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["not_an_image.txt"]}"#),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("not-an-image")),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs",
            Some(r#"{"paths": ["spheroid_core_8bit.png"], "priority": 11}"#),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = a.call("POST", "/api/jobs", Some(r#"{"files": []}"#)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    a.stop().await;
}

fn tiny_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// A query parameter of the wrong type, and a `/ml/segment` body that is not multipart, are
/// refused with the JSON error body like every other refusal, not axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_and_bodies_get_the_json_error_body() {
    let a = api(None, 1 << 20).await;
    for uri in [
        "/api/jobs?limit=x",
        "/api/jobs?state=failed&state=failed",
        "/api/export?state=completed&state=failed",
        "/api/events?since=-1&timeout=0",
    ] {
        let (s, body, kind) = a.get_raw(uri).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            (s, kind.as_deref(), v["code"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("application/json"),
                Some("bad-request")
            ),
            "{uri}: {v}"
        );
    }
    let (s, v) = a.call("POST", "/ml/segment", Some("{}")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad-request")),
        "{v}"
    );
    a.stop().await;
}
