//! `db backup` of a server in the middle of an upload run, and `db check` on the copy: whole,
//! with an image deleted, and with its database damaged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Served, text};

/// A small PNG of its own for upload `n` (so every job has its own image file).
fn png(n: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(64, 64, |x, y| {
        let d = (x as i32 - 32).pow(2) + (y as i32 - 32).pow(2);
        let v = if d < 200 { 40 } else { 200 };
        image::Luma([if (x, y) == (n % 64, n / 64 % 64) {
            255
        } else {
            v
        }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

const UPLOADS: u32 = 2000;

/// A backup taken while 2,000 uploads come in holds every job acknowledged before it began; the
/// copy opens, passes the check, and fails it (exit 1) once an image is gone or its database is
/// damaged (exit 1 or 2, one line).
#[test]
fn a_backup_during_uploads_holds_every_acknowledged_job() {
    let s = Served::start(None, |_| {});
    // Workers paused: the machine's cores go to the uploads, which is what the backup races.
    let (paused, _) = s.rt.block_on(s.api.call("POST", "/api/queue/pause", None));
    assert_eq!(paused, 200);
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let images: Vec<Vec<u8>> = (0..UPLOADS).map(png).collect();
    let uploads = {
        let (state, acked) = (s.api.state.clone(), Arc::clone(&acked));
        s.rt.spawn(async move {
            use futures_util::StreamExt;
            let api = crate::util::api::Api {
                dir: tempfile::tempdir().expect("tempdir"),
                state,
                app: None,
            };
            let api = &api;
            futures_util::stream::iter(images.into_iter().enumerate())
                .for_each_concurrent(16, |(n, bytes)| {
                    let acked = Arc::clone(&acked);
                    async move {
                        let name = format!("well-{n}.png");
                        let (status, v) = api.upload(&[("image", &name, bytes)], &[]).await;
                        assert_eq!(status, 202, "{v}");
                        let id = v["jobs"][0]["id"].as_str().expect("id").to_owned();
                        acked.lock().expect("acked").push((Instant::now(), id));
                    }
                })
                .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().expect("acked").len() < 500 {
        assert!(Instant::now() < deadline, "uploads do not come in");
        std::thread::sleep(Duration::from_millis(10));
    }
    let dest = tempfile::tempdir().expect("tempdir");
    let backup = dest.path().join("backup");
    let began = Instant::now();
    let out = s.cli(&[
        "db",
        "backup",
        &backup.to_string_lossy(),
        "--images",
        "--json",
    ]);
    let took = began.elapsed();
    let (stdout, all) = text(&out);
    assert!(out.status.success(), "{all}");
    let manifest: serde_json::Value = serde_json::from_str(&stdout).expect("manifest");
    let before: Vec<String> = acked
        .lock()
        .expect("acked")
        .iter()
        .filter(|(at, _)| *at < began)
        .map(|(_, id)| id.clone())
        .collect();
    s.rt.block_on(uploads).expect("uploads");
    let during = acked.lock().expect("acked").len();
    eprintln!(
        "backup of a server under upload: {} ms (the queue paused {} ms), database {} bytes, {} images; {} jobs acknowledged before it, {during} by the end",
        took.as_millis(),
        manifest["paused_ms"],
        manifest["database_bytes"],
        manifest["images"],
        before.len()
    );
    assert!(
        before.len() >= 500 && before.len() < UPLOADS as usize,
        "{}",
        before.len()
    );

    // The copy opens as a data directory, without a log to redo, and holds them all.
    {
        let (queue, recovery) = spheroseg::queue::Queue::open(
            &backup.join("spheroseg.redb"),
            spheroseg::queue::QueueOptions::default(),
            Arc::new(spheroseg::clock::SystemClock),
        )
        .expect("the backup opens");
        assert_eq!(recovery.replayed, 0);
        for id in &before {
            let job = queue.get(id.parse().expect("a job id")).expect("read");
            assert!(
                job.is_some(),
                "job {id} acknowledged before the backup is missing"
            );
        }
        queue.close();
    }
    s.stop();

    let check = |dir: &std::path::Path| {
        crate::cli::spheroseg()
            .args(["db", "check", "--data-dir"])
            .arg(dir)
            .output()
            .expect("runs")
    };
    let out = check(&backup);
    let (stdout, all) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        stdout.contains("integrity   ok") && stdout.contains("none missing"),
        "{all}"
    );

    // An image gone: exit 1, the job named.
    let images = backup.join("images");
    let fan = std::fs::read_dir(&images)
        .expect("images")
        .flatten()
        .find(|e| e.file_name() != "incoming")
        .expect("a fan directory");
    let victim = std::fs::read_dir(fan.path())
        .expect("fan")
        .flatten()
        .next()
        .expect("an image");
    std::fs::remove_file(victim.path()).expect("remove");
    let out = check(&backup);
    let (stdout, all) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stdout.contains("missing   job") && stdout.contains("PROBLEM"),
        "{all}"
    );

    // The database damaged: exit 1 or 2, and one clear line on stderr.
    let db = backup.join("spheroseg.redb");
    let mut bytes = std::fs::read(&db).expect("read");
    for i in (4096..bytes.len()).step_by(7) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&db, bytes).expect("write");
    let out = check(&backup);
    let (_, all) = text(&out);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{all}");
    assert!(stderr.starts_with("spheroseg: "), "{all}");
    assert!(!stderr.contains("panicked"), "{all}");
}
