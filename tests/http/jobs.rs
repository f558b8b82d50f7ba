//! Jobs and their results over HTTP: an upload through to its results and exports, job actions,
//! and the replaced design's routes. What an upload refuses is in `refusals.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_result_csv_mask_and_image() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a
        .upload(
            &[
                ("image", "lumen.png", read("spheroid_lumen_8bit.png")),
                ("image", "plain.tif", read("spheroid_plain_16bit.tif")),
            ],
            &[
                ("priority", "7"),
                ("project", "screen-1"),
                ("params", r#"{"pixel_size_um": 0.65}"#),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["priority"], 7);
    assert!(jobs[0]["position"].is_number() || jobs[0]["state"] != "queued");
    let id = jobs[0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;

    let (s, job) = a.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (job["project"].as_str(), job["image"]["name"].as_str()),
        (Some("screen-1"), Some("lumen.png"))
    );
    let (s, r) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["polygons"][0]["type"], "external");
    assert_eq!(r["polygons"][1]["type"], "internal");
    assert!(
        r["metrics"][0]["calibrated"]["area_um2"]
            .as_f64()
            .expect("µm²")
            > 0.0
    );

    let (s, csv, kind) = a.get_raw(&format!("/api/jobs/{id}/result.csv")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.expect("type").starts_with("text/csv"));
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(
        csv.starts_with("Image Name,Job ID,Plate,Well,Metadata,Object,Area (px²),Area (µm²),"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .nth(1)
            .expect("row")
            .starts_with(&format!("lumen.png,{id},,,,1,"))
    );
    let (s, csv, _) = a
        .get_raw(&format!("/api/jobs/{id}/result.csv?table=images"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("Image Name,Job ID,Plate,Well,Metadata,Width (px),Height (px),"));
    let (s, _, _) = a
        .get_raw(&format!("/api/jobs/{id}/result.csv?table=nope"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, csv, _) = a
        .get_raw(&format!("/api/jobs/{id}/result.csv?table=legacy"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(csv.starts_with("Image Name,Image ID,Image Resolution,Object ID,Area"));
    assert!(
        csv.lines()
            .nth(1)
            .expect("row")
            .starts_with(&format!("lumen.png,{id},384x384,polygon-1,"))
    );

    for (route, kind, magic) in [
        ("coco.json", "application/json", &b"{"[..]),
        ("rois.zip", "application/zip", b"PK"),
        ("labels.png", "image/png", b"\x89PNG"),
        ("overlay.png", "image/png", b"\x89PNG"),
    ] {
        let (s, body, got) = a.get_raw(&format!("/api/jobs/{id}/{route}")).await;
        assert_eq!((s, got.as_deref()), (StatusCode::OK, Some(kind)), "{route}");
        assert!(body.starts_with(magic), "{route}");
    }
    let (_, png, _) = a.get_raw(&format!("/api/jobs/{id}/overlay.png")).await;
    let overlay = image::load_from_memory(&png).expect("decodes").to_rgb8();
    assert_eq!(overlay.dimensions(), (384, 384));
    assert!(
        overlay.pixels().any(|p| p.0 == [255, 220, 0]),
        "the outline is drawn"
    );
    let (s, png, kind) = a.get_raw(&format!("/api/jobs/{id}/mask.png")).await;
    assert_eq!((s, kind.as_deref()), (StatusCode::OK, Some("image/png")));
    assert_eq!(&png[1..4], b"PNG");
    let (s, original, _) = a.get_raw(&format!("/api/jobs/{id}/image")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(original, read("spheroid_lumen_8bit.png"));

    let (s, png, kind) = a.get_raw(&format!("/api/jobs/{id}/preview.png")).await;
    assert_eq!((s, kind.as_deref()), (StatusCode::OK, Some("image/png")));
    let p = image::load_from_memory(&png).expect("preview decodes");
    assert_eq!((p.width(), p.color()), (384, image::ColorType::L8));
    let other = jobs[1]["id"].as_str().expect("id").to_owned();
    a.wait_state(&other, "completed").await;
    let (s, png, _) = a.get_raw(&format!("/api/jobs/{other}/preview.png")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        image::load_from_memory(&png).expect("decodes").color(),
        image::ColorType::L8,
        "16-bit TIFF as 8-bit PNG"
    );

    // The metrics of the project, streamed as CSV.
    let (s, csv, _) = a
        .get_raw("/api/export?project=screen-1&state=completed&format=csv&table=legacy")
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(csv.lines().count(), 3, "header and one row per job: {csv}");
    assert!(
        csv.lines()
            .next()
            .expect("header")
            .ends_with("Feret Diameter Min (um)")
    );

    let (s, csv, _) = a.get_raw("/api/export?project=screen-1").await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(
        csv.starts_with("Image Name,Job ID,Plate,Well,Metadata,Object,"),
        "objects by default"
    );
    // A selection: only the jobs named.
    let (s, csv, _) = a
        .get_raw(&format!("/api/export?ids={id}&table=images"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .expect("row")
            .starts_with(&format!("lumen.png,{id},"))
    );
    let (s, _, _) = a.get_raw("/api/export?ids=nope").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, xlsx, kind) = a.get_raw("/api/export?project=screen-1&format=xlsx").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        kind.as_deref(),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    assert_eq!(&xlsx[..2], b"PK", "a zip container");
    let (s, coco, kind) = a.get_raw("/api/export?project=screen-1&format=coco").await;
    assert_eq!(
        (s, kind.as_deref()),
        (StatusCode::OK, Some("application/json"))
    );
    let coco: serde_json::Value = serde_json::from_slice(&coco).expect("json");
    assert_eq!(coco["images"].as_array().map(Vec::len), Some(2));
    assert_eq!(coco["categories"][0]["name"], "spheroid");

    // The project archive, streamed, with the originals.
    let (s, zip, kind) = a
        .get_raw("/api/export?project=screen-1&format=zip&originals=true")
        .await;
    assert_eq!(
        (s, kind.as_deref()),
        (StatusCode::OK, Some("application/zip"))
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.expect("a name").into_owned())
        .collect();
    for name in [
        "objects.csv".to_owned(),
        "images.csv".to_owned(),
        "coco.json".to_owned(),
        format!("results/{id}/lumen.json"),
        format!("results/{id}/lumen_mask.png"),
        format!("results/{id}/lumen_labels.png"),
        format!("results/{id}/lumen_rois.zip"),
        format!("results/{id}/lumen_overlay.png"),
        format!("originals/{id}/lumen.png"),
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let mut entry = |name: &str| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(name).expect(name), &mut out)
            .expect("read");
        out
    };
    assert_eq!(
        entry(&format!("originals/{id}/lumen.png")),
        read("spheroid_lumen_8bit.png")
    );
    let coco: serde_json::Value = serde_json::from_slice(&entry("coco.json")).expect("json");
    assert_eq!(coco["images"].as_array().map(Vec::len), Some(2));
    assert!(
        coco["annotations"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    let images = String::from_utf8(entry("images.csv")).expect("utf-8");
    assert_eq!(images.lines().count(), 3, "{images}");

    // The same, gzip-compressed (browsers ask for it): the stream must end cleanly.
    let (s, gz, _) = a
        .send(
            Request::get("/api/export?project=screen-1")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");

    // Listing: by project, by state, paged.
    let (_, page) = a.get("/api/jobs?project=screen-1&limit=1").await;
    assert_eq!(page["jobs"].as_array().expect("jobs").len(), 1);
    let next = page["next"].as_str().expect("cursor").to_owned();
    let (_, page2) = a
        .get(&format!("/api/jobs?project=screen-1&limit=1&cursor={next}"))
        .await;
    assert_ne!(page["jobs"][0]["id"], page2["jobs"][0]["id"]);
    let (s, v) = a.get("/api/jobs?state=running").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // By file name, ignoring case, on the server (so jobs beyond the pages loaded are found).
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["image"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, v) = a.get("/api/jobs?name=LUMEN").await;
    assert_eq!(names(&v), ["lumen.png"], "{v}");
    let (_, v) = a.get("/api/jobs?name=.tif&project=screen-1").await;
    assert_eq!(names(&v), ["plain.tif"], "{v}");
    let (_, v) = a.get("/api/jobs?name=nothing-like-this").await;
    assert!(names(&v).is_empty(), "{v}");
    let (s, v) = a.get(&format!("/api/jobs?name={}", "x".repeat(256))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Prometheus text with the queue gauges and the job counters.
    let _ = spheroseg::telemetry::prometheus();
    let (s, text, kind) = a.get_raw("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.expect("type").starts_with("text/plain"));
    let text = String::from_utf8(text).expect("utf-8");
    for name in [
        "spheroseg_jobs{",
        "spheroseg_database_bytes",
        "spheroseg_workers_total",
        "spheroseg_http_requests_total",
        "spheroseg_queue_transactions_total",
        "spheroseg_wal_syncs_total",
        "spheroseg_wal_capacity_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let syncs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spheroseg_wal_syncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a sync count");
    assert!(syncs >= 1.0, "the upload above was synced: {syncs}");

    // The replaced design's routes.
    let (_, legacy) = a.get(&format!("/api/segmentation/job/{id}")).await;
    assert_eq!(
        (legacy["status"].as_str(), legacy["isCompleted"].as_bool()),
        (Some("completed"), Some(true))
    );
    assert_eq!(legacy["jobId"], id.as_str());
    let (_, status) = a.get("/api/segmentation/queue/status").await;
    for k in [
        "waiting",
        "active",
        "completed",
        "failed",
        "delayed",
        "paused",
    ] {
        assert!(status["queue"].get(k).is_some(), "queue.{k}: {status}");
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_actions_and_their_errors() {
    let a = api(None, 64 << 20).await;
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = a
        .upload(&[("image", "a.png", read("spheroid_core_8bit.png"))], &[])
        .await;
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(
        (q["paused"].as_bool(), q["counts"]["queued"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(q["workers_total"], 2);

    let (s, v) = a
        .call(
            "PATCH",
            &format!("/api/jobs/{id}"),
            Some(r#"{"priority": 9}"#),
        )
        .await;
    assert_eq!((s, v["priority"].as_u64()), (StatusCode::OK, Some(9)));
    let (s, v) = a
        .call(
            "PATCH",
            &format!("/api/jobs/{id}"),
            Some(r#"{"priority": 0}"#),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field"))
    );
    let (s, _) = a
        .call("PATCH", &format!("/api/jobs/{id}"), Some("{nope"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (s, v) = a.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid-state"))
    );
    let (s, v) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("no-result"))
    );

    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = a.call("POST", &format!("/api/jobs/{id}/retry"), None).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("queued")));
    a.wait_state(&id, "completed").await;
    let (s, v) = a.call("POST", &format!("/api/jobs/{id}/retry"), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid-state")),
        "{v}"
    );

    for uri in [
        "/api/jobs/0190b5c2-0000-7000-8000-000000000000",
        "/api/jobs/not-an-id",
        "/api/nothing",
    ] {
        let (s, v) = a.get(uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
    let (s, v) = a.call("POST", "/api/ml/nothing/reset", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = a.get("/api/ml").await;
    assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    // Bulk: cancel everything queued (none now), delete the cancelled ones.
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"cancel","filter":{"state":"queued"}}"#),
        )
        .await;
    assert_eq!(
        (s, v["affected"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(r#"{"action":"retry","filter":{"state":"completed"}}"#),
        )
        .await;
    assert_eq!(
        (s, v["matched"].as_u64(), v["affected"].as_u64()),
        (StatusCode::OK, Some(1), Some(0)),
        "{v}"
    );
    let (s, v) = a
        .call("POST", "/api/jobs/bulk", Some(r#"{"action":"explode"}"#))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
        "{v}"
    );
    let (s, v) = a.get("/api/events?since=0&timeout=1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["events"].as_array().is_some_and(|e| !e.is_empty()), "{v}");
    a.stop().await;
}
