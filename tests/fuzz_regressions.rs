//! The inputs the fuzz targets found (`fuzz/regressions/TARGET/`), run on the stable toolchain
//! with each target's checks, so CI checks them where no nightly toolchain is. Each input is
//! read as its target reads it (see `fuzz/fuzz_targets/TARGET.rs` for the framings).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spheroseg::clock::SystemClock;
use spheroseg::queue::{ImageRef, JobFilter, NewJob, Queue, QueueOptions};

use crate::util::runtime;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a regression input");
            (p, bytes)
        })
        .collect()
}

#[test]
fn every_regression_directory_has_a_runner_here() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            ["wal_replay", "decode", "ml_reply", "config"].contains(&name.as_str()),
            "fuzz/regressions/{name} has no test in tests/fuzz_regressions.rs"
        );
    }
}

fn wal_options() -> QueueOptions {
    QueueOptions {
        wal_bytes: 64 << 10,
        ..QueueOptions::default()
    }
}

/// `wal_replay`: a database with one queued job, closed cleanly, and a log of the input (raw,
/// or framed with the database's generation and next sequence numbers) opens as a queue or
/// fails to open, and the queue it gives answers reads.
#[test]
fn wal_replay_inputs_open_or_fail_without_a_panic() {
    let rt = runtime();
    for (path, data) in inputs("wal_replay") {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("q.redb");
        let (queue, _) = Queue::open(&db, wal_options(), Arc::new(SystemClock)).expect("open");
        rt.block_on(queue.enqueue(NewJob {
            image: ImageRef {
                hash: "0".repeat(64),
                name: "spheroid.tif".into(),
                width: 64,
                height: 48,
                bytes: 4096,
            },
            ..NewJob::default()
        }))
        .expect("enqueue");
        // `queue/wal.rs`: crc32 u32 | len u32 | generation u64 | lsn u64 | payload, with
        // `durable u64` before the payload in its second layout.
        let log = std::fs::read(db.with_extension("wal")).expect("log");
        let word = |at: usize| u64::from_le_bytes(log[at..at + 8].try_into().expect("8 bytes"));
        let (generation, checkpoint) = (word(8), word(16));
        let len = u32::from_le_bytes(log[4..8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(log[..4].try_into().expect("4 bytes"));
        let header = [24, 32]
            .into_iter()
            .find(|h| crc32fast::hash(&log[4..h + len]) == crc)
            .expect("the log's first record has a 24- or 32-byte header");
        let mut lsn = checkpoint;
        queue.close();
        let framed = data.first().is_some_and(|m| m & 1 == 1);
        let wal = match data.split_first() {
            Some((_, rest)) if framed => {
                let mut out = Vec::new();
                let mut rest = rest;
                while let Some((len, tail)) = rest.split_first_chunk::<2>() {
                    let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
                    let (payload, tail) = tail.split_at(len);
                    lsn += 1;
                    let mut body = (len as u32).to_le_bytes().to_vec();
                    body.extend_from_slice(&generation.to_le_bytes());
                    body.extend_from_slice(&lsn.to_le_bytes());
                    if header == 32 {
                        body.extend_from_slice(&checkpoint.to_le_bytes());
                    }
                    body.extend_from_slice(payload);
                    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
                    out.extend_from_slice(&body);
                    rest = tail;
                }
                out
            }
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        };
        std::fs::write(db.with_extension("wal"), &wal).expect("write the log");
        match Queue::open(&db, wal_options(), Arc::new(SystemClock)) {
            Ok((queue, recovery)) => {
                // A framed record follows the last one the database holds: it is redone.
                assert!(
                    !framed || recovery.replayed > 0,
                    "{}: the framing no longer matches queue/wal.rs",
                    path.display()
                );
                let _ = queue.stats();
                if let Ok(page) = queue.list(&JobFilter::default(), None, 20) {
                    for job in page.jobs {
                        let _ = queue.get(job.id);
                    }
                }
                // The writer works on what the log left (a missing counter is clamped).
                let _ = rt.block_on(queue.lease(4, std::time::Duration::from_secs(60)));
                queue.close();
            }
            // Refused as a damaged log, not as a panic the open contained.
            Err(e) => assert!(
                !e.to_string().contains("cannot read it"),
                "{}: {e}",
                path.display()
            ),
        }
    }
}

/// `decode`: under the target's limits, an image within them or an error.
#[test]
fn decode_inputs_decode_within_the_limits_or_fail() {
    use spheroseg::segment::DecodeLimits;
    use spheroseg::segment::decode::decode;
    let limits = DecodeLimits {
        max_width: 2048,
        max_height: 2048,
        max_megapixels: 1,
        max_alloc_mb: 64,
    };
    for (path, data) in inputs("decode") {
        if let Ok(d) = decode(&data, &limits) {
            assert!(
                d.gray.width * d.gray.height <= 1_000_000,
                "{}",
                path.display()
            );
        }
    }
}

/// `ml_reply`: the polygon list and both segmenters' replies read, or fail, without a panic.
#[test]
fn ml_reply_inputs_read_or_fail() {
    for (_, data) in inputs("ml_reply") {
        if let Ok(list) = serde_json::from_slice::<Vec<spheroseg::outline::Polygon>>(&data) {
            let _ = spheroseg::outline::from_polygons(&list);
        }
        let _ = spheroseg::fuzzing::http_reply("fuzz", &data);
        let _ = spheroseg::fuzzing::command_reply(&data);
    }
}

/// `config`: a configuration or an error that names its key.
#[test]
fn config_inputs_load_or_name_the_key() {
    use spheroseg::config::{Config, Sources};
    for (_, data) in inputs("config") {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("spheroseg.toml");
        std::fs::write(&file, &data).expect("write");
        match Config::load(&Sources {
            file: Some(file),
            ..Sources::default()
        }) {
            Ok(c) => assert!(!c.to_toml().is_empty()),
            Err(e) => assert!(!e.key.is_empty()),
        }
    }
}
