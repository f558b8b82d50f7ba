//! Helpers of the watch-folder tests: a server watching a temp folder (notifications or forced
//! polling), images that differ from each other, writers that behave like acquisition software,
//! and waits on the folder's status.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spheroseg::config::WatchLayer;
use spheroseg::synth::{Kind, Scene};

use super::api::{Api, api_with};

/// A server whose data directory is `dir`, watching `dir/scope`.
pub struct Scope {
    pub api: Api,
    pub folder: PathBuf,
}

/// The settle time of the tests' entries.
pub const SETTLE_MS: u64 = 300;

/// A `[[watch]]` entry on `folder` with the tests' settle time and polling interval.
pub fn entry(folder: &Path, poll: bool) -> WatchLayer {
    WatchLayer {
        path: Some(folder.to_owned()),
        poll: Some(poll),
        poll_interval_ms: Some(150),
        settle_ms: Some(SETTLE_MS),
        ..WatchLayer::default()
    }
}

/// Starts a server on `dir` watching `dir/scope` with the entry `configure` makes of [`entry`].
pub async fn scope_in(
    dir: tempfile::TempDir,
    poll: bool,
    configure: impl FnOnce(&mut WatchLayer),
) -> Scope {
    let folder = dir.path().join("scope");
    std::fs::create_dir_all(&folder).expect("scope folder");
    let mut e = entry(&folder, poll);
    configure(&mut e);
    let api = api_with(dir, None, 64 << 20, |l| l.watch = Some(vec![e])).await;
    Scope { api, folder }
}

pub async fn scope(poll: bool) -> Scope {
    scope_in(tempfile::tempdir().expect("tempdir"), poll, |_| {}).await
}

/// An 8-bit PNG of one synthetic spheroid, different for every `seed`.
pub fn png(seed: u64, size: u32) -> Vec<u8> {
    let (img, _) = Scene::random(seed, size, 8, Kind::Plain).render();
    encode_png(size, size, gray8(&img))
}

/// A synthetic image's pixels as 8 bits.
pub fn gray8(img: &spheroseg::morphology::Gray) -> Vec<u8> {
    img.data
        .iter()
        .map(|&v| v.clamp(0.0, 255.0) as u8)
        .collect()
}

/// 8-bit gray pixels as a PNG.
pub fn encode_png(width: u32, height: u32, pixels: Vec<u8>) -> Vec<u8> {
    let buf = image::GrayImage::from_raw(width, height, pixels).expect("width × height");
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(buf)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// Writes `bytes` to `path` in `chunks` pieces, `gap` apart, as a slow writer does.
pub async fn write_slowly(path: &Path, bytes: &[u8], chunks: usize, gap: Duration) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create");
    for part in bytes.chunks(bytes.len().div_ceil(chunks)) {
        f.write_all(part).expect("write");
        f.flush().expect("flush");
        tokio::time::sleep(gap).await;
    }
}

impl Scope {
    /// `GET /api/watch`'s first folder.
    pub async fn status(&self) -> serde_json::Value {
        let (_, v) = self.api.get("/api/watch").await;
        v["folders"][0].clone()
    }

    /// Waits until `done(status)` holds (at most `secs`), and returns that status.
    pub async fn wait(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status().await;
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never {what}: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` files are done or failed and none is waiting or queued.
    pub async fn settled(&self, n: u64) -> serde_json::Value {
        self.wait(120, &format!("{n} files finished"), |s| {
            s["done"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0) >= n
                && s["queued"] == 0
                && s["waiting"] == 0
        })
        .await
    }

    /// Every job the server has, of any state.
    pub async fn jobs(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/api/jobs?limit=500&cursor={c}"),
                None => "/api/jobs?limit=500".to_owned(),
            };
            let (_, v) = self.api.get(&uri).await;
            out.extend(v["jobs"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => return out,
            }
        }
    }

    /// The results folder.
    pub fn results(&self) -> PathBuf {
        self.folder.join("spheroseg-results")
    }

    /// The rows of `results.csv` in `sub` of the results folder (the header left out).
    pub fn csv_rows(&self, sub: &str) -> Vec<csv::StringRecord> {
        let path = self.results().join(sub).join("results.csv");
        let mut r =
            csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        r.records().map(|x| x.expect("row")).collect()
    }

    pub async fn stop(self) -> tempfile::TempDir {
        let mut api = self.api;
        if let Some(app) = api.app.take() {
            app.shutdown().await.expect("clean shutdown");
        }
        api.dir
    }
}
