//! A job whose ML service cannot take it (here: the `command` segmenter's program cannot be
//! started) is held back without spending an attempt, `job_retrying` with `held`, and runs once
//! the service can take it.

use super::*;

/// The program the `command` segmenter runs: a square for every image.
const SCRIPT: &str = r#"#!/bin/sh
echo '{"success":true,"polygons":[{"id":"p","points":[[10,10],[60,10],[60,60],[10,60]],"type":"external","class":"spheroid"}]}' > "$1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_its_ml_service_cannot_take_is_held_without_spending_an_attempt() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("program dir");
    let program = dir.path().join("segment");
    let argv = vec![
        program.to_string_lossy().into_owned(),
        "{output_json}".into(),
        "{input}".into(),
    ];
    let a = api_with(tempfile::tempdir().expect("tempdir"), None, 64 << 20, |l| {
        l.command = CommandLayer {
            argv: Some(argv),
            ..CommandLayer::default()
        };
    })
    .await;
    let addr = a.app.as_ref().expect("app").addr();
    let seen = Recorder::connect(a.state.clone(), addr, None).await;

    // The program is not there yet: it cannot be started.
    let id = upload(&a, "spheroid_core_8bit.png", &[("segmenter", "command")]).await;
    seen.until(&id, "job_retrying:held", 1).await;
    let held = seen
        .seen(&id)
        .into_iter()
        .find(|s| s.label == "job_retrying:held")
        .expect("held");
    assert_eq!(
        (held.state.as_deref(), held.code.as_deref()),
        (Some("delayed"), Some("command-spawn")),
        "{held:?}"
    );
    // It appears whole: written aside, then renamed into place.
    let aside = dir.path().join("segment.tmp");
    std::fs::write(&aside, SCRIPT).expect("script");
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&aside, &program).expect("rename");
    seen.until(&id, "job_completed", 1).await;

    // Held once, or again if it fell due before the program appeared; then it ran.
    let labels = seen.labels(&id);
    let holds = labels.len().saturating_sub(3) / 3;
    let mut expected = vec!["job_queued"];
    for _ in 0..holds {
        expected.extend(["job_started", "job_retrying:held", "job_requeued:due"]);
    }
    expected.extend(["job_started", "job_completed"]);
    assert!(holds >= 1);
    assert_eq!(labels, expected);
    let (_, v) = a.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_u64()),
        (Some("completed"), Some(1)),
        "only the run spent an attempt: {v}"
    );
    let problems = seen.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    seen.close().await;
    a.stop().await;
}
