//! Outlines corrected by hand: `PUT /api/jobs/{id}/result` checks the polygons, measures them
//! again and stores a new version beside the automatic one; versions are listed, read and
//! restored; the event goes out; the exports use the latest and say it was corrected.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::util::api::*;

/// Uploads the lumen fixture with a pixel size and waits for its result.
async fn completed(a: &Api) -> String {
    let fixture = "spheroid_lumen_8bit.png";
    let (s, v) = a
        .upload(
            &[("image", fixture, read(fixture))],
            &[("params", r#"{"pixel_size_um": 0.5}"#)],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    a.wait_state(&id, "completed").await;
    id
}

async fn put(a: &Api, id: &str, base: u64, polygons: &Value) -> (StatusCode, Value) {
    let body = json!({"base_version": base, "polygons": polygons}).to_string();
    a.call("PUT", &format!("/api/jobs/{id}/result"), Some(&body))
        .await
}

fn square(id: &str, x: f64, y: f64, s: f64) -> Value {
    json!({"id": id, "type": "external", "class": "spheroid",
           "points": [{"x": x, "y": y}, {"x": x + s, "y": y}, {"x": x + s, "y": y + s}, {"x": x, "y": y + s}]})
}

/// The events after `since` until one of type `kind` comes (long-polls, so no sleeping).
async fn wait_event(a: &Api, since: u64, kind: &str) -> Value {
    let mut since = since;
    for _ in 0..20 {
        let (_, b) = a.get(&format!("/api/events?since={since}&timeout=5")).await;
        if let Some(e) = b["events"]
            .as_array()
            .and_then(|v| v.iter().find(|e| e["type"] == kind))
        {
            return e.clone();
        }
        since = b["last_event_id"].as_u64().unwrap_or(since);
    }
    panic!("no {kind} event");
}

/// The CSV's rows as maps from header to cell.
fn csv_rows(bytes: &[u8]) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let head: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("row");
            head.iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_outlines_become_a_new_version_with_metrics_measured_again() {
    let a = api(None, 64 << 20).await;
    let id = completed(&a).await;
    let (s, v1) = a.get(&format!("/api/jobs/{id}/result")).await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    assert_eq!(
        (v1["version"].as_u64(), v1["corrected"].as_bool()),
        (Some(1), Some(false))
    );
    let automatic = v1["polygons"].clone();
    assert!(!automatic.as_array().expect("polygons").is_empty());
    let since = a.get("/api/events?since=0&timeout=0").await.1["last_event_id"]
        .as_u64()
        .expect("last id");

    // The same polygons again: the server's metrics equal the builtin's.
    let (s, v2) = put(&a, &id, 1, &automatic).await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(
        (v2["version"].as_u64(), v2["corrected"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(
        v2["metrics"], v1["metrics"],
        "measured as the builtin measured them"
    );
    assert_eq!(v2["polygons"], automatic);
    let event = wait_event(&a, since, "result_corrected").await;
    assert_eq!(event["job_id"], id.as_str());
    assert_eq!(
        (event["version"].as_u64(), event["corrected"].as_bool()),
        (Some(2), Some(true))
    );

    // Made from a version that is no longer the latest.
    let (s, stale) = put(&a, &id, 1, &automatic).await;
    assert_eq!(s, StatusCode::CONFLICT, "{stale}");
    assert_eq!(stale["code"], "stale-version");

    // Every object deleted, one outline drawn: a 40 px square, 20 µm on a side.
    let (s, v3) = put(&a, &id, 2, &json!([square("drawn-1", 10.0, 10.0, 40.0)])).await;
    assert_eq!(s, StatusCode::OK, "{v3}");
    assert_eq!(v3["version"], 3);
    let m = &v3["metrics"][0];
    assert_eq!(v3["metrics"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["area"], 1600.0);
    assert_eq!(m["perimeter"], 160.0);
    assert_eq!(m["calibrated"]["area_um2"], 400.0);
    assert_eq!(m["flags"]["touches_border"], false);

    let (_, page) = a.get("/api/jobs").await;
    let row = page["jobs"]
        .as_array()
        .and_then(|j| j.iter().find(|j| j["id"] == id.as_str()))
        .expect("listed")
        .clone();
    assert_eq!(
        (
            row["version"].as_u64(),
            row["corrected"].as_bool(),
            row["objects"].as_u64()
        ),
        (Some(3), Some(true), Some(1))
    );

    // Every version is kept and can be read.
    let (s, list) = a.get(&format!("/api/jobs/{id}/result/versions")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let list = list.as_array().expect("versions").clone();
    let summary: Vec<(u64, bool, u64, bool)> = list
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["corrected"].as_bool().expect("corrected"),
                v["objects"].as_u64().expect("objects"),
                v["latest"].as_bool().expect("latest"),
            )
        })
        .collect();
    let n = automatic
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p["type"] == "external").count()) as u64;
    assert_eq!(
        summary,
        vec![
            (1, false, n, false),
            (2, true, n, false),
            (3, true, 1, true)
        ]
    );
    assert!(list.iter().all(|v| v["created_at"].as_u64().is_some()));
    let (_, old) = a.get(&format!("/api/jobs/{id}/result?version=1")).await;
    assert_eq!(
        (old["polygons"].clone(), old["corrected"].as_bool()),
        (automatic.clone(), Some(false))
    );
    let (s, _) = a.get(&format!("/api/jobs/{id}/result?version=9")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Exports use the latest and say it was corrected.
    let (s, csv, _) = a.get_raw(&format!("/api/jobs/{id}/result.csv")).await;
    assert_eq!(s, StatusCode::OK);
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0]["Corrected"].as_str(),
            rows[0]["Area (px²)"].as_str()
        ),
        ("TRUE", "1600")
    );
    let (_, csv, _) = a
        .get_raw(&format!("/api/jobs/{id}/result.csv?table=images"))
        .await;
    assert_eq!(csv_rows(&csv)[0]["Corrected"], "TRUE");
    let (_, csv, _) = a.get_raw("/api/export?format=csv&table=objects").await;
    assert_eq!(csv_rows(&csv)[0]["Corrected"], "TRUE");
    let (_, coco) = a.get(&format!("/api/jobs/{id}/coco.json")).await;
    assert_eq!(coco["images"][0]["spheroseg_corrected"], true);
    assert_eq!(coco["annotations"].as_array().map(Vec::len), Some(1));
    let (_, rois, _) = a.get_raw(&format!("/api/jobs/{id}/rois.zip")).await;
    let rois = zip::ZipArchive::new(std::io::Cursor::new(rois)).expect("a zip");
    assert_eq!(rois.comment(), b"outlines corrected by hand in spheroseg");
    assert_eq!(rois.len(), 1);

    // Restoring the automatic version makes a fourth, equal to the first; nothing is deleted.
    let (s, v4) = a
        .call(
            "POST",
            &format!("/api/jobs/{id}/result/versions/1/restore"),
            Some(r#"{"base_version": 3}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v4}");
    assert_eq!(
        (v4["version"].as_u64(), v4["corrected"].as_bool()),
        (Some(4), Some(false))
    );
    assert_eq!(v4["polygons"], automatic);
    assert_eq!(v4["metrics"], v1["metrics"]);
    let (_, list) = a.get(&format!("/api/jobs/{id}/result/versions")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(4));
    assert_eq!(list[3]["restored_from"], 1);
    let (_, v3again) = a.get(&format!("/api/jobs/{id}/result?version=3")).await;
    assert_eq!(v3again["metrics"], v3["metrics"]);
    let (_, csv, _) = a.get_raw(&format!("/api/jobs/{id}/result.csv")).await;
    assert!(csv_rows(&csv).iter().all(|r| r["Corrected"] == "FALSE"));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_outlines_name_the_polygon_and_change_nothing() {
    let a = api(None, 64 << 20).await;
    let id = completed(&a).await;
    let bow = json!([{"id": "bow", "type": "external", "class": "spheroid",
        "points": [[10, 10], [50, 50], [50, 10], [10, 50]]}]);
    let outside = json!([square("far", 10.0, 10.0, 5000.0)]);
    let two = json!([{"id": "thin", "type": "external", "class": "spheroid", "points": [[1, 1], [5, 5], [1, 1]]}]);
    let flat = json!([{"id": "flat", "type": "external", "class": "spheroid", "points": [[1, 1], [5, 1], [9, 1]]}]);
    let orphan = json!([{"id": "hole-x", "type": "internal", "class": "hole", "parentId": "nobody",
        "points": [[1, 1], [5, 1], [5, 5]]}]);
    let twice = json!([
        square("same", 1.0, 1.0, 5.0),
        square("same", 20.0, 20.0, 5.0)
    ]);
    let astray = json!([square("outline", 10.0, 10.0, 20.0),
        {"id": "astray", "type": "internal", "class": "hole", "parentId": "outline",
         "points": [[50, 50], [60, 50], [60, 60]]}]);
    for (polygons, name) in [
        (bow, "bow"),
        (outside, "far"),
        (two, "thin"),
        (flat, "flat"),
        (orphan, "hole-x"),
        (twice, "same"),
        (astray, "astray"),
    ] {
        let (s, v) = put(&a, &id, 1, &polygons).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
        let msg = v["message"].as_str().expect("message");
        assert!(msg.contains(name), "{name}: {msg}");
    }
    let (s, v) = a
        .call(
            "PUT",
            &format!("/api/jobs/{id}/result"),
            Some(r#"{"polygons": 3}"#),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let req = Request::put(format!("/api/jobs/{id}/result"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({"base_version": 1, "polygons": []}).to_string(),
        ))
        .expect("request");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A page on another site may not correct a result.
    let req = Request::put(format!("/api/jobs/{id}/result"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(
            json!({"base_version": 1, "polygons": []}).to_string(),
        ))
        .expect("request");
    let (s, _, _) = a.send(req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, list) = a.get(&format!("/api/jobs/{id}/result/versions")).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "nothing was stored: {list}"
    );

    // A job without a result has nothing to correct.
    let (s, v) = put(&a, "0190d6a4-0000-7000-8000-000000000000", 1, &json!([])).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    a.stop().await;
}
