//! Configuration: layering, validation, the printed default file.
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(file: Option<&str>, e: &[(&str, &str)], flags: Layer) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file.map(|text| {
        let p = dir.path().join("spheroseg.toml");
        std::fs::write(&p, text).expect("write");
        p
    });
    Config::load(&Sources {
        file: path,
        env: env(e),
        flags,
    })
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = load(None, &[], Layer::default()).expect("defaults load");
    assert_eq!(c.bind, "127.0.0.1:5001".parse().expect("addr"));
    assert_eq!(c.data_dir, PathBuf::from("./spheroseg-data"));
    assert_eq!(c.queue.max_attempts, 3);
    assert_eq!(c.ml.timeout, Duration::from_millis(300_000));
    assert_eq!(c.ml.error_threshold_pct, 50);
    assert_eq!(c.ml.reset_timeout, Duration::from_millis(60_000));
    assert_eq!(
        c.retention(),
        crate::queue::Retention::default(),
        "completed results are kept; failed and cancelled go after 30 days"
    );
    assert!(c.workers >= 1);
}

#[test]
fn the_printed_default_file_is_valid_and_means_the_defaults() {
    let from_file = load(Some(DEFAULT_TOML), &[], Layer::default()).expect("example loads");
    let defaults = load(None, &[], Layer::default()).expect("defaults load");
    assert_eq!(from_file, defaults);
}

#[test]
fn precedence_is_file_then_env_then_flags() {
    let file = "workers = 3\n[queue]\nmax_attempts = 4\naging_secs = 10\n";
    let c = load(Some(file), &[], Layer::default()).expect("loads");
    assert_eq!(
        (
            c.workers,
            c.queue.max_attempts,
            c.queue.aging.map_or(0, |a| a.as_secs())
        ),
        (3, 4, 10)
    );

    let c = load(
        Some(file),
        &[("QUEUE_CONCURRENCY", "5"), ("SPHEROSEG_MAX_ATTEMPTS", "6")],
        Layer::default(),
    )
    .expect("loads");
    assert_eq!(
        (
            c.workers,
            c.queue.max_attempts,
            c.queue.aging.map_or(0, |a| a.as_secs())
        ),
        (5, 6, 10)
    );

    let c = load(
        Some(file),
        &[("QUEUE_CONCURRENCY", "5"), ("SPHEROSEG_WORKERS", "7")],
        Layer::default(),
    )
    .expect("loads");
    assert_eq!(c.workers, 7, "SPHEROSEG_WORKERS beats QUEUE_CONCURRENCY");

    let flags = Layer {
        workers: Some(8),
        ..Layer::default()
    };
    let c = load(Some(file), &[("SPHEROSEG_WORKERS", "7")], flags).expect("loads");
    assert_eq!(c.workers, 8, "flags beat the environment");
}

#[test]
fn replaced_design_names_set_the_ml_values() {
    let c = load(
        None,
        &[
            ("ML_SERVICE_URL", "http://ml:5002"),
            ("ML_SERVICE_TIMEOUT", "120000"),
            ("ML_ERROR_THRESHOLD", "25"),
            ("ML_RESET_TIMEOUT", "30000"),
        ],
        Layer::default(),
    )
    .expect("loads");
    assert_eq!(c.ml.url.as_deref(), Some("http://ml:5002"));
    assert_eq!(c.ml.timeout, Duration::from_millis(120_000));
    assert_eq!(c.ml.error_threshold_pct, 25);
    assert_eq!(c.ml.reset_timeout, Duration::from_millis(30_000));
}

#[test]
fn bad_values_name_key_and_origin() {
    let e = load(None, &[("QUEUE_CONCURRENCY", "lots")], Layer::default()).unwrap_err();
    assert_eq!(e.key, "workers");
    assert_eq!(e.origin, "environment variable QUEUE_CONCURRENCY");

    let e = load(Some("[queue]\nmax_attempts = 0\n"), &[], Layer::default()).unwrap_err();
    assert_eq!(e.key, "queue.max_attempts");
    assert!(e.origin.ends_with("spheroseg.toml"), "{e}");
    assert!(e.to_string().contains("use 1 to 100"), "{e}");

    let e = load(None, &[("ML_ERROR_THRESHOLD", "150")], Layer::default()).unwrap_err();
    assert_eq!(e.key, "ml.error_threshold_pct");

    let e = load(Some("wokers = 3\n"), &[], Layer::default()).unwrap_err();
    assert!(e.message.contains("unknown field"), "{e}");

    let e = load(None, &[("SPHEROSEG_BIND", "nowhere")], Layer::default()).unwrap_err();
    assert_eq!(e.key, "bind");

    let e = load(None, &[("SPHEROSEG_SEGMENTER", "magic")], Layer::default()).unwrap_err();
    assert_eq!(e.key, "segmenter");
}

#[test]
fn binding_beyond_loopback_requires_a_token() {
    let e = load(
        None,
        &[("SPHEROSEG_BIND", "0.0.0.0:5001")],
        Layer::default(),
    )
    .unwrap_err();
    assert_eq!(e.key, "bind");
    assert!(e.message.contains("auth.token"), "{e}");
    let c = load(
        None,
        &[
            ("SPHEROSEG_BIND", "0.0.0.0:5001"),
            ("SPHEROSEG_TOKEN", "s3cret"),
        ],
        Layer::default(),
    )
    .expect("loads with a token");
    assert!(!c.to_toml().contains("s3cret"), "token is redacted");
}

#[test]
fn http_segmenter_needs_a_url() {
    let e = load(None, &[("SPHEROSEG_SEGMENTER", "http")], Layer::default()).unwrap_err();
    assert_eq!(e.key, "segmenter");
}

#[test]
fn ignored_legacy_variables_are_listed() {
    let e = env(&[
        ("REDIS_URL", "redis://x"),
        ("DB_POOL_MAX", "10"),
        ("HOME", "/"),
    ]);
    assert_eq!(Config::ignored_env(&e), vec!["DB_POOL_MAX", "REDIS_URL"]);
}

#[test]
fn config_show_output_is_toml() {
    let c = load(None, &[], Layer::default()).expect("loads");
    let shown = c.to_toml();
    assert!(shown.contains("bind = \"127.0.0.1:5001\""), "{shown}");
    assert!(shown.contains("[queue]"), "{shown}");
}
