//! The image store copied into a backup, and where its files live for readers that do not open
//! it (`db check` on a backup must not create directories in it).

use std::path::{Path, PathBuf};

use super::ImageStore;

impl ImageStore {
    /// Where the image with `hash` lives in the store of `data_dir`.
    pub fn file_in(data_dir: &Path, hash: &str) -> PathBuf {
        let fan = hash.get(..2).unwrap_or("xx");
        data_dir.join("images").join(fan).join(hash)
    }

    /// The data directory the store is in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Copies (or, if `link`, hard-links where it can) every stored image of the data directory
/// `from` into the same place under `to`; temp files of uploads in progress are left out. The
/// copies are made durable. Returns how many files went.
pub fn copy_store(from: &Path, to: &Path, link: bool) -> std::io::Result<u64> {
    let mut n = 0;
    let (src, dst) = (from.join("images"), to.join("images"));
    let Ok(fans) = std::fs::read_dir(&src) else {
        return Ok(0);
    };
    let context = |what: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", what.display()))
    };
    for fan in fans {
        let fan = fan?;
        let name = fan.file_name();
        if name == "incoming" || !fan.file_type()?.is_dir() {
            continue;
        }
        let into = dst.join(&name);
        std::fs::create_dir_all(&into).map_err(|e| context(&into, e))?;
        for file in std::fs::read_dir(fan.path())? {
            let file = file?;
            let path = file.path();
            if path.extension().is_some_and(|x| x == "tmp") || !file.file_type()?.is_file() {
                continue;
            }
            let target = into.join(file.file_name());
            let linked = link && std::fs::hard_link(&path, &target).is_ok();
            if !linked {
                std::fs::copy(&path, &target).map_err(|e| context(&path, e))?;
                std::fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| context(&target, e))?;
            }
            n += 1;
        }
        if !link {
            std::fs::File::open(&into).and_then(|d| d.sync_all())?;
        }
    }
    if !link && dst.exists() {
        std::fs::File::open(&dst).and_then(|d| d.sync_all())?;
    }
    Ok(n)
}
