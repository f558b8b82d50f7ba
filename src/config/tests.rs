//! Configuration: layering, validation, the printed default file.
use std::path::Path;
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
    assert_eq!((c.ml.max_in_flight, c.command.max_parallel), (4, 1));
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

    let e = load(Some("[ml]\nmax_in_flight = 0\n"), &[], Layer::default()).unwrap_err();
    assert_eq!(e.key, "ml.max_in_flight");
    let c = load(Some("[command]\nmax_parallel = 2\n"), &[], Layer::default()).expect("loads");
    assert_eq!(c.command.max_parallel, 2);

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

/// A `spheroseg.toml` whose `[[watch]]` entries are `entries` (TOML bodies), with the data
/// directory outside every folder; paths may name `{tmp}`, a fresh folder.
fn load_watch(tmp: &Path, entries: &[&str], flags: Layer) -> Result<Config, ConfigError> {
    let data = tmp.join("data");
    let mut file = format!("data_dir = {:?}\n", data.display().to_string());
    for e in entries {
        file.push_str("[[watch]]\n");
        file.push_str(&e.replace("{tmp}", &tmp.display().to_string()));
        file.push('\n');
    }
    load(Some(&file), &[], flags)
}

#[test]
fn a_watch_entry_has_the_documented_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("scope")).expect("dir");
    let c = load_watch(tmp.path(), &["path = \"{tmp}/scope\""], Layer::default()).expect("loads");
    let w = &c.watch[0];
    assert!(w.recursive);
    assert_eq!(
        w.include,
        ["*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp"]
    );
    assert_eq!(w.exclude, [".*", "~*"]);
    assert_eq!(w.project, "scope", "the folder's name");
    assert_eq!((w.priority, w.segmenter.as_str()), (5, "builtin"));
    assert_eq!(w.results, Results::Beside);
    assert_eq!(
        w.results_root(),
        tmp.path().join("scope").join("spheroseg-results")
    );
    assert_eq!(
        (w.after, w.pages, w.poll),
        (After::Keep, Pages::First, false)
    );
    assert_eq!(w.settle, Duration::from_millis(2000));
    assert_eq!(w.poll_interval, Duration::from_millis(5000));
    assert_eq!(w.metadata, None);
    // config show prints it back as an entry that loads to the same.
    let shown = c.to_toml();
    assert!(shown.contains("[[watch]]"), "{shown}");
    let again = load(Some(&shown), &[], Layer::default()).expect("config show loads");
    assert_eq!(again.watch, c.watch);
}

#[test]
fn every_watch_field_is_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("scope")).expect("dir");
    let entry = r#"path = "{tmp}/scope"
recursive = false
include = ["*.tif"]
exclude = ["raw/**"]
project = "screen-7"
priority = 8
segmenter = "builtin"
pixel_size_um = 0.65
results = "{tmp}/out"
after = "move"
poll = true
poll_interval_ms = 250
settle_ms = 500
metadata = '(?P<plate>plate\d+)_(?P<well>[A-P]\d{2})'
pages = "best-focus"
params = { min_circularity = 0.5 }"#;
    let c = load_watch(tmp.path(), &[entry], Layer::default()).expect("loads");
    let w = &c.watch[0];
    assert!(!w.recursive);
    assert_eq!((w.include.len(), w.exclude.len()), (1, 1));
    assert_eq!((w.project.as_str(), w.priority), ("screen-7", 8));
    assert_eq!(w.params.pixel_size_um, Some(0.65));
    assert_eq!(w.params.min_circularity, 0.5);
    assert_eq!(w.results_root(), tmp.path().join("out"));
    assert_eq!(
        (w.after, w.pages, w.poll),
        (After::Move, Pages::BestFocus, true)
    );
    assert_eq!(w.settle, Duration::from_millis(500));
    assert_eq!(w.poll_interval, Duration::from_millis(250));
    assert!(w.metadata.is_some());
}

#[test]
fn serve_watch_adds_an_entry_with_the_defaults_to_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for d in ["a", "b"] {
        std::fs::create_dir(tmp.path().join(d)).expect("dir");
    }
    let flags = Layer {
        watch: Some(vec![WatchLayer::folder(tmp.path().join("b"))]),
        ..Layer::default()
    };
    let c = load_watch(tmp.path(), &["path = \"{tmp}/a\"\npriority = 9"], flags).expect("loads");
    assert_eq!(c.watch.len(), 2, "the flag adds to the file's entries");
    assert_eq!((c.watch[0].priority, c.watch[1].priority), (9, 5));
    assert_eq!(c.watch[1].project, "b");
}

#[test]
fn bad_watch_entries_are_one_line_naming_the_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for d in ["a", "a/sub", "b", "c"] {
        std::fs::create_dir(tmp.path().join(d)).expect("dir");
    }
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["path = \"{tmp}/missing\""],
            "watch[0].path",
            "cannot be watched",
        ),
        (
            &[
                "path = \"{tmp}/a\"",
                "path = \"{tmp}/b\"",
                "path = \"{tmp}/a/\"",
            ],
            "watch[2].path",
            "watched twice",
        ),
        (
            &["path = \"{tmp}/a\"", "path = \"{tmp}/a/sub\""],
            "watch[1].path",
            "inside each other",
        ),
        (
            &[
                "path = \"{tmp}/b\"\nresults = \"{tmp}/a/res\"",
                "path = \"{tmp}/a\"",
            ],
            "watch[1].path",
            "would take them as new images",
        ),
        (
            &[
                "path = \"{tmp}/a\"",
                "path = \"{tmp}/b\"\nresults = \"{tmp}/a/res\"",
            ],
            "watch[1].results",
            "would take the results",
        ),
        (
            &["path = \"{tmp}/b\"\nresults = \"..\""],
            "watch[0].results",
            "holds the watched folder",
        ),
        (&["path = \"{tmp}\""], "watch[0].path", "data directory"),
        (
            &["path = \"{tmp}/a\"\ninclude = [\"[x-\"]"],
            "watch[0].include",
            "not a glob",
        ),
        (
            &["path = \"{tmp}/a\"\nmetadata = \"(?P<w>[A-P\""],
            "watch[0].metadata",
            "regular",
        ),
        (
            &["path = \"{tmp}/a\"\nmetadata = \"A\\\\d+\""],
            "watch[0].metadata",
            "names no group",
        ),
        (
            &["path = \"{tmp}/a\"\npriority = 11"],
            "watch[0].priority",
            "1 (lowest)",
        ),
        (
            &["path = \"{tmp}/a\"\nsegmenter = \"http\""],
            "watch[0].segmenter",
            "ml.url",
        ),
        (
            &["path = \"{tmp}/a\"\npixel_size_um = -1.0"],
            "watch[0].pixel_size_um",
            "positive",
        ),
        (
            &["path = \"{tmp}/a\"\nsettle_ms = 0"],
            "watch[0].settle_ms",
            "100 to",
        ),
        (
            &["path = \"{tmp}/a\"\nproject = \" \""],
            "watch[0].project",
            "name",
        ),
    ];
    for (entries, key, says) in cases {
        let e = load_watch(tmp.path(), entries, Layer::default()).expect_err(key);
        assert_eq!(e.key, *key, "{e}");
        assert!(e.message.contains(says), "{key}: {e}");
        assert!(e.origin.ends_with("spheroseg.toml"), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    // Two sibling folders, and a non-recursive folder with another below it, are fine.
    let ok = load_watch(
        tmp.path(),
        &[
            "path = \"{tmp}/a\"\nrecursive = false",
            "path = \"{tmp}/a/sub\"",
            "path = \"{tmp}/c\"",
        ],
        Layer::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = load_watch(
        tmp.path(),
        &[],
        Layer {
            watch: Some(vec![WatchLayer::folder(tmp.path().join("nope"))]),
            ..Layer::default()
        },
    )
    .expect_err("missing");
    assert_eq!(e.origin, "command-line flag --watch");
}

#[test]
fn an_oip_service_needs_its_model_and_takes_version_output_and_threshold() {
    let c = load(
        Some(
            "[ml]\nurl = \"http://triton:8000\"\nprotocol = \"oip\"\nmodel = \"resunet\"\n\
             version = \"2\"\noutput = \"mask\"\nthreshold = 0.3\nbinary = false\n",
        ),
        &[],
        Layer::default(),
    )
    .expect("loads");
    assert_eq!(c.ml.protocol, Protocol::Oip);
    assert_eq!(
        (c.ml.model.as_deref(), c.ml.version.as_deref()),
        (Some("resunet"), Some("2"))
    );
    assert_eq!(
        (c.ml.output.as_deref(), c.ml.threshold),
        (Some("mask"), 0.3)
    );
    assert!(!c.ml.binary);
    let e = load(
        Some("[ml]\nurl = \"http://triton:8000\"\nprotocol = \"oip\"\n"),
        &[],
        Layer::default(),
    )
    .unwrap_err();
    assert_eq!(e.key, "ml.model");
    let e = load(
        Some("[ml]\nprotocol = \"oip\"\nmodel = \"res/../unet\"\n"),
        &[],
        Layer::default(),
    )
    .unwrap_err();
    assert_eq!(e.key, "ml.model");
    let c = load(None, &[], Layer::default()).expect("defaults");
    assert_eq!(
        (c.ml.protocol, c.ml.threshold, c.ml.binary),
        (Protocol::Spheroseg, 0.5, true)
    );
}
