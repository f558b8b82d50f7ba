//! `spheroseg db backup` and `db check`. A backup goes through the running server when one holds
//! the data directory (or `--server` names one), since only the server's writer can copy its
//! database at a moment between two changes; a stopped data directory is opened as `serve`
//! would open it (redoing its log) and copied the same way. The check exits 0 when nothing is
//! wrong, 1 with a report of what is, and 2 with one line when the file cannot be opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{DataDirArg, Exit};
use crate::backup::{self, BackupError, Images, Manifest};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::images::ImageStore;
use crate::queue::{Queue, QueueError};

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Copy the database (and with --images the image files) as of this moment into DEST, a new
    /// or empty directory that `serve --data-dir DEST` opens. A running server is backed up
    /// through its API; a stopped data directory directly.
    #[command(after_help = super::help::DB_BACKUP)]
    Backup(DbBackupArgs),
    /// Verify a data directory or a backup: the storage engine's integrity check, the write-ahead
    /// log's records, the job records and counters, and every job's image file. Exit 0 when
    /// all is well, 1 with a report of the problems, 2 when it cannot be opened.
    #[command(after_help = super::help::DB_CHECK)]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct DbBackupArgs {
    /// The backup's directory (new or empty).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Include the image files (without them the jobs cannot run again or show their image).
    #[arg(long)]
    pub images: bool,
    /// Back up the server at this URL (default: the data directory itself when no server has it
    /// open, else the server at the configured bind address).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Print the backup's manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(config: &Config, action: &DbAction) -> Result<(), Exit> {
    match action {
        DbAction::Backup(args) => backup(config, args),
        DbAction::Check(args) => check(config, args),
    }
}

fn backup_error(e: BackupError) -> Exit {
    match e {
        BackupError::Queue(q @ (QueueError::Corrupt { .. } | QueueError::NewerSchema { .. })) => {
            Exit::Database(q)
        }
        e => Exit::Other(e.into()),
    }
}

fn backup(config: &Config, args: &DbBackupArgs) -> Result<(), Exit> {
    let images = if args.images {
        Images::Copy
    } else {
        Images::Without
    };
    let manifest = match &args.server {
        Some(url) => online(config, url, &args.dest, args.images)?,
        None => {
            let path = config.database_path();
            if !path.exists() {
                return Err(Exit::Other(anyhow::anyhow!(
                    "no database at {}: nothing to back up (name the data directory with --data-dir)",
                    path.display()
                )));
            }
            match Queue::open(&path, config.queue_options(), Arc::new(SystemClock)) {
                Ok((queue, _)) => {
                    let made = backup::make(
                        &queue,
                        &config.data_dir,
                        &args.dest,
                        images,
                        SystemClock.now(),
                    );
                    queue.close();
                    made.map_err(backup_error)?
                }
                Err(QueueError::AlreadyOpen { .. }) => {
                    let url = super::page_link(config.bind);
                    eprintln!(
                        "spheroseg: {} is open in a running spheroseg: backing up through it at {url}",
                        config.data_dir.display()
                    );
                    online(config, &url, &args.dest, args.images)?
                }
                Err(q @ (QueueError::Corrupt { .. } | QueueError::NewerSchema { .. })) => {
                    return Err(Exit::Database(q));
                }
                Err(e) => return Err(Exit::Other(e.into())),
            }
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&manifest).expect("a manifest serialises")
        );
    } else {
        println!(
            "backup in {}: database {} bytes, {}, the queue paused {} ms, {} ms in all",
            args.dest.display(),
            manifest.database_bytes,
            manifest
                .images
                .map_or_else(|| "no images".to_owned(), |n| format!("{n} image(s)")),
            manifest.paused_ms,
            manifest.took_ms
        );
    }
    Ok(())
}

/// Asks the server at `url` for a backup (`POST /api/admin/backup`) and unpacks it into `dest`.
fn online(config: &Config, url: &str, dest: &Path, images: bool) -> Result<Manifest, Exit> {
    backup::prepare(dest).map_err(backup_error)?;
    let server = crate::client::Server::new(url, config.auth.token.clone());
    let part = dest.join(".backup.zip.part");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit::Other(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    let body = serde_json::json!({ "images": images }).to_string();
    let got = runtime.block_on(server.download("POST", "/api/admin/backup", Some(body), &part));
    if let Err(e) = got {
        let _ = std::fs::remove_file(&part);
        return Err(Exit::Other(anyhow::anyhow!(e)));
    }
    let manifest = backup::unpack_zip(&part, dest);
    let _ = std::fs::remove_file(&part);
    manifest.map_err(backup_error)
}

fn check(config: &Config, args: &CheckArgs) -> Result<(), Exit> {
    let path = config.database_path();
    let images_dir = config.data_dir.join("images");
    let present = |hash: &str| ImageStore::file_in(&config.data_dir, hash).is_file();
    let image: Option<&dyn Fn(&str) -> bool> = images_dir.is_dir().then_some(&present as _);
    let report = crate::queue::check(&path, image).map_err(|e| match e {
        QueueError::AlreadyOpen { path } => Exit::Other(anyhow::anyhow!(
            "database {} is open in a running spheroseg; check a backup of it instead (spheroseg db backup DEST, then db check --data-dir DEST)",
            path.display()
        )),
        e => Exit::Database(e),
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serialises")
        );
    } else {
        let j = report.jobs;
        println!(
            "database    {} ({} bytes, schema {})",
            report.database.display(),
            report.database_bytes,
            report
                .schema
                .map_or_else(|| "none".to_owned(), |v| v.to_string())
        );
        println!(
            "integrity   {}",
            if report.integrity { "ok" } else { "FAILED" }
        );
        println!(
            "log         {}",
            report.log.as_ref().map_or_else(
                || "none (closed cleanly or a backup)".to_owned(),
                |l| format!("{}: {} record(s) to redo", l.display(), report.log_records)
            )
        );
        println!(
            "jobs        queued {}, delayed {}, active {}, completed {}, failed {}, cancelled {}",
            j.queued, j.delayed, j.active, j.completed, j.failed, j.cancelled
        );
        match report.images_checked {
            Some(n) => println!(
                "images      {n} job(s) checked, {} missing",
                report
                    .problems
                    .iter()
                    .find(|p| p.contains("image file"))
                    .map_or("none", |_| "some")
            ),
            None => println!(
                "images      not checked: no image store in {} (a backup made without --images)",
                config.data_dir.display()
            ),
        }
        for (id, name) in &report.images_missing {
            println!("  missing   job {id}: {name}");
        }
        for p in &report.problems {
            println!("PROBLEM     {p}");
        }
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Exit::Problems(format!(
            "{} problem(s) in {}",
            report.problems.len(),
            path.display()
        )))
    }
}
