//! `GET /api/system` as the overview shows it: the data directory's size and its file system's
//! free space.

use axum::http::StatusCode;

use crate::util::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_size_and_free_space_are_reported() {
    let a = api(None, 64 << 20).await;
    let image = read("spheroid_core_8bit.png");
    let (s, v) = a.upload(&[("image", "core.png", image.clone())], &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, sys) = a.get("/api/system").await;
    assert_eq!(s, StatusCode::OK, "{sys}");
    let size = sys["data_dir_bytes"].as_u64().expect("data_dir_bytes");
    let (_, q) = a.get("/api/queue").await;
    let database = q["database_bytes"].as_u64().expect("database_bytes");
    // The stored image and the database at least (the write-ahead log and work files besides).
    assert!(
        size >= database + image.len() as u64,
        "{size} < {database} + {}",
        image.len()
    );
    let (free, total) = (
        sys["disk_available_bytes"].as_u64().expect("free"),
        sys["disk_total_bytes"].as_u64().expect("total"),
    );
    assert!(free > 0 && free <= total, "{sys}");
    a.stop().await;
}
