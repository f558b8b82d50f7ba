//! Backups of a data directory (`spheroseg db backup`): a directory that `serve --data-dir` opens,
//! holding the database as of one moment (`Queue::backup_blocking`), a `backup.json` manifest,
//! and with `--images` the image files that were stored at that same moment (copied or linked
//! while the queue took no changes, so every job in the copy finds its image).
//!
//! A running server makes the backup in a staging directory inside its data directory (image
//! files hard-linked, so only the database takes space) and streams it to the client as a ZIP
//! (`http/admin.rs`); a stopped data directory is backed up in place by the CLI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::queue::{Queue, QueueError};

/// The database's file name in a data directory and in a backup.
pub const DATABASE: &str = "spheroseg.redb";
/// The manifest's file name in a backup.
pub const MANIFEST: &str = "backup.json";
/// Where a server stages backups, inside its data directory; emptied at every start.
pub const STAGING: &str = "backup-staging";

/// What a backup holds, written beside it as `backup.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version of spheroseg that made it.
    pub spheroseg: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_at: Millis,
    pub database_bytes: u64,
    /// Image files in it; `None` for a backup made without `--images`.
    pub images: Option<u64>,
    /// How long the queue took no changes while the copy was made.
    pub paused_ms: u64,
    /// How long the whole backup took.
    pub took_ms: u64,
}

/// How image files go into a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Images {
    /// Not at all.
    Without,
    /// Copied: the backup shares nothing with the data directory.
    Copy,
    /// Hard-linked (copied where a link cannot be made): for a server's staging directory, on
    /// the same file system and removed once streamed. Image files are never rewritten.
    Link,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination holds files already.
    #[error("{}: not empty; a backup goes into a new or empty directory", path.display())]
    NotEmpty { path: PathBuf },
    /// Writing the backup failed.
    #[error("cannot write the backup in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The queue could not make its copy.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Creates `dir` if it is missing; refuses one that holds anything.
pub fn prepare(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(BackupError::io(dir))?;
    let mut entries = std::fs::read_dir(dir).map_err(BackupError::io(dir))?;
    if entries.next().is_some() {
        return Err(BackupError::NotEmpty {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// Backs up the open `queue`, whose data directory is `data_dir`, into `dir` (see [`prepare`]):
/// the database, the image files if asked, and the manifest. Blocks.
pub fn make(
    queue: &Queue,
    data_dir: &Path,
    dir: &Path,
    images: Images,
    now: Millis,
) -> Result<Manifest, BackupError> {
    prepare(dir)?;
    let copied = Arc::new(AtomicU64::new(0));
    let hold: Option<crate::queue::Hold> = match images {
        Images::Without => None,
        Images::Copy | Images::Link => {
            let (from, to, count) = (data_dir.to_owned(), dir.to_owned(), Arc::clone(&copied));
            Some(Box::new(move || {
                let n = crate::images::copy_store(&from, &to, images == Images::Link)?;
                count.store(n, Ordering::Relaxed);
                Ok(())
            }))
        }
    };
    let copy = queue.backup_blocking(&dir.join(DATABASE), hold)?;
    let manifest = Manifest {
        spheroseg: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now,
        database_bytes: std::fs::metadata(dir.join(DATABASE))
            .map_err(BackupError::io(dir))?
            .len(),
        images: (images != Images::Without).then(|| copied.load(Ordering::Relaxed)),
        paused_ms: copy.paused.as_millis() as u64,
        took_ms: copy.took.as_millis() as u64,
    };
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

/// Writes `backup.json` into `dir` and makes the directory's entries durable.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    std::fs::write(&path, text).map_err(BackupError::io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io(dir))
}

/// Every file of a backup directory, relative to it, in a stable order (for the ZIP a server
/// streams): the manifest first, then the database, then the images.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let name = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(name);
            } else {
                out.push(name);
            }
        }
    }
    out.sort_by_key(|p| {
        (
            p != Path::new(MANIFEST),
            p != Path::new(DATABASE),
            p.clone(),
        )
    });
    Ok(out)
}

/// Writes the backup directory `dir` as a ZIP into `out` (as [`files`] orders them, stored
/// without compression: the database and the images gain little from it, and time counts).
pub fn write_zip(dir: &Path, out: impl std::io::Write) -> std::io::Result<()> {
    let zip_error = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    let mut zip = zip::ZipWriter::new_stream(out);
    for rel in files(dir)? {
        let path = dir.join(&rel);
        let len = std::fs::metadata(&path)?.len();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(len >= u64::from(u32::MAX));
        let name: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        zip.start_file(name.join("/"), options).map_err(zip_error)?;
        std::io::copy(&mut std::fs::File::open(&path)?, &mut zip)?;
    }
    zip.finish().map_err(zip_error)?.into_inner().flush()
}

/// Unpacks a backup ZIP (as [`write_zip`] writes it) into the directory `dir`, every file made
/// durable, and returns its manifest. An entry whose name would leave `dir` is refused.
pub fn unpack_zip(zip_file: &Path, dir: &Path) -> Result<Manifest, BackupError> {
    let bad = |what: String| BackupError::Io {
        path: zip_file.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    };
    let file = std::fs::File::open(zip_file).map_err(BackupError::io(zip_file))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a backup archive: {e}")))?;
    let mut dirs = vec![dir.to_owned()];
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| bad(format!("entry {:?} leaves the backup", entry.name())))?;
        let target = dir.join(rel);
        if let Some(parent) = target.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            std::fs::create_dir_all(parent).map_err(BackupError::io(parent))?;
            dirs.push(parent.to_owned());
        }
        let mut out = std::fs::File::create(&target).map_err(BackupError::io(&target))?;
        std::io::copy(&mut entry, &mut out).map_err(BackupError::io(&target))?;
        out.sync_all().map_err(BackupError::io(&target))?;
    }
    // Children before parents, so that each name is durable in its directory.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(BackupError::io(d))?;
    }
    let text = std::fs::read(dir.join(MANIFEST)).map_err(BackupError::io(dir))?;
    serde_json::from_slice(&text).map_err(|e| bad(format!("{MANIFEST}: {e}")))
}
