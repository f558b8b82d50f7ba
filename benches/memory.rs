//! Memory under decompression bombs that are within the per-image limits: `cargo bench --bench
//! memory` (by hand, not in CI; it takes a minute or two and about 3 GB).
//!
//! Six different 8000×8000 RGBA 16-bit PNGs of a few MB each (each decodes to 512 MB, plus 256 MB
//! as gray floats) are uploaded at once to a `spheroseg serve` child process, once with the
//! default decode budget and once with a budget too large to matter (what happened before there
//! was one). Refused uploads (503, `Retry-After`) are sent again, as a client should. Prints, per
//! run, the answers and the child's peak RSS (VmHWM) after the uploads and after every job
//! finished. `SPHEROSEG_BENCH_BOMBS` sets the count (default 6).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bomb(seed: u16) -> Vec<u8> {
    const SIDE: u32 = 8000;
    // A smooth gradient compresses to almost nothing; the seed makes each image different.
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_fn(SIDE, SIDE, |x, y| {
        let v = ((x / 64 + y / 64) as u16)
            .wrapping_mul(97)
            .wrapping_add(seed);
        image::Rgba([v, v, v, 65535])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba16(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// The peak and current resident set of a process, in MiB, from /proc.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let n: u16 = std::env::var("SPHEROSEG_BENCH_BOMBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let started = Instant::now();
    let bombs: Vec<Vec<u8>> = (0..n).map(bomb).collect();
    println!(
        "made {n} PNGs of 8000x8000 RGBA16, {} KB each, in {:.1} s",
        bombs[0].len() / 1000,
        started.elapsed().as_secs_f64()
    );
    let runs = [("default budget", None), ("no budget", Some(1u64 << 20))];
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (label, budget) in runs {
        let figures = run(&bombs, budget);
        rows.push((label.to_owned(), figures));
    }
    println!();
    let names = [
        "decode budget",
        "uploads accepted",
        "answers 503 busy (then retried)",
        "seconds until all were accepted",
        "seconds until all jobs completed",
        "peak RSS after the uploads",
        "peak RSS after every job",
        "peak RSS minus the budget",
    ];
    print!("{:<36}", "");
    for (label, _) in &rows {
        print!(" {label:>16}");
    }
    println!();
    for (i, name) in names.iter().enumerate() {
        print!("{name:<36}");
        for (_, figures) in &rows {
            print!(" {:>16}", figures[i]);
        }
        println!();
    }
}

/// One run against a fresh `serve`; `budget_mb` sets `limits.decode_budget_mb` (`None`: the
/// default). Returns the figures in the order `main` prints them.
fn run(bombs: &[Vec<u8>], budget_mb: Option<u64>) -> Vec<String> {
    let bombs = bombs.to_vec();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("spheroseg.toml");
    let budget = budget_mb.unwrap_or(0);
    std::fs::write(&config, format!("[limits]\ndecode_budget_mb = {budget}\n")).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spheroseg"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SPHEROSEG_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spheroseg serve");
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let figures = runtime.block_on(async {
        spheroseg::segment::http::install_crypto_provider();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{base}/api/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let budget_mb = client
            .get(format!("{base}/api/queue"))
            .send()
            .await
            .expect("queue")
            .json::<serde_json::Value>()
            .await
            .expect("json")["decode_budget_bytes"]
            .as_u64()
            .unwrap_or(0)
            >> 20;
        let uploads_started = Instant::now();
        let tasks: Vec<_> = bombs
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let mut busy = 0;
                    loop {
                        let part = reqwest::multipart::Part::bytes(bytes.clone())
                            .file_name(format!("bomb-{i}.png"));
                        let form = reqwest::multipart::Form::new().part("image", part);
                        let resp = client
                            .post(format!("{base}/api/jobs"))
                            .multipart(form)
                            .send()
                            .await
                            .expect("upload");
                        match resp.status().as_u16() {
                            202 => {
                                let v: serde_json::Value = resp.json().await.expect("json");
                                return (v["jobs"][0]["id"].as_str().expect("id").to_owned(), busy);
                            }
                            503 => {
                                busy += 1;
                                let wait = resp
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(5);
                                tokio::time::sleep(Duration::from_secs(wait)).await;
                            }
                            other => panic!(
                                "upload {i}: {other} {}",
                                resp.text().await.unwrap_or_default()
                            ),
                        }
                    }
                })
            })
            .collect();
        let mut ids = Vec::new();
        let mut busy = 0;
        for t in tasks {
            let (id, b) = t.await.expect("upload task");
            ids.push(id);
            busy += b;
        }
        let upload_secs = uploads_started.elapsed().as_secs_f64();
        let (peak_uploads, _) = rss_mib(child.id());
        for id in &ids {
            loop {
                let v: serde_json::Value = client
                    .get(format!("{base}/api/jobs/{id}"))
                    .send()
                    .await
                    .expect("job")
                    .json()
                    .await
                    .expect("json");
                match v["state"].as_str() {
                    Some("completed") => break,
                    Some("failed" | "cancelled") => panic!("job {id}: {v}"),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        let all_secs = uploads_started.elapsed().as_secs_f64();
        let (peak_all, _) = rss_mib(child.id());
        vec![
            format!("{budget_mb} MiB"),
            ids.len().to_string(),
            busy.to_string(),
            format!("{upload_secs:.1}"),
            format!("{all_secs:.1}"),
            format!("{peak_uploads} MiB"),
            format!("{peak_all} MiB"),
            if budget_mb > 1 << 16 {
                "-".to_owned()
            } else {
                format!("{} MiB", peak_all as i64 - budget_mb as i64)
            },
        ]
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    figures
}
