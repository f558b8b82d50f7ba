//! What a segmenter takes: the builtin segmenter's parameters, from which the page builds its form.

use axum::http::StatusCode;

use crate::util::api::*;

/// The parameters the form is built from: one per field a job shows, each default what a job
/// without parameters gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_parameters_are_described_with_the_defaults_jobs_get() {
    let a = api(None, 64 << 20).await;
    let (s, v) = a.get("/api/segmenters/builtin/params").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["segmenter"], "builtin");
    let fields = v["fields"].as_array().expect("fields");
    let (s, up) = a
        .upload(
            &[("image", "core.png", read("spheroid_core_8bit.png"))],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let id = up["jobs"][0]["id"].as_str().expect("id");
    let (_, job) = a.get(&format!("/api/jobs/{id}")).await;
    let params = job["params"].as_object().expect("params");
    assert_eq!(fields.len(), params.len(), "{v}");
    for f in fields {
        let name = f["name"].as_str().expect("name");
        assert_eq!(f["default"], params[name], "{name}");
        assert!(
            ["boolean", "number", "integer", "choice"].contains(&f["type"].as_str().expect("type")),
            "{f}"
        );
        assert!(f["help"].as_str().is_some_and(|h| !h.is_empty()), "{f}");
        assert!(f["label"].as_str().is_some_and(|h| !h.is_empty()), "{f}");
    }
    let circularity = fields
        .iter()
        .find(|f| f["name"] == "min_circularity")
        .expect("min_circularity");
    assert_eq!(
        (&circularity["minimum"], &circularity["maximum"]),
        (&0.0.into(), &1.0.into())
    );
    let declump = fields
        .iter()
        .find(|f| f["name"] == "declump")
        .expect("declump");
    let choices: Vec<&str> = declump["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| c["value"].as_str().expect("value"))
        .collect();
    assert_eq!(choices, ["auto", "off"]);
    a.stop().await;
}
