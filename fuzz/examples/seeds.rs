//! Writes the seed inputs of every fuzz target into `fuzz/seeds/TARGET/`: small valid examples
//! the fuzzer starts its mutations from. The seeds are committed; run this again when a format
//! changes: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb};
use spheroseg::clock::SystemClock;
use spheroseg::queue::{ImageRef, JobError, NewJob, Priority, Queue, QueueOptions};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn gray8(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| {
        Luma([((x * 31 + y * 17) % 256) as u8])
    }))
}

fn images(dir: &Path) {
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(6, 5, |x, y| {
        Luma([(x * 1000 + y) as u16])
    }));
    let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(6, 4, |x, y| {
        Rgb([(x * 40) as u8, (y * 60) as u8, 90])
    }));
    write(dir, "gray8.png", &encode(gray8(8, 8), ImageFormat::Png));
    write(dir, "gray16.png", &encode(gray16.clone(), ImageFormat::Png));
    write(dir, "rgb.png", &encode(rgb.clone(), ImageFormat::Png));
    write(dir, "gray8.jpg", &encode(gray8(8, 8), ImageFormat::Jpeg));
    write(dir, "rgb.jpg", &encode(rgb.clone(), ImageFormat::Jpeg));
    write(dir, "gray16.tif", &encode(gray16, ImageFormat::Tiff));
    write(dir, "rgb.tif", &encode(rgb.clone(), ImageFormat::Tiff));
    write(dir, "rgb.bmp", &encode(rgb, ImageFormat::Bmp));
    let mut pages = Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut pages).expect("tiff encoder");
        for page in 0..2u16 {
            let data: Vec<u16> = (0..4 * 4).map(|i| i as u16 + page).collect();
            enc.write_image::<tiff::encoder::colortype::Gray16>(4, 4, &data)
                .expect("tiff page");
        }
    }
    write(dir, "pages.tif", pages.get_ref());
}

fn job(priority: i64, project: &str) -> NewJob {
    NewJob {
        priority: Priority::new(priority).expect("valid priority"),
        project: Some(project.into()),
        dedupe_key: Some(format!("{project}-{priority}")),
        image: ImageRef {
            hash: format!("{priority:064x}"),
            name: "spheroid.tif".into(),
            width: 64,
            height: 48,
            bytes: 4096,
        },
        metadata: vec![("well".into(), "A1".into())],
        ..NewJob::default()
    }
}

/// The payloads of the log records of a live queue after a few of each kind of change, framed
/// for the `wal_replay` target's second mode (`1`, then `len u16 | payload` per record).
fn wal(dir: &Path) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("q.redb");
    let options = QueueOptions {
        wal_bytes: 64 << 10,
        checkpoint_every: Duration::from_secs(3600),
        ..QueueOptions::default()
    };
    let (queue, _) = Queue::open(&path, options, Arc::new(SystemClock)).expect("open the queue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let a = queue.enqueue(job(5, "plate-1")).await.expect("enqueue");
        let b = queue.enqueue(job(9, "plate-2")).await.expect("enqueue");
        let c = queue.enqueue(job(2, "plate-1")).await.expect("enqueue");
        queue
            .change_priority(c.job.id, Priority::new(7).expect("priority"))
            .await
            .expect("priority");
        let leases = queue
            .lease(2, Duration::from_secs(60))
            .await
            .expect("lease");
        let first = &leases[0];
        queue
            .complete(first.job.id, first.token, vec![1, 2, 3, 4], 1)
            .await
            .expect("complete");
        let second = &leases[1];
        queue
            .fail(
                second.job.id,
                second.token,
                JobError {
                    message: "the service timed out".into(),
                    code: "timeout".into(),
                    transient: true,
                },
            )
            .await
            .expect("fail");
        queue.cancel(a.job.id).await.ok();
        queue.set_paused(true).await.expect("pause");
        queue.delete(b.job.id).await.ok();
    });
    let log = std::fs::read(path.with_extension("wal")).expect("read the log");
    queue.close();
    // `queue/wal.rs`: crc32 u32 | len u32 | generation u64 | lsn u64 | payload[len].
    let mut payloads = Vec::new();
    let mut at = 0;
    while let Some(head) = log.get(at..at + 24) {
        let crc = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let Some(body) = log.get(at + 4..at + 24 + len) else {
            break;
        };
        if crc == 0 || crc32fast::hash(body) != crc {
            break;
        }
        payloads.push(&body[20..]);
        at += 24 + len;
    }
    assert!(payloads.len() >= 5, "the log holds the changes above");
    let framed = |records: &[&[u8]]| {
        let mut out = vec![1u8];
        for p in records {
            out.extend_from_slice(
                &u16::try_from(p.len())
                    .expect("a small record")
                    .to_le_bytes(),
            );
            out.extend_from_slice(p);
        }
        out
    };
    write(dir, "all-records", &framed(&payloads));
    for (i, p) in payloads.iter().enumerate() {
        write(dir, &format!("record-{i}"), &framed(&[p]));
    }
    let mut raw = vec![0u8];
    raw.extend_from_slice(&log[..at]);
    write(dir, "stale-generation", &raw);
}

fn ml_replies(dir: &Path) {
    let list = r##"[
 {"id": "polygon-1", "points": [{"x": 4, "y": 4}, {"x": 30, "y": 5}, {"x": 28, "y": 25}, {"x": 6, "y": 24}],
  "type": "external", "class": "spheroid", "color": "#3357FF"},
 {"id": "hole-1-1", "points": [[10, 10], [14, 10], [12, 14]],
  "type": "internal", "parentId": "polygon-1", "class": "hole"}
]"##;
    write(dir, "polygons.json", list.as_bytes());
    let http = format!(
        r#"{{"success": true, "results": {{"polygons": {list}, "features": {{"area": 12}}}}}}"#
    );
    write(dir, "http-success.json", http.as_bytes());
    write(
        dir,
        "http-failure.json",
        br#"{"success": false, "error": "model not loaded"}"#,
    );
    let command = format!(r#"{{"success": true, "polygons": {list}}}"#);
    write(dir, "command-success.json", command.as_bytes());
    write(
        dir,
        "command-failure.json",
        br#"{"success": false, "error": "CUDA out of memory", "error_type": "cuda_out_of_memory"}"#,
    );
    write(
        dir,
        "outside.json",
        br#"{"success": true, "polygons": [{"id": "p", "points": [[0, 0], [90, 0], [0, 90]], "type": "external", "class": "spheroid"}]}"#,
    );
}

fn multipart(dir: &Path) {
    let png = encode(gray8(16, 12), ImageFormat::Png);
    let body = |boundary: &str| {
        let mut b: Vec<u8> = Vec::new();
        b.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        b.extend(&png);
        b.extend(b"\r\n");
        for (name, value) in [
            ("priority", "7"),
            ("project", "plate-1"),
            ("segmenter", "builtin"),
            (
                "params",
                r#"{"min_area_fraction": 0.01, "pixel_size_um": 0.65}"#,
            ),
        ] {
            b.extend(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        b.extend(format!("--{boundary}--\r\n").as_bytes());
        b
    };
    let mut fixed = vec![0u8];
    fixed.extend(body("spheroseg-fuzz-boundary"));
    write(dir, "fixed-boundary", &fixed);
    // Odd first byte: boundary of length (byte >> 1) & 0x3f, quoted when bit 7 is set.
    let boundary = "xyz-123";
    let mut own = vec![1 | ((boundary.len() as u8) << 1) | 0x80];
    own.extend(boundary.as_bytes());
    own.extend(body(boundary));
    write(dir, "own-boundary", &own);
    let mut fields_only = vec![0u8];
    fields_only.extend(b"--spheroseg-fuzz-boundary\r\nContent-Disposition: form-data; name=\"priority\"\r\n\r\n11\r\n--spheroseg-fuzz-boundary--\r\n");
    write(dir, "bad-priority", &fields_only);
}

fn config(dir: &Path, root: &Path) {
    let default = std::fs::read(root.join("src/config/default.toml")).expect("default.toml");
    write(dir, "default.toml", &default);
    write(
        dir,
        "small.toml",
        br#"data_dir = "/var/lib/spheroseg"
bind = "0.0.0.0:5001"
workers = 4
segmenter = "http"
[auth]
token = "secret"
[ml]
url = "http://ml:5002"
timeout_ms = 30000
fallback = "builtin"
[queue]
aging_secs = 600
backoff_factor = 2.5
[retention]
completed_days = 30
[command]
argv = ["python", "segment.py", "{input}", "{output_json}"]
"#,
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("seeds");
    let crate_root = root.parent().expect("fuzz/ is inside the crate").to_owned();
    images(&seeds.join("decode"));
    wal(&seeds.join("wal_replay"));
    ml_replies(&seeds.join("ml_reply"));
    multipart(&seeds.join("multipart"));
    config(&seeds.join("config"), &crate_root);
    println!("seeds written to {}", seeds.display());
}
