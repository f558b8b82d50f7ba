//! The store: record encoding, migration from version 0, refusing newer or damaged files.
use super::*;
use crate::queue::model::{ImageRef, LeaseToken, Priority, ResultRef};
use crate::segment::SegmentParams;
use crate::segment::SegmenterId;

pub(crate) fn job(id: u128, state: JobState, priority: u8, seq: u64) -> Job {
    Job {
        id: JobId(id),
        priority: Priority::new(priority.into()).expect("valid priority"),
        state,
        lease: LeaseToken(u32::from(state == JobState::Active)),
        attempts: u32::from(state == JobState::Active),
        max_attempts: 3,
        interruptions: 0,
        seq,
        created_at: 1000 + seq,
        updated_at: 1000 + seq,
        queued_at: 1000 + seq,
        started_at: None,
        finished_at: state.is_finished().then_some(2000),
        run_at: (state == JobState::Delayed).then_some(5000),
        lease_until: (state == JobState::Active).then_some(3000),
        progress: 0,
        last_error: None,
        project: Some("p".into()),
        dedupe_key: Some(format!("k{id}")),
        image: ImageRef {
            hash: format!("h{}", id % 2),
            name: "a.png".into(),
            width: 10,
            height: 10,
            bytes: 100,
        },
        segmenter: SegmenterId::builtin(),
        params: SegmentParams::default(),
        result: None,
        rerun_of: None,
        metadata: vec![("well".into(), "B03".into())],
        page: None,
    }
}

#[test]
fn records_carry_a_version_byte_and_round_trip() {
    let j = job(7, JobState::Queued, 5, 0);
    let bytes = encode(&j);
    assert_eq!(bytes[0], RECORD_V3);
    assert_eq!(decode(&bytes, "job").expect("decodes"), j);
    assert!(matches!(
        decode(&[9, 1, 2], "job"),
        Err(QueueError::Corrupt { .. })
    ));
    assert!(matches!(
        decode(&[], "job"),
        Err(QueueError::Corrupt { .. })
    ));
}

/// A hand-made version-0 file: only a `jobs` table. Opening it copies it aside and rebuilds
/// every index, so the jobs lease in the right order and the counters are right.
#[test]
fn version_zero_file_is_backed_up_and_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.redb");
    {
        let db = Database::create(&path).expect("create");
        let tx = db.begin_write().expect("write");
        {
            let mut jobs = tx.open_table(JOBS).expect("jobs");
            for j in [
                job(1, JobState::Queued, 5, 10),
                job(2, JobState::Queued, 9, 11),
                job(3, JobState::Completed, 5, 0),
                job(4, JobState::Active, 2, 0),
                job(5, JobState::Queued, 5, 3),
            ] {
                jobs.insert(j.id.0, encode(&j).as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let (store, report) =
        Store::open(&crate::fsio::OsFs, &path, 1 << 20).expect("opens and migrates");
    assert_eq!(report.migrated_from, Some(0));
    let backup = report.backup.expect("a backup");
    assert!(backup.ends_with("spheroseg.redb.v0.bak"));
    assert!(backup.exists());
    assert_eq!(
        read_schema(&store.db).expect("schema"),
        Some(SCHEMA_VERSION)
    );

    let counts = store.snapshot().expect("snapshot").counts;
    assert_eq!(counts[JobState::Queued.index() as usize][4], 2);
    assert_eq!(counts[JobState::Queued.index() as usize][8], 1);
    assert_eq!(counts[JobState::Completed.index() as usize][4], 1);
    assert_eq!(counts[JobState::Active.index() as usize][1], 1);

    let tx = store.read().expect("read");
    let ready = tx.open_table(READY).expect("ready");
    let order: Vec<u128> = ready
        .iter()
        .expect("iter")
        .map(|e| e.expect("entry").1.value().0)
        .collect();
    assert_eq!(order, vec![2, 5, 1], "priority 9 first, then FIFO among 5s");
    let refs = tx.open_table(IMAGE_REFS).expect("refs");
    assert_eq!(refs.get("h1").expect("get").map(|v| v.value()), Some(3));
    drop(tx);
    drop(store);

    // The backup is the old file: it still reads as version 0.
    let old = Database::open(&backup).expect("backup opens");
    assert_eq!(read_schema(&old).expect("schema"), None);
}

/// A version-1 file (indexes, no write-ahead log): opening it copies it aside and starts a clean
/// log; its jobs stay as they were.
#[test]
fn version_one_file_gains_a_clean_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.redb");
    {
        let (store, _) = Store::open(&crate::fsio::OsFs, &path, 1 << 20).expect("create");
        let tx = store.db.begin_write().expect("write");
        {
            let mut t = Tables::open(&tx).expect("tables");
            let j = job(1, JobState::Queued, 5, 0);
            t.put_job(&j).expect("job");
            index_insert(&mut t, &j, 0).expect("index");
            spill_ready_tail(&mut t, 0).expect("into ready");
            let meta = t.meta().expect("meta");
            meta.insert(META_SCHEMA, 1).expect("schema");
            for key in [META_WAL_GENERATION, META_WAL_LSN, META_WAL_CLEAN] {
                meta.remove(key).expect("remove");
            }
        }
        // Version 1 had no tail table.
        tx.delete_table(READY_TAIL).expect("delete tail");
        tx.commit().expect("commit");
    }
    let (store, report) =
        Store::open(&crate::fsio::OsFs, &path, 1 << 20).expect("opens and migrates");
    assert_eq!(report.migrated_from, Some(1));
    assert!(
        report
            .backup
            .expect("a backup")
            .ends_with("spheroseg.redb.v1.bak")
    );
    let tx = store.read().expect("read");
    let meta = tx.open_table(META).expect("meta");
    let value = |key: &str| meta.get(key).expect("get").map(|v| v.value());
    assert_eq!(value(META_SCHEMA), Some(SCHEMA_VERSION));
    assert_eq!(value(META_WAL_LSN), Some(0));
    assert_eq!(value(META_WAL_CLEAN), Some(1));
    let ready = tx.open_table(READY).expect("ready");
    assert_eq!(redb::ReadableTableMetadata::len(&ready).expect("len"), 1);
}

#[test]
fn newer_schema_is_refused_with_both_versions_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.redb");
    {
        let db = Database::create(&path).expect("create");
        let tx = db.begin_write().expect("write");
        tx.open_table(META)
            .expect("meta")
            .insert(META_SCHEMA, SCHEMA_VERSION + 1)
            .expect("insert");
        tx.commit().expect("commit");
    }
    let err = Store::open(&crate::fsio::OsFs, &path, 1 << 20)
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, QueueError::NewerSchema { .. }), "{msg}");
    assert!(
        msg.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{msg}"
    );
    assert!(msg.contains(&format!("version {SCHEMA_VERSION}")), "{msg}");
}

#[test]
fn garbage_file_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("write");
    let err = Store::open(&crate::fsio::OsFs, &path, 1 << 20)
        .err()
        .expect("refused");
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("spheroseg.redb"), "{err}");
}

#[test]
fn second_open_in_use_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spheroseg.redb");
    let _first = Store::open(&crate::fsio::OsFs, &path, 1 << 20).expect("first open");
    let err = Store::open(&crate::fsio::OsFs, &path, 1 << 20)
        .err()
        .expect("refused");
    assert!(matches!(err, QueueError::AlreadyOpen { .. }), "{err}");
    assert!(err.to_string().contains("another spheroseg"), "{err}");
}

/// A job record of version 1, as the previous layout wrote it, reads as today's job: the attempt
/// counter becomes the lease token, attempts spent are counted, the segmenter enum is a name.
#[test]
fn version_one_records_are_read_as_todays_jobs() {
    #[derive(serde::Serialize)]
    enum Seg {
        #[allow(dead_code)]
        Builtin,
        Http(String),
    }
    #[derive(serde::Serialize)]
    struct Params(
        bool,
        Option<f32>,
        u8,
        u8,
        f32,
        f32,
        bool,
        Option<u32>,
        f32,
        Option<f32>,
    );
    #[derive(serde::Serialize)]
    struct V1 {
        id: JobId,
        priority: Priority,
        state: JobState,
        attempt: u32,
        attempt_base: u32,
        max_attempts: u32,
        interruptions: u32,
        seq: u64,
        created_at: u64,
        updated_at: u64,
        queued_at: u64,
        started_at: Option<u64>,
        finished_at: Option<u64>,
        run_at: Option<u64>,
        lease_until: Option<u64>,
        progress: u8,
        last_error: Option<crate::queue::JobError>,
        project: Option<String>,
        dedupe_key: Option<String>,
        image: ImageRef,
        segmenter: Seg,
        params: Params,
        result: Option<u64>,
    }
    let v1 = V1 {
        id: JobId(9),
        priority: Priority::new(7).expect("priority"),
        state: JobState::Completed,
        attempt: 3,
        attempt_base: 1,
        max_attempts: 3,
        interruptions: 0,
        seq: 4,
        created_at: 10,
        updated_at: 20,
        queued_at: 10,
        started_at: Some(15),
        finished_at: Some(20),
        run_at: None,
        lease_until: None,
        progress: 100,
        last_error: None,
        project: Some("screen-1".into()),
        dedupe_key: None,
        image: job(1, JobState::Queued, 5, 0).image,
        segmenter: Seg::Http("http".into()),
        params: Params(
            false,
            Some(2.0),
            1,
            2,
            0.05,
            0.01,
            true,
            Some(1),
            1.5,
            Some(0.65),
        ),
        result: Some(1234),
    };
    let mut bytes = vec![RECORD_V1];
    bytes.extend(postcard::to_stdvec(&v1).expect("encodes"));
    let j = decode(&bytes, "job").expect("a version-1 record decodes");
    assert_eq!((j.lease, j.attempts), (LeaseToken(3), 2));
    assert_eq!(j.segmenter.as_str(), "http");
    assert_eq!(j.priority.get(), 7);
    assert_eq!(j.project.as_deref(), Some("screen-1"));
    assert_eq!(j.result.as_ref().map(|r| r.bytes), Some(1234));
    let p = &j.params;
    assert!(!p.flatten_illumination && p.drop_border_objects);
    assert_eq!(
        (p.smooth_sigma, p.keep_largest, p.pixel_size_um),
        (Some(2.0), Some(1), Some(0.65))
    );
    assert_eq!(p.feature, crate::segment::Feature::Intensity);
    assert_eq!(p.polarity, crate::segment::Polarity::Bright);
    // Written back in today's layout.
    assert_eq!(encode(&j)[0], RECORD_V3);
    assert_eq!(decode(&encode(&j), "job").expect("round trip"), j);
}

/// A job record of version 2 reads as today's job whose result has one version, the segmenter's,
/// made when the job finished.
#[test]
fn version_two_records_have_one_result_version() {
    let mut j = job(7, JobState::Completed, 5, 0);
    j.metadata.clear();
    j.finished_at = Some(77);
    let today = encode(&j);
    // Version 2 is today's layout with `result: Option<(bytes, objects)>`; the record ends with
    // `result`, `rerun_of`, `metadata`, `page`: None, None, [], None are a zero byte each.
    assert_eq!(today[today.len() - 4..], [0, 0, 0, 0]);
    let mut v2 = vec![RECORD_V2];
    v2.extend_from_slice(&today[1..today.len() - 4]);
    v2.extend_from_slice(&[1, 100, 3, 0, 0, 0]);
    let read = decode(&v2, "job").expect("a version-2 record decodes");
    j.result = Some(ResultRef::first(100, 3, 77));
    assert_eq!(read, j);
    assert_eq!(read.result.as_ref().map(ResultRef::version), Some(1));
}
