//! Bytes as the text of `spheroseg.toml` through `Config::load`: a validated configuration or
//! an error that names the key, never a panic. A configuration that loads also gives the queue,
//! pool and breaker settings and prints itself as TOML (`spheroseg config show`).

#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use spheroseg::config::{Config, Layer, Sources};

/// One directory per process, holding the file each input is written to.
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("temp dir"));

fuzz_target!(|data: &[u8]| {
    let path: PathBuf = DIR.path().join("spheroseg.toml");
    std::fs::write(&path, data).expect("write the file");
    let sources = Sources {
        file: Some(path),
        env: HashMap::new(),
        flags: Layer::default(),
    };
    match Config::load(&sources) {
        Ok(config) => {
            let _ = config.queue_options();
            let _ = config.retention();
            let _ = config.decode_limits();
            let _ = config.breaker();
            let _ = config.database_path();
            assert!(!config.to_toml().is_empty());
        }
        Err(e) => {
            assert!(!e.key.is_empty(), "an error without a key: {e}");
        }
    }
});
