//! The image store: original images under `data_dir/images/`, named by their SHA-256.
//!
//! `put` decodes the image under the decode limits first (a non-image, a truncated file or an
//! oversized one is refused here, not found by a worker later; the header is checked before any
//! pixel buffer is allocated), then writes a temp file, fsyncs it, renames it into place and fsyncs the
//! directory; only after that may an enqueue commit refer to it. The same content is stored once.
//! `collect_garbage` removes files no job refers to, once they are older than a grace period (so
//! an upload between its write and its commit is never collected), and temp files a crash left.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::queue::ImageRef;
use crate::segment::decode::{DecodeError, DecodeLimits, decode, decode_from, probe, probe_from};

/// Why an image was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    /// The bytes are not an image spheroseg accepts.
    #[error("{name}: {source}")]
    Refused { name: String, source: DecodeError },
    /// The file system failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImageStoreError {
    pub fn code(&self) -> &'static str {
        match self {
            ImageStoreError::Refused { source, .. } => source.code(),
            ImageStoreError::Io { source, .. } if is_disk_full(source) => "disk-full",
            ImageStoreError::Io { .. } => "io-error",
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
}

/// Content-addressed originals.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
    limits: DecodeLimits,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageStoreError + '_ {
    move |source| ImageStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ImageStore {
    /// Opens (or creates) `data_dir/images`.
    pub fn open(data_dir: &Path, limits: DecodeLimits) -> Result<Self, ImageStoreError> {
        let dir = data_dir.join("images");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(ImageStore { dir, limits })
    }

    /// Where the image with this hash lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        let fan = hash.get(..2).unwrap_or("xx");
        self.dir.join(fan).join(hash)
    }

    /// Checks and stores `bytes`; durable on return. `name` is kept for people, never used as a
    /// path.
    pub fn put(&self, bytes: &[u8], name: &str) -> Result<ImageRef, ImageStoreError> {
        let refused = |source| ImageStoreError::Refused {
            name: name.to_owned(),
            source,
        };
        let header = probe(bytes, &self.limits).map_err(refused)?;
        decode(bytes, &self.limits).map_err(refused)?;
        let hash = hex(&Sha256::digest(bytes));
        let path = self.path(&hash);
        if !path.exists() {
            let parent = path.parent().expect("image paths have a fan-out directory");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let tmp = parent.join(format!("{hash}.{}.tmp", std::process::id()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(parent)?.sync_all()
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&path)(e));
            }
        }
        Ok(ImageRef {
            hash,
            name: name.chars().take(255).collect(),
            width: header.width,
            height: header.height,
            bytes: bytes.len() as u64,
        })
    }

    /// An 8-bit PNG a browser can show (16-bit TIFFs included): contrast-stretched to the 0.5 and
    /// 99.5 percentiles, at most `max_side` pixels on its long side, cached next to the images.
    pub fn preview(&self, hash: &str, max_side: u32) -> Result<Vec<u8>, ImageStoreError> {
        let cache_dir = self.dir.with_file_name("previews");
        let cached = cache_dir.join(format!("{hash}-{max_side}.png"));
        if let Ok(b) = std::fs::read(&cached) {
            return Ok(b);
        }
        let bytes = self.read(hash)?;
        let decoded = decode(&bytes, &self.limits).map_err(|source| ImageStoreError::Refused {
            name: hash.to_owned(),
            source,
        })?;
        let (w, h) = (decoded.gray.width, decoded.gray.height);
        let pixels: Vec<u8> = crate::segment::builtin::stretch(&decoded.gray)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
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
        // The cache is an optimisation: a failure to write it is not the request's failure.
        if std::fs::create_dir_all(&cache_dir).is_ok() {
            let tmp = cached.with_extension("tmp");
            if std::fs::write(&tmp, &png).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
        }
        Ok(png)
    }

    /// A fresh path for an upload being streamed to disk (`put_upload` takes it over; the
    /// garbage collector removes ones left behind).
    pub fn incoming(&self) -> Result<PathBuf, ImageStoreError> {
        let dir = self.dir.join("incoming");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir.join(format!("{}.tmp", uuid::Uuid::now_v7())))
    }

    /// Checks and stores an upload already written to `tmp` (from [`ImageStore::incoming`]): the
    /// file is decoded to check it, hashed as a stream, and renamed into place, so the request
    /// body is never held in memory whole. `tmp` is gone afterwards, stored or refused.
    pub fn put_upload(&self, tmp: &Path, name: &str) -> Result<ImageRef, ImageStoreError> {
        let result = self.adopt(tmp, name);
        let _ = std::fs::remove_file(tmp);
        result
    }

    fn adopt(&self, tmp: &Path, name: &str) -> Result<ImageRef, ImageStoreError> {
        let refused = |source| ImageStoreError::Refused {
            name: name.to_owned(),
            source,
        };
        let header = probe_from(&tmp, &self.limits).map_err(refused)?;
        decode_from(&tmp, &self.limits).map_err(refused)?;
        let mut file = std::fs::File::open(tmp).map_err(io(tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(io(tmp))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        let hash = hex(&hasher.finalize());
        let path = self.path(&hash);
        if !path.exists() {
            let parent = path.parent().expect("image paths have a fan-out directory");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            file.sync_all().map_err(io(tmp))?;
            std::fs::rename(tmp, &path).map_err(io(&path))?;
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io(parent))?;
        }
        Ok(ImageRef {
            hash,
            name: name.chars().take(255).collect(),
            width: header.width,
            height: header.height,
            bytes,
        })
    }

    /// Reads and stores a local file.
    pub fn put_path(&self, path: &Path) -> Result<ImageRef, ImageStoreError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.put(&bytes, &name)
    }

    /// The original bytes.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>, ImageStoreError> {
        let path = self.path(hash);
        std::fs::read(&path).map_err(io(&path))
    }

    /// Removes unreferenced images older than `grace` and stale temp files; returns how many files
    /// went.
    pub fn collect_garbage(&self, grace: Duration, referenced: impl Fn(&str) -> bool) -> usize {
        let now = SystemTime::now();
        let old = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= grace))
        };
        let mut removed = 0;
        let Ok(fans) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        for fan in fans.flatten() {
            let Ok(files) = std::fs::read_dir(fan.path()) else {
                continue;
            };
            for file in files.flatten() {
                let p = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                let doomed = if name.ends_with(".tmp") {
                    old(&p)
                } else {
                    !referenced(&name) && old(&p)
                };
                if doomed && std::fs::remove_file(&p).is_ok() {
                    tracing::debug!(file = %p.display(), "removed unreferenced image");
                    removed += 1;
                }
            }
        }
        removed
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn stores_by_content_once_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), DecodeLimits::default()).expect("open");
        let bytes = png(12, 7);
        let a = store.put(&bytes, "a.png").expect("stored");
        let b = store.put(&bytes, "../../etc/passwd").expect("stored");
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.hash.len(), 64);
        assert_eq!((a.width, a.height, a.bytes), (12, 7, bytes.len() as u64));
        assert_eq!(b.name, "../../etc/passwd", "kept as a label, never a path");
        assert_eq!(store.read(&a.hash).expect("read"), bytes);
        assert!(store.path(&a.hash).starts_with(dir.path().join("images")));
    }

    #[test]
    fn uploads_streamed_to_disk_are_adopted_or_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), DecodeLimits::default()).expect("open");
        let bytes = png(9, 9);
        let tmp = store.incoming().expect("path");
        std::fs::write(&tmp, &bytes).expect("write");
        let r = store.put_upload(&tmp, "a.png").expect("stored");
        assert!(!tmp.exists());
        assert_eq!(store.read(&r.hash).expect("read"), bytes);
        assert_eq!(
            r,
            store.put(&bytes, "a.png").expect("same content, same ref")
        );
        let tmp = store.incoming().expect("path");
        std::fs::write(&tmp, b"text").expect("write");
        assert_eq!(
            store.put_upload(&tmp, "t.tif").unwrap_err().code(),
            "not-an-image"
        );
        assert!(!tmp.exists(), "a refused upload leaves nothing");
    }

    #[test]
    fn a_non_image_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), DecodeLimits::default()).expect("open");
        let e = store.put(b"hello", "notes.tif").unwrap_err();
        assert_eq!(e.code(), "not-an-image");
        assert!(e.to_string().starts_with("notes.tif: not an image"), "{e}");
        let files = walk(&dir.path().join("images"));
        assert!(files.is_empty(), "{files:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn previews_are_8_bit_scaled_and_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), DecodeLimits::default()).expect("open");
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(300, 100, |x, _| {
            image::Luma([1000 + x as u16 * 100])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma16(img)
            .write_to(&mut out, image::ImageFormat::Tiff)
            .expect("tiff");
        let r = store.put(&out.into_inner(), "a.tif").expect("stored");
        let png = store.preview(&r.hash, 150).expect("preview");
        let p = image::load_from_memory(&png).expect("decodes");
        assert_eq!((p.width(), p.height()), (150, 50));
        assert_eq!(p.color(), image::ColorType::L8);
        let row: Vec<u8> = p
            .to_luma8()
            .rows()
            .next()
            .expect("row")
            .map(|px| px.0[0])
            .collect();
        assert!(
            row[0] < 10 && row[149] > 245,
            "stretched to the full range: {} .. {}",
            row[0],
            row[149]
        );
        assert!(
            dir.path()
                .join("previews")
                .join(format!("{}-150.png", r.hash))
                .exists()
        );
        assert_eq!(store.preview(&r.hash, 150).expect("cached"), png);
    }

    #[test]
    fn garbage_collection_keeps_referenced_and_young_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), DecodeLimits::default()).expect("open");
        let keep = store.put(&png(4, 4), "keep.png").expect("stored");
        let drop = store.put(&png(5, 5), "drop.png").expect("stored");
        let tmp = store.path(&keep.hash).with_extension("123.tmp");
        std::fs::write(&tmp, b"half").expect("tmp");
        // Young files survive even unreferenced (an upload may be between write and commit).
        assert_eq!(
            store.collect_garbage(Duration::from_secs(3600), |_| false),
            0
        );
        let n = store.collect_garbage(Duration::ZERO, |h| h == keep.hash);
        assert_eq!(n, 2, "the unreferenced image and the temp file");
        assert!(store.path(&keep.hash).exists());
        assert!(!store.path(&drop.hash).exists());
        assert!(!tmp.exists());
    }
}
