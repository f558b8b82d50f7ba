//! Walking a watched folder: every file the filter takes, with its size and modification time,
//! without entering excluded folders, the folders the entry writes to (results, `done`), or
//! linked folders (a link loop would never end). Runs on a blocking thread.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::filter::Filter;

/// A file as one look at it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Below the watched folder.
    pub rel: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since 1970 (0 where the system gives none).
    pub mtime: u64,
}

/// What the walk needs to know of its entry.
pub struct Walk<'a> {
    pub root: &'a Path,
    pub recursive: bool,
    pub filter: &'a Filter,
    /// Folders never walked into (absolute).
    pub skip: &'a [PathBuf],
}

impl Walk<'_> {
    /// Every file below `from` (the root, or a folder below it) that the entry takes. An
    /// unreadable sub-folder is passed over; an unreadable `from` is the error.
    pub fn files(&self, from: &Path) -> std::io::Result<Vec<Seen>> {
        let mut out = Vec::new();
        let mut stack = vec![from.to_owned()];
        let mut first = true;
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if first => return Err(e),
                Err(e) => {
                    tracing::debug!(folder = %dir.display(), error = %e, "cannot read a sub-folder; passed over");
                    continue;
                }
            };
            first = false;
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(self.root) else {
                    continue;
                };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if self.recursive && self.enters(&path, rel) {
                        stack.push(path);
                    }
                } else if self.filter.takes(rel)
                    && let Some(seen) = look(&path, rel)
                {
                    out.push(seen);
                }
            }
        }
        Ok(out)
    }

    /// Whether the walk goes into the folder at `path` (`rel` below the root).
    pub fn enters(&self, path: &Path, rel: &Path) -> bool {
        !self.skip.iter().any(|s| path.starts_with(s)) && self.filter.enters(rel)
    }

    /// Whether a file at `path` belongs to this entry: below the root (directly, unless
    /// recursive), not in a skipped or excluded folder, and taken by the filter.
    pub fn owns(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(self.root).ok()?;
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            if !self.recursive || !self.enters(&self.root.join(parent), parent) {
                return None;
            }
            let mut up = parent;
            while let Some(p) = up.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !self.filter.enters(p) {
                    return None;
                }
                up = p;
            }
        }
        self.filter.takes(rel).then(|| rel.to_owned())
    }
}

/// A file's size and modification time now; `None` if it is gone or not a file.
pub fn look(path: &Path, rel: &Path) -> Option<Seen> {
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| Seen {
        rel: rel.to_owned(),
        size: m.len(),
        mtime: nanos(m.modified().ok()),
    })
}

fn nanos(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_what_the_entry_takes_and_skips_its_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for f in [
            "a.tif",
            "notes.txt",
            "p1/b.png",
            "p1/deep/c.TIF",
            "raw/d.tif",
            "spheroseg-results/a_mask.png",
            "done/e.tif",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
            std::fs::write(&p, b"x").expect("write");
        }
        let filter =
            Filter::new(&["*.tif".into(), "*.png".into()], &["raw".into()]).expect("filter");
        let skip = [root.join("spheroseg-results"), root.join("done")];
        let walk = Walk {
            root,
            recursive: true,
            filter: &filter,
            skip: &skip,
        };
        let mut rels: Vec<String> = walk
            .files(root)
            .expect("walk")
            .into_iter()
            .map(|s| super::super::filter::slashed(&s.rel))
            .collect();
        rels.sort();
        assert_eq!(rels, ["a.tif", "p1/b.png", "p1/deep/c.TIF"]);
        assert!(walk.owns(&root.join("p1/deep/c.TIF")).is_some());
        assert!(walk.owns(&root.join("raw/d.tif")).is_none());
        assert!(walk.owns(&root.join("spheroseg-results/x.png")).is_none());
        assert!(walk.owns(&root.join("notes.txt")).is_none());
        assert!(walk.files(&root.join("missing")).is_err());
        let flat = Walk {
            recursive: false,
            ..walk
        };
        assert_eq!(flat.files(root).expect("walk").len(), 1);
        assert!(flat.owns(&root.join("p1/b.png")).is_none());
    }
}
