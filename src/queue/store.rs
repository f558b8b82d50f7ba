//! The redb file: table layout, record encoding, opening with schema checks and migration, and every
//! read. Writes happen only on the writer thread (`queue/writer.rs`), through [`Tables`].
//!
//! Invariants kept by every transaction:
//! - `jobs` is the truth; every other table except `meta`, `results`, `result_versions` and
//!   `marks` is an index that
//!   [`rebuild_indexes`] can recreate from `jobs` alone.
//! - `ready` and `ready_tail` together hold exactly the queued jobs, each in one of them, keyed
//!   `(10 - priority, seq)`, so the smaller of their first keys is the next job to lease; `delayed`
//!   the delayed ones by `run_at`; `leases` the active ones by `lease_until`; `finished` the
//!   completed, failed and cancelled ones by finish time.
//! - A job becoming queued goes into `ready_tail`, a write buffer that a batch leaving more than
//!   `QueueOptions::ready_tail_spill` entries in it (100 by default) moves into `ready` in one go;
//!   once the tail is that full, a batch's further jobs go straight to `ready`. With random
//!   priorities a batch appends at up to ten places of the index (the end of each level), and redb
//!   copies every leaf page a commit touches; in the small tail table those ten places share one or
//!   two leaves, and `ready` takes them a hundred at a time.
//! - `meta["count.{state}.{priority}"]` equals the number of jobs in that state and priority (absent
//!   means zero). The counters live in `meta` so that a commit touches as few tables as possible.
//! - `image_refs[hash]` equals the number of jobs that refer to the image; absent means none.
//!
//! Every change a write transaction makes goes through a logged table (`store/tables.rs`), so
//! that a batch's changes can go to the write-ahead log (`queue/wal.rs`) and be redone after a
//! crash. `store/ready.rs` reads the two halves of the ready index as one; `store/results.rs`
//! reads a result's versions.

use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError,
};

use super::QueueError;
use super::model::{Job, JobId, JobState, Millis};
use crate::fsio::Fs;

/// The layout this build reads and writes. Version 2 added the write-ahead log, which a build of
/// version 1 would not replay; version 3 writes job records of version 2, which a build of
/// schema 2 cannot read; version 4 writes job records of version 3 (result versions) and the
/// `result_versions` table.
pub(crate) const SCHEMA_VERSION: u64 = 4;

/// Version byte in front of every job record, so the record layout can change without a
/// whole-file migration: older versions are converted when read (`store/legacy.rs`).
const RECORD_V1: u8 = 1;
/// Version 1 with the lease token, attempts spent, the segmenter's name, the parameters as JSON
/// text, the rerun link, metadata and page.
const RECORD_V2: u8 = 2;
/// Today's job record: version 2 with the list of result versions in its result.
const RECORD_V3: u8 = 3;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// `(10 - priority, seq) -> (job id, queued_at)`.
pub(crate) const READY: TableDefinition<(u8, u64), (u128, u64)> = TableDefinition::new("ready");
/// Like `ready`: the jobs queued most recently (see the module doc).
pub(crate) const READY_TAIL: TableDefinition<(u8, u64), (u128, u64)> =
    TableDefinition::new("ready_tail");

/// `(run_at, job id)`.
pub(crate) const DELAYED: TableDefinition<(u64, u128), ()> = TableDefinition::new("delayed");
/// `(lease_until, job id)`.
pub(crate) const LEASES: TableDefinition<(u64, u128), ()> = TableDefinition::new("leases");
/// `(project, job id)`: listing by project, newest first.
pub(crate) const BY_PROJECT: TableDefinition<(&str, u128), ()> = TableDefinition::new("by_project");
/// `(state, finished_at, job id)`: retention, oldest first.
pub(crate) const FINISHED: TableDefinition<(u8, u64, u128), ()> = TableDefinition::new("finished");
/// `dedupe key -> job id` while the job is live (not failed, cancelled or removed).
pub(crate) const DEDUPE: TableDefinition<&str, u128> = TableDefinition::new("dedupe");
/// `image hash -> jobs referring to it`.
pub(crate) const IMAGE_REFS: TableDefinition<&str, u64> = TableDefinition::new("image_refs");
/// `job id -> result record`: version 1 of the result (see `model::ResultRef`).
pub(crate) const RESULTS: TableDefinition<u128, &[u8]> = TableDefinition::new("results");
/// `(job id, version) -> result record`: the versions after the first.
pub(crate) const RESULT_VERSIONS: TableDefinition<(u128, u32), &[u8]> =
    TableDefinition::new("result_versions");

/// `key -> value`: records other parts keep beside the jobs (see `model::Mark`).
pub(crate) const MARKS: TableDefinition<&str, &[u8]> = TableDefinition::new("marks");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_NEXT_SEQ: &str = "next_seq";
pub(crate) const META_PAUSED: &str = "paused";
/// The write-ahead log generation, one more at every open.
pub(crate) const META_WAL_GENERATION: &str = "wal_generation";
/// The last write-ahead log record that the last durable commit includes.
pub(crate) const META_WAL_LSN: &str = "wal_lsn";
/// The layout of the write-ahead log's records (`queue/wal.rs`); absent is version 1.
pub(crate) const META_WAL_FORMAT: &str = "wal_format";
/// 1 when the last process closed the queue (its final checkpoint), 0 while one runs.
pub(crate) const META_WAL_CLEAN: &str = "wal_clean";
/// Prefix of the counter keys in `meta`.
const META_COUNT: &str = "count.";

/// The `meta` key of the counter of jobs in `state` with priority `p` (1..=10).
pub(crate) fn count_key(state: JobState, p: u8) -> String {
    format!("{META_COUNT}{}.{p:02}", state.as_str())
}

pub(crate) fn parse_count_key(key: &str) -> Option<(JobState, u8)> {
    let (state, p) = key.strip_prefix(META_COUNT)?.split_once('.')?;
    let state: JobState = state.parse().ok()?;
    let p: u8 = p.parse().ok()?;
    (1..=10).contains(&p).then_some((state, p))
}

/// A job record in today's layout.
pub(crate) fn encode(job: &Job) -> Vec<u8> {
    let mut out = vec![RECORD_V3];
    // postcard into a Vec cannot fail for our types: no maps with non-string keys, no io
    out.extend(postcard::to_stdvec(job).expect("postcard encodes plain structs"));
    out
}

/// A job record of any version this build knows.
pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<Job, QueueError> {
    let bad = |e: postcard::Error| QueueError::Corrupt {
        detail: format!("{what}: {e}"),
    };
    match bytes.split_first() {
        Some((&RECORD_V3, rest)) => postcard::from_bytes(rest).map_err(bad),
        Some((&RECORD_V2, rest)) => postcard::from_bytes::<legacy::JobV2>(rest)
            .map(Job::from)
            .map_err(bad),
        Some((&RECORD_V1, rest)) => postcard::from_bytes::<legacy::JobV1>(rest)
            .map(Job::from)
            .map_err(bad),
        Some((v, _)) => Err(QueueError::Corrupt {
            detail: format!("{what}: unknown record version {v}"),
        }),
        None => Err(QueueError::Corrupt {
            detail: format!("{what}: empty record"),
        }),
    }
}

impl From<redb::Error> for QueueError {
    fn from(e: redb::Error) -> Self {
        QueueError::Storage(Box::new(e))
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self {
                QueueError::Storage(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
storage_from!(
    StorageError,
    TableError,
    redb::TransactionError,
    redb::CommitError
);

/// What `Store::snapshot` reads.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// `counts[state][priority - 1]`.
    pub(crate) counts: [[u64; 10]; 6],
    pub(crate) oldest_queued_at: Option<Millis>,
    pub(crate) paused: bool,
}

/// The open database and its path. Cheap to share behind an `Arc`; reads take a snapshot.
pub(crate) struct Store {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
}

/// What opening found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file was created by this open.
    pub created: bool,
    /// `Some(v)` when a file of schema `v` was migrated; the copy made before is `backup`.
    pub migrated_from: Option<u64>,
    pub backup: Option<PathBuf>,
}

impl Store {
    /// Opens or creates the file, refusing a newer schema and migrating an older one after copying
    /// it aside to `{file}.v{N}.bak`.
    pub(crate) fn open(
        fs: &dyn Fs,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(Store, OpenReport), QueueError> {
        let mut report = OpenReport::default();
        let exists = fs.exists(path);
        let db = open_db(fs, path, cache_bytes)?;
        let found = if exists {
            read_schema(&db)?
        } else {
            report.created = true;
            None
        };
        let db = match found {
            None if report.created => {
                init(&db)?;
                // The new file's name must survive a power cut too.
                if let Some(dir) = path.parent() {
                    fs.sync_dir(dir).map_err(|source| QueueError::Io {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                db
            }
            Some(v) if v == SCHEMA_VERSION => db,
            Some(v) if v > SCHEMA_VERSION => {
                return Err(QueueError::NewerSchema {
                    path: path.to_owned(),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            older => {
                let from = older.unwrap_or(0);
                drop(db);
                let backup = backup_path(path, from);
                std::fs::copy(path, &backup).map_err(|source| QueueError::Io {
                    path: backup.clone(),
                    source,
                })?;
                let db = open_db(fs, path, cache_bytes)?;
                migrate(&db, from)?;
                tracing::info!(from, to = SCHEMA_VERSION, backup = %backup.display(), "database migrated");
                report.migrated_from = Some(from);
                report.backup = Some(backup);
                db
            }
        };
        Ok((
            Store {
                db,
                path: path.to_owned(),
            },
            report,
        ))
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction, QueueError> {
        Ok(self.db.begin_read()?)
    }

    pub(crate) fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        let tx = self.read()?;
        let jobs = tx.open_table(JOBS)?;
        match jobs.get(id.0)? {
            Some(v) => Ok(Some(decode(v.value(), "job record")?)),
            None => Ok(None),
        }
    }

    /// Counters, the oldest queued job and the pause flag from one snapshot, in O(1): 60 counter
    /// cells and one lookup per priority level.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, QueueError> {
        let tx = self.read()?;
        let mut snap = Snapshot::default();
        let meta = tx.open_table(META)?;
        for entry in meta.range(META_COUNT..)? {
            let (k, v) = entry?;
            let Some((state, p)) = parse_count_key(k.value()) else {
                break;
            };
            snap.counts[state.index() as usize][p as usize - 1] = v.value();
        }
        // `queued_at` grows with `seq` inside a level, so each level's head is its oldest.
        let ready = tx.open_table(READY)?;
        let tail = tx.open_table(READY_TAIL)?;
        for inv in 0..10u8 {
            if let Some((_, (_, at))) = ready_first(&ready, &tail, level(inv))? {
                snap.oldest_queued_at = Some(snap.oldest_queued_at.map_or(at, |o| o.min(at)));
            }
        }
        snap.paused = meta.get(META_PAUSED)?.is_some_and(|v| v.value() != 0);
        Ok(snap)
    }

    pub(crate) fn paused(&self) -> Result<bool, QueueError> {
        let tx = self.read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(META_PAUSED)?.is_some_and(|v| v.value() != 0))
    }

    pub(crate) fn image_referenced(&self, hash: &str) -> Result<bool, QueueError> {
        let tx = self.read()?;
        Ok(tx.open_table(IMAGE_REFS)?.get(hash)?.is_some())
    }

    /// The earliest `run_at` among delayed jobs and the earliest lease expiry: when the dispatcher
    /// next has something to sweep.
    pub(crate) fn next_due(&self) -> Result<Option<Millis>, QueueError> {
        let tx = self.read()?;
        let delayed = tx.open_table(DELAYED)?;
        let leases = tx.open_table(LEASES)?;
        let a = delayed.first()?.map(|(k, _)| k.value().0);
        let b = leases.first()?.map(|(k, _)| k.value().0);
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The live job that holds the dedupe key `key`, if one does.
    pub(crate) fn dedupe_holder(&self, key: &str) -> Result<Option<JobId>, QueueError> {
        let tx = self.read()?;
        Ok(tx.open_table(DEDUPE)?.get(key)?.map(|v| JobId(v.value())))
    }

    /// Every mark whose key starts with `prefix`, in key order. A file from before marks
    /// existed has none.
    pub(crate) fn marks(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        let tx = self.read()?;
        let table = match tx.open_table(MARKS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The names of the projects that hold at least one job, in name order: one index lookup
    /// per project, not a scan of the jobs.
    pub(crate) fn projects(&self) -> Result<Vec<String>, QueueError> {
        let tx = self.read()?;
        let idx = tx.open_table(BY_PROJECT)?;
        let mut out: Vec<String> = Vec::new();
        loop {
            let next = match out.last() {
                None => idx.range::<(&str, u128)>(..)?.next(),
                Some(last) => idx
                    .range((last.as_str(), u128::MAX)..)?
                    .find(|e| !matches!(e, Ok((k, _)) if k.value().0 == last.as_str())),
            };
            match next {
                Some(entry) => out.push(entry?.0.value().0.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// Size of the database file in bytes.
    pub(crate) fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

fn open_db(fs: &dyn Fs, path: &Path, cache_bytes: usize) -> Result<Database, QueueError> {
    fs.database(path, cache_bytes)
        .map_err(|e| database_error(path, e))
}

/// Why the database file at `path` cannot be opened, as the queue reports it.
pub(crate) fn database_error(path: &Path, e: DatabaseError) -> QueueError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => QueueError::AlreadyOpen {
            path: path.to_owned(),
        },
        DatabaseError::UpgradeRequired(v) => QueueError::Corrupt {
            detail: format!(
                "{} uses redb file format {v}, which this build cannot read",
                path.display()
            ),
        },
        DatabaseError::Storage(StorageError::Corrupted(detail)) => QueueError::Corrupt {
            detail: format!("{}: {detail}", path.display()),
        },
        DatabaseError::Storage(StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            QueueError::Corrupt {
                detail: format!("{}: {e}", path.display()),
            }
        }
        DatabaseError::Storage(StorageError::Io(source)) => QueueError::Io {
            path: path.to_owned(),
            source,
        },
        other => QueueError::Corrupt {
            detail: format!("{}: {other}", path.display()),
        },
    }
}

fn read_schema(db: &Database) -> Result<Option<u64>, QueueError> {
    let tx = db.begin_read()?;
    match tx.open_table(META) {
        Ok(meta) => Ok(meta.get(META_SCHEMA)?.map(|v| v.value())),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn backup_path(path: &Path, version: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".v{version}.bak"));
    path.with_file_name(name)
}

fn init(db: &Database) -> Result<(), QueueError> {
    let tx = db.begin_write()?;
    {
        let mut tables = Tables::open(&tx)?;
        tables.create_all()?;
        let meta = tables.meta()?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
        meta.insert(META_NEXT_SEQ, 0)?;
        meta.insert(META_PAUSED, 0)?;
        meta.insert(META_WAL_GENERATION, 0)?;
        meta.insert(META_WAL_LSN, 0)?;
        meta.insert(META_WAL_CLEAN, 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// Migrates a file of schema `from` to [`SCHEMA_VERSION`] in one transaction.
///
/// Version 0 is the layout before indexes: a `jobs` table and nothing else; moving to 1 rebuilds
/// every index and counter from `jobs`. Version 1 had no write-ahead log; moving to 2 starts one
/// at generation 0 (a clean one: version 1 committed everything). Version 2 wrote job records of
/// version 1, which are converted as they are read, so moving to 3 changes only the schema
/// number; likewise version 3's job records of version 2 when moving to 4 (which creates the
/// `result_versions` table, as every migration creates the tables it lacks).
///
/// The write-ahead log is replayed after this. Its records are the raw table changes, which
/// replay the same in either layout, so a schema-2 file's log is kept as it is.
fn migrate(db: &Database, from: u64) -> Result<(), QueueError> {
    let tx = db.begin_write()?;
    {
        let mut tables = Tables::open(&tx)?;
        tables.create_all()?;
        if from == 0 {
            rebuild_indexes(tables)?;
        }
    }
    {
        let mut meta = tx.open_table(META)?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
        if from < 2 {
            meta.insert(META_WAL_GENERATION, 0)?;
            meta.insert(META_WAL_LSN, 0)?;
            meta.insert(META_WAL_CLEAN, 1)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Clears every index and counter and recreates them from `jobs`.
pub(crate) fn rebuild_indexes(mut t: Tables<'_>) -> Result<(), QueueError> {
    t.ready()?.retain(|_, _| false)?;
    t.ready_tail()?.retain(|_, _| false)?;
    t.delayed()?.retain(|_, _| false)?;
    t.leases()?.retain(|_, _| false)?;
    t.by_project()?.retain(|_, _| false)?;
    t.finished()?.retain(|_, _| false)?;
    t.dedupe()?.retain(|_, _| false)?;
    t.meta()?.retain(|k, _| parse_count_key(k).is_none())?;
    t.image_refs()?.retain(|_, _| false)?;
    let mut jobs: Vec<Job> = Vec::new();
    for entry in t.jobs()?.iter()? {
        let (_, v) = entry?;
        jobs.push(decode(v.value(), "job record")?);
    }
    // Queued jobs get fresh sequence numbers in their old order, so FIFO survives.
    jobs.sort_by_key(|j| (j.seq, j.id));
    let mut seq = 0u64;
    let mut counts = [[0u64; 10]; 6];
    for mut job in jobs {
        if job.state == JobState::Queued {
            job.seq = seq;
            seq += 1;
            t.jobs()?.insert(job.id.0, encode(&job).as_slice())?;
        }
        index_insert(&mut t, &job, 0)?;
        if let Some(p) = &job.project {
            t.by_project()?.insert((p.as_str(), job.id.0), ())?;
        }
        counts[job.state.index() as usize][job.priority.get() as usize - 1] += 1;
        let n = t
            .image_refs()?
            .get(job.image.hash.as_str())?
            .map_or(0, |v| v.value());
        t.image_refs()?.insert(job.image.hash.as_str(), n + 1)?;
        if let Some(key) = &job.dedupe_key
            && !matches!(job.state, JobState::Failed | JobState::Cancelled)
        {
            t.dedupe()?.insert(key.as_str(), job.id.0)?;
        }
    }
    for (s, row) in counts.iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            if n > 0 {
                t.meta()?
                    .insert(count_key(JobState::ALL[s], p as u8 + 1).as_str(), n)?;
            }
        }
    }
    let next = t
        .meta()?
        .get(META_NEXT_SEQ)?
        .map_or(0, |v| v.value())
        .max(seq);
    t.meta()?.insert(META_NEXT_SEQ, next)?;
    if t.meta()?.get(META_PAUSED)?.is_none() {
        t.meta()?.insert(META_PAUSED, 0)?;
    }
    spill_ready_tail(&mut t, 0)?;
    Ok(())
}

/// Adds a job to the index of its current state (not `by_project`, the counters, `dedupe` or
/// `image_refs`, which do not change with the state). `spill` is `ready_tail`'s (see
/// [`add_ready`]).
pub(crate) fn index_insert(t: &mut Tables<'_>, job: &Job, spill: u64) -> Result<(), QueueError> {
    let id = job.id.0;
    match job.state {
        JobState::Queued => {
            let key = ready_key(job.priority, job.seq);
            add_ready(t, (key, (id, job.queued_at)), spill)?;
        }
        JobState::Delayed => {
            t.delayed()?.insert((job.run_at.unwrap_or(0), id), ())?;
        }
        JobState::Active => {
            t.leases()?.insert((job.lease_until.unwrap_or(0), id), ())?;
        }
        JobState::Completed | JobState::Failed | JobState::Cancelled => {
            t.finished()?
                .insert((job.state.index(), job.finished_at.unwrap_or(0), id), ())?;
        }
    }
    Ok(())
}

/// The ids in a time index (`delayed` or `leases`) whose time is at most `until`, earliest first.
pub(crate) fn due(
    index: &impl ReadableTable<(u64, u128), ()>,
    until: Millis,
) -> Result<Vec<u128>, QueueError> {
    Ok(index
        .range((0, 0)..=(until, u128::MAX))?
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?)
}

/// Removes a job from the index of its current state; the inverse of [`index_insert`].
pub(crate) fn index_remove(t: &mut Tables<'_>, job: &Job) -> Result<(), QueueError> {
    let id = job.id.0;
    match job.state {
        JobState::Queued => {
            let key = ready_key(job.priority, job.seq);
            if !t.ready_tail()?.remove(key)? {
                t.ready()?.remove(key)?;
            }
        }
        JobState::Delayed => {
            t.delayed()?.remove((job.run_at.unwrap_or(0), id))?;
        }
        JobState::Active => {
            t.leases()?.remove((job.lease_until.unwrap_or(0), id))?;
        }
        JobState::Completed | JobState::Failed | JobState::Cancelled => {
            t.finished()?
                .remove((job.state.index(), job.finished_at.unwrap_or(0), id))?;
        }
    }
    Ok(())
}

mod legacy;
mod list;
mod ready;
mod results;
mod tables;

pub(crate) use ready::{
    ReadyEntry, add_ready, earlier, first_in, level, ready_first, ready_key, spill_ready_tail,
};
pub(crate) use tables::{Tables, redo};

#[cfg(test)]
mod tests;
