//! `spheroseg db check`: whether a database file and its write-ahead log can be trusted, read as
//! an open would read them and without changing what they hold. The storage engine's own
//! integrity check runs first; then, inside one write transaction that is never committed, the
//! log's records are redone (each must parse and apply), and every job record is decoded, its
//! image looked for, and the per-state counters compared with the jobs.

use std::path::{Path, PathBuf};

use redb::{ReadableTable, WriteTransaction};
use serde::Serialize;

use super::QueueError;
use super::model::{JobId, JobState};
use super::stats::StateCounts;
use super::store::{
    JOBS, META, META_SCHEMA, META_WAL_CLEAN, META_WAL_FORMAT, META_WAL_GENERATION, META_WAL_LSN,
    RESULT_VERSIONS, SCHEMA_VERSION, Tables, database_error, decode, parse_count_key, redo,
};
use super::wal::Wal;

/// The page cache of the check's one open.
const CHECK_CACHE_BYTES: usize = 64 << 20;
/// The most jobs with a missing image named in the report (all are counted).
const NAMED: usize = 20;

/// What [`check`] found. `problems` is empty when the file can be trusted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    pub database: PathBuf,
    pub database_bytes: u64,
    pub schema: Option<u64>,
    /// Whether the storage engine's integrity check passed.
    pub integrity: bool,
    /// The write-ahead log beside the file, if there is one.
    pub log: Option<PathBuf>,
    /// Log records the last checkpoint does not include (redone by the next open).
    pub log_records: usize,
    /// Jobs per state, as the next open would see them.
    pub jobs: StateCounts,
    /// Jobs whose image was looked for; `None` when there is no image store to look in.
    pub images_checked: Option<u64>,
    /// Jobs whose image file is missing (the first few; all are counted in `problems`).
    pub images_missing: Vec<(JobId, String)>,
    /// Each thing that is wrong, one line each.
    pub problems: Vec<String>,
}

/// Checks the database at `path` and its log (`path` with extension `wal`), asking `image` whether
/// the image with a hash is present (`None`: no image store to look in). An error means the file
/// cannot be opened at all: missing, not a database, or in use by a running spheroseg.
pub fn check(path: &Path, image: Option<&dyn Fn(&str) -> bool>) -> Result<Check, QueueError> {
    let bytes = std::fs::metadata(path)
        .map_err(|source| QueueError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    crate::contain::contain(|| inner(path, bytes, image)).unwrap_or_else(|panic| {
        Err(QueueError::Corrupt {
            detail: format!(
                "{}: the storage engine cannot read it ({panic})",
                path.display()
            ),
        })
    })
}

fn inner(
    path: &Path,
    bytes: u64,
    image: Option<&dyn Fn(&str) -> bool>,
) -> Result<Check, QueueError> {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(CHECK_CACHE_BYTES);
    // Damage is then reported as such instead of making the storage engine panic.
    builder.set_check_integrity_on_open(true);
    let mut db = builder.open(path).map_err(|e| database_error(path, e))?;
    let mut report = Check {
        database: path.to_owned(),
        database_bytes: bytes,
        ..Check::default()
    };
    match db.check_integrity() {
        Ok(true) => report.integrity = true,
        Ok(false) => report
            .problems
            .push("the storage engine found damage in the file and repaired it".into()),
        Err(e) => {
            report
                .problems
                .push(format!("the storage engine's integrity check failed: {e}"));
            return Ok(report);
        }
    }
    let tx = db.begin_write()?;
    let outcome = read_all(&tx, path, image, &mut report);
    tx.abort()?;
    if let Err(e) = outcome {
        report.problems.push(format!("cannot read it: {e}"));
    }
    Ok(report)
}

/// The log redone and the jobs read, inside `tx` (which the caller aborts).
fn read_all(
    tx: &WriteTransaction,
    path: &Path,
    image: Option<&dyn Fn(&str) -> bool>,
    report: &mut Check,
) -> Result<(), QueueError> {
    {
        let mut t = Tables::open(tx)?;
        let meta = |t: &mut Tables<'_>, key: &str| -> Result<Option<u64>, QueueError> {
            Ok(t.meta()?.get(key)?.map(|v| v.value()))
        };
        report.schema = meta(&mut t, META_SCHEMA)?;
        match report.schema {
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) if v > SCHEMA_VERSION => report.problems.push(format!(
                "schema version {v} was written by a newer spheroseg (this one reads up to {SCHEMA_VERSION})"
            )),
            // An older file is migrated by the next open; its jobs read the same.
            Some(_) => {}
            None => {
                report
                    .problems
                    .push("no schema version: not a spheroseg database".into());
                return Ok(());
            }
        }
        let log = path.with_extension("wal");
        if log.exists() {
            let (wal, _) = Wal::open(&crate::fsio::OsFs, &log, 0)?;
            let generation = meta(&mut t, META_WAL_GENERATION)?.unwrap_or(0);
            let after = meta(&mut t, META_WAL_LSN)?.unwrap_or(0);
            let format = meta(&mut t, META_WAL_FORMAT)?.unwrap_or(1);
            match wal.replay(generation, after, format) {
                Ok(records) => {
                    for r in &records {
                        if let Err(e) = redo(&mut t, &r.payload) {
                            report.problems.push(format!(
                                "write-ahead log {}: record {} does not apply: {e}",
                                log.display(),
                                r.lsn
                            ));
                            break;
                        }
                        report.log_records += 1;
                    }
                }
                Err(e) => report.problems.push(e.to_string()),
            }
            report.log = Some(log);
        } else if meta(&mut t, META_WAL_CLEAN)? == Some(0) {
            report.problems.push(format!(
                "the write-ahead log {} is missing, and the database was not closed cleanly: changes since its last checkpoint are lost",
                log.display()
            ));
        }
    }
    let mut counted = [[0u64; 10]; 6];
    let mut checked = 0u64;
    let mut missing = 0u64;
    let mut lost_versions = 0u64;
    let versions = tx.open_table(RESULT_VERSIONS)?;
    for entry in tx.open_table(JOBS)?.iter()? {
        let (k, v) = entry?;
        let id = JobId(k.value());
        let job = match decode(v.value(), &format!("job {id}")) {
            Ok(job) => job,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        counted[job.state.index() as usize][job.priority.get() as usize - 1] += 1;
        // Version 1 is in `results`; every later one the job lists must be stored.
        for v in job.result.iter().flat_map(|r| &r.versions).skip(1) {
            if versions.get((id.0, v.version))?.is_none() {
                lost_versions += 1;
            }
        }
        if let Some(present) = image {
            checked += 1;
            if !present(&job.image.hash) {
                missing += 1;
                if report.images_missing.len() < NAMED {
                    report.images_missing.push((id, job.image.name.clone()));
                }
            }
        }
    }
    if image.is_some() {
        report.images_checked = Some(checked);
    }
    if lost_versions > 0 {
        report.problems.push(format!(
            "{lost_versions} result version(s) that jobs list are missing"
        ));
    }
    if missing > 0 {
        report.problems.push(format!(
            "{missing} job(s) refer to an image file that is missing"
        ));
    }
    let mut stored = [[0u64; 10]; 6];
    for entry in tx.open_table(META)?.iter()? {
        let (k, v) = entry?;
        if let Some((state, p)) = parse_count_key(k.value()) {
            stored[state.index() as usize][p as usize - 1] = v.value();
        }
    }
    for state in JobState::ALL {
        let (jobs, counter): (u64, u64) = (
            counted[state.index() as usize].iter().sum(),
            stored[state.index() as usize].iter().sum(),
        );
        *report.jobs.slot(state) = jobs;
        if counted[state.index() as usize] != stored[state.index() as usize] {
            report.problems.push(format!(
                "the {state} counters say {counter} job(s), the jobs table holds {jobs}"
            ));
        }
    }
    Ok(())
}
