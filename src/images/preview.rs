//! Previews: an 8-bit PNG of a stored image that a browser can show (16-bit TIFFs included),
//! contrast-stretched and scaled down, decoded inside the decode budget and cached in
//! `data_dir/previews/` under the image's hash and size. The cache is written under a unique
//! temp name and renamed; the garbage collector removes previews of images no job refers to.
//! Thumbnails with outlines (drawn by `http/job_thumbnail.rs`) are cached beside them, under the
//! image's hash and a key naming their size and result, so they go with the image too.

use std::path::PathBuf;

use super::{ImageStore, ImageStoreError, io};

impl ImageStore {
    /// An 8-bit PNG a browser can show (16-bit TIFFs included): contrast-stretched to the 0.5 and
    /// 99.5 percentiles, at most `max_side` pixels on its long side, cached in `data_dir/previews/`.
    pub fn preview(&self, hash: &str, max_side: u32) -> Result<Vec<u8>, ImageStoreError> {
        let cache_dir = self.previews_dir();
        let cached = cache_dir.join(format!("{hash}-{max_side}.png"));
        if let Ok(b) = std::fs::read(&cached) {
            return Ok(b);
        }
        let (w, h, pixels) = self.with_decoded(hash, 0, |decoded| {
            let pixels: Vec<u8> = crate::segment::builtin::stretch(&decoded.gray)
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect();
            (decoded.gray.width, decoded.gray.height, pixels)
        })?;
        let mut img = image::GrayImage::from_raw(w, h, pixels).expect("width × height pixels");
        let long = w.max(h);
        if long > max_side {
            let scale = f64::from(max_side) / f64::from(long);
            let (nw, nh) = (
                ((f64::from(w) * scale).round() as u32).max(1),
                ((f64::from(h) * scale).round() as u32).max(1),
            );
            img = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
        }
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| io(&cached)(std::io::Error::other(e)))?;
        let png = out.into_inner();
        self.cache(&cached, &png);
        Ok(png)
    }

    /// The thumbnail of `hash` cached under `key` (letters, digits and `-` only), if any.
    pub fn cached_thumbnail(&self, hash: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.thumbnail_path(hash, key)).ok()
    }

    /// Caches the thumbnail `jpeg` of `hash` under `key`, for `cached_thumbnail`.
    pub fn keep_thumbnail(&self, hash: &str, key: &str, jpeg: &[u8]) {
        self.cache(&self.thumbnail_path(hash, key), jpeg);
    }

    fn thumbnail_path(&self, hash: &str, key: &str) -> PathBuf {
        self.previews_dir().join(format!("{hash}-thumb-{key}.jpg"))
    }

    /// Writes `bytes` to the cache file `path` under a unique temp name, then renames it. The
    /// cache is an optimisation: a failure to write it is not the request's failure.
    fn cache(&self, path: &std::path::Path, bytes: &[u8]) {
        let dir = self.previews_dir();
        if std::fs::create_dir_all(&dir).is_ok() {
            let tmp = dir.join(format!("{}.tmp", uuid::Uuid::now_v7()));
            if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    pub(super) fn previews_dir(&self) -> PathBuf {
        self.data_dir.join("previews")
    }
}
