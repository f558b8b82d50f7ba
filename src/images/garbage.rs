//! The garbage collector of the image store: image files, previews and thumbnails whose hash no
//! job refers to and nobody has pinned, and temp files no request is writing (what a crash left).
//! Each file is decided and removed under the pins lock, so an upload cannot pin a hash in
//! between.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ImageStore;

impl ImageStore {
    /// Removes image files and previews whose hash no job refers to and nobody has pinned, and
    /// temp files no request is writing; returns how many files went. `referenced` must answer
    /// from committed state (and say true when it cannot tell).
    pub fn collect_garbage(&self, referenced: impl Fn(&str) -> bool) -> usize {
        let mut removed = 0;
        let doomed = |p: &Path, hash: &str| -> usize {
            // Decided and done under the pins lock: no upload can pin `hash` in between.
            let pins = self.pins.lock().expect("pins lock");
            if !pins.contains_key(hash) && !referenced(hash) && std::fs::remove_file(p).is_ok() {
                tracing::debug!(file = %p.display(), "removed a file no job refers to");
                1
            } else {
                0
            }
        };
        for fan in read_dir(&self.dir) {
            if fan.file_name().is_some_and(|n| n == "incoming") {
                continue;
            }
            for file in read_dir(&fan) {
                match file.file_name().and_then(|n| n.to_str()) {
                    // A temp file of an older layout, left by a crash.
                    Some(name) if name.ends_with(".tmp") => {
                        removed += usize::from(std::fs::remove_file(&file).is_ok());
                    }
                    Some(hash) => removed += doomed(&file, hash),
                    None => {}
                }
            }
        }
        for file in read_dir(&self.previews_dir()) {
            let Some(name) = file.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            match name.split_once('-') {
                // Previews (`.png`) and thumbnails (`.jpg`) go with their image.
                Some((hash, _)) if name.ends_with(".png") || name.ends_with(".jpg") => {
                    removed += doomed(&file, hash);
                }
                _ if name.ends_with(".tmp") => {
                    // Previews are written under a unique name and renamed within milliseconds.
                    let old = std::fs::metadata(&file)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > Duration::from_secs(60)));
                    if old && std::fs::remove_file(&file).is_ok() {
                        removed += 1;
                    }
                }
                _ => {}
            }
        }
        for file in read_dir(&self.dir.join("incoming")) {
            // Registered before it is created, so one that is not registered now is no request's.
            let live = self.live.lock().expect("incoming lock");
            if !live.contains(&file) && std::fs::remove_file(&file).is_ok() {
                tracing::debug!(file = %file.display(), "removed an upload left by a crash");
                removed += 1;
            }
        }
        removed
    }
}

/// The entries of a directory; none if it cannot be read.
fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
