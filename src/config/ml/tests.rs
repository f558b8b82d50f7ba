//! `[[ml.service]]` entries: read with `[ml]`'s values as defaults, beside the `[ml]` service;
//! bad entries are one error naming the entry and the key.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, ConfigError, Layer, Protocol, Sources};

fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.toml");
    std::fs::write(&path, file).expect("write");
    Config::load(&Sources {
        file: Some(path),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        flags: Layer::default(),
    })
}

const TWO: &str = r#"
segmenter = "resunet"
[ml]
timeout_ms = 20000
min_calls = 7
[[ml.service]]
name = "gpu-a"
segmenter = "resunet"
url = "http://gpu-a:5002"
weight = 3
max_in_flight = 8
[[ml.service]]
name = "gpu-b"
segmenter = "resunet"
url = "https://gpu-b:8000/"
protocol = "oip"
model = "resunet"
version = "2"
timeout_ms = 5000
"#;

#[test]
fn entries_take_the_ml_values_as_defaults_and_join_the_ml_service() {
    let c = load(TWO, &[("ML_SERVICE_URL", "http://ml:5002")]).expect("loads");
    let all = c.ml_services();
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["http", "gpu-a", "gpu-b"]);
    let (http, a, b) = (&all[0], &all[1], &all[2]);
    assert_eq!(
        (http.segmenter.as_str(), http.url.as_str()),
        ("http", "http://ml:5002")
    );
    assert_eq!(
        (a.segmenter.as_str(), b.segmenter.as_str()),
        ("resunet", "resunet")
    );
    assert_eq!(
        (a.weight, a.max_in_flight, a.protocol),
        (3, 8, Protocol::Spheroseg)
    );
    assert_eq!(a.timeout, Duration::from_secs(20), "[ml]'s timeout");
    assert_eq!(
        (a.min_calls, b.min_calls),
        (7, 7),
        "[ml]'s breaker settings"
    );
    assert_eq!((b.weight, b.max_in_flight), (1, 4));
    assert_eq!(b.protocol, Protocol::Oip);
    assert_eq!(
        (b.model.as_deref(), b.version.as_deref()),
        (Some("resunet"), Some("2"))
    );
    assert_eq!(b.timeout, Duration::from_secs(5));
    assert_eq!(c.segmenter.as_str(), "resunet");
}

#[test]
fn a_service_serves_its_own_name_unless_told_and_config_show_reads_back() {
    let c = load(
        "[[ml.service]]\nname = \"cellpose\"\nurl = \"http://127.0.0.1:9000\"\n",
        &[],
    )
    .expect("loads");
    assert_eq!(c.ml_services()[0].segmenter.as_str(), "cellpose");
    let again = load(&c.to_toml(), &[]).expect("config show reads back");
    assert_eq!(again, c);
    let c = load(TWO, &[]).expect("loads");
    assert_eq!(load(&c.to_toml(), &[]).expect("reads back"), c);
}

#[test]
fn bad_entries_name_the_entry_and_the_key() {
    let entry = |body: &str| {
        format!("[[ml.service]]\nname = \"a\"\nurl = \"http://a:1\"\n[[ml.service]]\n{body}\n")
    };
    let cases: &[(&str, &str, &str)] = &[
        (
            "name = \"a\"\nurl = \"http://b:1\"",
            "ml.service[1].name",
            "already the name of ml.service[0]",
        ),
        ("url = \"http://b:1\"", "ml.service[1].name", "needs a name"),
        ("name = \"b\"", "ml.service[1].url", "needs a url"),
        (
            "name = \"b\"\nurl = \"ftp://b\"",
            "ml.service[1].url",
            "not an http:// or https:// URL",
        ),
        (
            "name = \"b\"\nurl = \"http:///segment\"",
            "ml.service[1].url",
            "names no host",
        ),
        (
            "name = \"b\"\nurl = \"http://b:1\"\nweight = 0",
            "ml.service[1].weight",
            "use 1 to 1000",
        ),
        (
            "name = \"b\"\nurl = \"http://b:1\"\nprotocol = \"oip\"",
            "ml.service[1].model",
            "needs the model",
        ),
        (
            "name = \"Big B\"\nurl = \"http://b:1\"",
            "ml.service[1].name",
            "not a segmenter name",
        ),
        (
            "name = \"builtin\"\nurl = \"http://b:1\"",
            "ml.service[1].name",
            "names another segmenter",
        ),
        (
            "name = \"b\"\nurl = \"http://b:1\"\nsegmenter = \"command\"",
            "ml.service[1].segmenter",
            "not served by remote",
        ),
        (
            "name = \"b\"\nurl = \"http://b:1\"\nmax_in_flight = 0",
            "ml.service[1].max_in_flight",
            "use 1 to 1024",
        ),
    ];
    for (body, key, message) in cases {
        let e = load(&entry(body), &[]).expect_err(body);
        assert_eq!(&e.key, key, "{body}: {e}");
        assert!(e.message.contains(message), "{body}: {e}");
        assert!(e.origin.ends_with("spheroseg.toml"), "{e}");
    }
    let e = load(
        &entry("name = \"b\"\nurl = \"http://b:1\"\nweigth = 2"),
        &[],
    )
    .expect_err("typo");
    assert!(e.message.contains("weigth"), "{e}");
}

#[test]
fn the_ml_service_keeps_its_name() {
    let file = "[[ml.service]]\nname = \"http\"\nurl = \"http://b:1\"\n";
    let e = load(file, &[("SPHEROSEG_ML_URL", "http://a:1")]).expect_err("two named http");
    assert_eq!(e.key, "ml.service[0].name");
    assert!(e.message.contains("the [ml] service"), "{e}");
    // Without ml.url the name is free.
    assert_eq!(load(file, &[]).expect("loads").ml_services().len(), 1);
}

#[test]
fn jobs_may_name_a_segmenter_only_a_service_serves() {
    let e = load("segmenter = \"resunet\"\n", &[]).expect_err("nothing serves it");
    assert_eq!(e.key, "segmenter");
    assert!(e.message.contains("[[ml.service]]"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let watch = format!(
        "{TWO}\n[[watch]]\npath = {:?}\nsegmenter = \"resunet\"\n",
        dir.path().display().to_string()
    );
    load(&watch, &[]).expect("a watch folder's jobs may name it");
}
