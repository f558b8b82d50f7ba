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

/// The upload form offers what `GET /api/segmenters` lists: builtin, and only the ML services
/// and programs this server has configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_segmenters_are_listed() {
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["segmenters"]
            .as_array()
            .expect("segmenters")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let a = api(None, 64 << 20).await;
    let (s, v) = a.get("/api/segmenters").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["default"], "builtin");
    assert_eq!(names(&v), ["builtin"]);
    assert_eq!(v["segmenters"][0]["kind"], "builtin");
    assert!(v["segmenters"][0]["target"].is_null());
    a.stop().await;

    let argv = ["sh", "-c", "exit 0", "sh", "{output_json}", "{input}"].map(String::from);
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.command = spheroseg::config::CommandLayer {
            argv: Some(argv.to_vec()),
            max_parallel: Some(1),
        };
    })
    .await;
    let (_, v) = a.get("/api/segmenters").await;
    assert_eq!(names(&v), ["builtin", "command"], "{v}");
    let command = &v["segmenters"][1];
    assert_eq!(command["kind"], "program");
    assert!(
        command["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("sh -c"))
    );
    a.stop().await;
}
