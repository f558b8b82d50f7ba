//! Uploads under pressure: identical images at the same moment, a full decode budget (which the
//! workers share), a full disk, and the garbage collector running while the same image comes and
//! goes.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::util::api::*;
use crate::util::{SmallDisk, files_under};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_uploads_at_the_same_moment_all_succeed() {
    let a = std::sync::Arc::new(api(None, 64 << 20).await);
    let png = read("spheroid_lumen_8bit.png");
    let uploads: Vec<_> = (0..24)
        .map(|i| {
            let (a, png) = (std::sync::Arc::clone(&a), png.clone());
            tokio::spawn(async move {
                a.upload(&[("image", &format!("copy-{i}.png"), png)], &[])
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for u in uploads {
        let (s, v) = u.await.expect("task");
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.insert(v["jobs"][0]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 24, "one job per upload");
    let images: Vec<_> = files_under(&a.dir.path().join("images"));
    assert_eq!(images.len(), 1, "one image file, no temp files: {images:?}");
    assert_eq!(std::fs::read(&images[0]).expect("read"), png);
    for id in &ids {
        a.wait_state(id, "completed").await;
    }
    std::sync::Arc::into_inner(a)
        .expect("last handle")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_decode_budget_answers_503_with_retry_after() {
    let mut a = api(None, 64 << 20).await;
    let budget = spheroseg::segment::DecodeBudget::new(1 << 20);
    a.state.service.images = a.state.service.images.clone().with_budget(budget.clone());
    let held = budget
        .reserve(1 << 20, std::time::Duration::ZERO)
        .expect("all of it");
    let (kind, body) = multipart(&[("image", "a.png", read("spheroid_core_8bit.png"))], &[]);
    let req = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, kind)
        .body(Body::from(body))
        .expect("request");
    let resp = a.respond(req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
    let v: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(v["code"], "busy", "{v}");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("try again"),
        "{v}"
    );
    drop(held);
    let (s, v) = a
        .upload(&[("image", "a.png", read("spheroid_core_8bit.png"))], &[])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_full_disk_is_507_and_says_how_much_is_free() {
    let Some(disk) = SmallDisk::new(12) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let data = tempfile::tempdir_in(disk.0.path()).expect("data dir");
    let data_path = data.path().to_owned();
    let a = api_in(data, None, 64 << 20).await;
    // Fill the disk (the 8 MiB write-ahead log is already allocated).
    let filler = crate::util::fill_disk(&data_path);
    let (s, v) = a
        .upload(
            &[("image", "big.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::INSUFFICIENT_STORAGE, Some("disk-full")),
        "{v}"
    );
    let message = v["message"].as_str().expect("message");
    assert!(
        message.starts_with("disk full: 0 MB free on")
            && message.contains(&*data_path.to_string_lossy()),
        "{message}"
    );
    let (_, q) = a.get("/api/queue").await;
    assert_eq!(q["counts"]["queued"], 0, "nothing was enqueued");
    // Once there is room again, the same upload goes through.
    std::fs::remove_file(&filler).expect("free the disk");
    let (s, v) = a
        .upload(
            &[("image", "big.png", read("spheroid_lumen_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    a.stop().await;
    drop(disk);
}

/// The garbage collector runs flat out while the same image is uploaded, cancelled and deleted
/// again and again: every acknowledged job's image is there when its 202 comes back, and an image
/// goes only once no job refers to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_never_takes_an_image_an_acknowledged_job_refers_to() {
    let a = std::sync::Arc::new(api(None, 64 << 20).await);
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (images, queue) = (
            a.state.service.images.clone(),
            a.state.service.queue.clone(),
        );
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                removed += images.collect_garbage(|h| queue.image_referenced(h).unwrap_or(true));
            }
            removed
        })
    };
    let png = read("spheroid_core_8bit.png");
    for round in 0..40 {
        let (s, v) = a.upload(&[("image", "again.png", png.clone())], &[]).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
        let (_, job) = a.get(&format!("/api/jobs/{id}")).await;
        let hash = job["image"]["hash"].as_str().expect("hash");
        assert!(
            a.state.service.images.path(hash).exists(),
            "round {round}: the image of an acknowledged job is there"
        );
        let (s, _, _) = a.get_raw(&format!("/api/jobs/{id}/image")).await;
        assert_eq!(s, StatusCode::OK, "round {round}");
        let body = format!(r#"{{"action":"cancel","filter":{{"ids":["{id}"]}}}}"#);
        let (s, _) = a.call("POST", "/api/jobs/bulk", Some(&body)).await;
        assert_eq!(s, StatusCode::OK);
        let body = format!(r#"{{"action":"delete","filter":{{"ids":["{id}"]}}}}"#);
        let (s, v) = a.call("POST", "/api/jobs/bulk", Some(&body)).await;
        assert_eq!(
            (s, v["affected"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{v}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let removed = collector.join().expect("collector");
    assert!(
        removed > 0,
        "the collector did remove the unreferenced image in between"
    );
    std::sync::Arc::into_inner(a)
        .expect("last handle")
        .stop()
        .await;
}

/// Uploads and workers share one decode budget: a worker whose job needs more than what is left
/// waits, its job running but not decoding, until the bytes held elsewhere come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_for_decode_budget_held_elsewhere() {
    use std::time::{Duration, Instant};

    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.limits.decode_budget_mb = Some(64);
    })
    .await;
    // The budget the app gave its image store and its pool.
    let budget = a.state.service.images.budget().clone();
    assert_eq!(budget.total(), 64 << 20);
    let (s, _) = a.call("POST", "/api/queue/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = a
        .upload(&[("image", "a.png", read("spheroid_lumen_8bit.png"))], &[])
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    // All but 1 MiB; the builtin pipeline needs about 3 MiB for a 384² image.
    let held = budget
        .reserve(budget.total() - (1 << 20), Duration::ZERO)
        .expect("free");
    let (s, _) = a.call("POST", "/api/queue/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    a.wait_state(&id, "active").await;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let (_, v) = a.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(
            (v["state"].as_str(), v["progress"].as_u64()),
            (Some("active"), Some(0)),
            "it waits without decoding: {v}"
        );
        assert_eq!(
            budget.in_use(),
            held.bytes(),
            "the worker holds nothing yet"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    a.wait_state(&id, "completed").await;
    assert_eq!(budget.in_use(), 0, "the worker gave its bytes back");
    a.stop().await;
}
