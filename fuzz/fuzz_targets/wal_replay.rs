//! A write-ahead log of arbitrary bytes replayed by `Queue::open` beside a healthy database, then
//! the queue read and leased from: every open gives a queue or an error, and the queue it gives
//! answers or errors, never panics.
//!
//! The first byte picks the mode. Even: the rest is the log file as it is. Odd: the rest is a
//! list of `len u16 | payload[len]` that become records framed as `queue/wal.rs` frames them
//! (`crc32 u32 | len u32 | generation u64 | lsn u64 | payload`), with the database's generation
//! and the sequence numbers it expects next, so the payloads reach the redo code instead of
//! stopping at the checksum or the generation.
//!
//! `Queue::open` turns a panic of the storage engine into an error (`contain.rs`); a panic of
//! the redo code becomes one too. Those are counted as crashes when `SPHEROSEG_FUZZ_STRICT=1`.

#![no_main]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redb::{ReadableDatabase, TableDefinition};
use spheroseg::clock::SystemClock;
use spheroseg::queue::{JobFilter, Queue, QueueOptions};

/// The log's size: a replay reads all of it.
const WAL_BYTES: u64 = 64 << 10;
/// `queue/store.rs`: the table and keys where the log's position is kept.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_WAL_GENERATION: &str = "wal_generation";
const META_WAL_LSN: &str = "wal_lsn";

fn options() -> QueueOptions {
    QueueOptions {
        wal_bytes: WAL_BYTES,
        cache_bytes: 1 << 20,
        ..QueueOptions::default()
    }
}

/// A database made once and closed cleanly, and the log position it expects.
struct Template {
    database: Vec<u8>,
    generation: u64,
    lsn: u64,
    runtime: tokio::runtime::Runtime,
}

/// Set by any panic, contained or not.
static PANICKED: AtomicBool = AtomicBool::new(false);

static TEMPLATE: LazyLock<Template> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.redb");
    let (queue, _) = Queue::open(&path, options(), Arc::new(SystemClock)).expect("a new queue");
    queue.close();
    // After the queue's first open, so this hook runs before the one `contain` installed.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        previous(info);
    }));
    let db = redb::Database::open(&path).expect("the closed database opens");
    let (generation, lsn) = {
        let tx = db.begin_read().expect("read transaction");
        let meta = tx.open_table(META).expect("meta table");
        let word = |key| meta.get(key).expect("meta read").map_or(0, |v| v.value());
        (word(META_WAL_GENERATION), word(META_WAL_LSN))
    };
    drop(db);
    Template {
        database: std::fs::read(&path).expect("read the database"),
        generation,
        lsn,
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime"),
    }
});

/// The records of `data`, framed with the template's generation and the next sequence numbers.
fn framed(data: &[u8], t: &Template) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut lsn = t.lsn;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        lsn += 1;
        let mut body = Vec::with_capacity(20 + len);
        body.extend_from_slice(&(len as u32).to_le_bytes());
        body.extend_from_slice(&t.generation.to_le_bytes());
        body.extend_from_slice(&lsn.to_le_bytes());
        body.extend_from_slice(payload);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        rest = tail;
    }
    out
}

fn replay(dir: &Path, wal: &[u8], t: &Template) {
    let path = dir.join("q.redb");
    std::fs::write(&path, &t.database).expect("write the database");
    std::fs::write(dir.join("q.wal"), wal).expect("write the log");
    let Ok((queue, _recovery)) = Queue::open(&path, options(), Arc::new(SystemClock)) else {
        return;
    };
    // What the replayed changes left must read back as jobs or as an error.
    let _ = queue.stats();
    let _ = queue.next_due();
    if let Ok(page) = queue.list(&JobFilter::default(), None, 20) {
        for job in page.jobs {
            let _ = queue.get(job.id);
            let _ = queue.result(job.id);
        }
    }
    let _ = t.runtime.block_on(queue.lease(4, Duration::from_secs(60)));
    queue.close();
}

fuzz_target!(|data: &[u8]| {
    let t = &*TEMPLATE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wal = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed(rest, t)
    };
    if wal.len() as u64 > WAL_BYTES {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    PANICKED.store(false, Ordering::SeqCst);
    replay(dir.path(), &wal, t);
    let strict = std::env::var("SPHEROSEG_FUZZ_STRICT").is_ok_and(|v| v == "1");
    if PANICKED.load(Ordering::SeqCst) && strict {
        panic!("a panic inside Queue::open was contained as an error (SPHEROSEG_FUZZ_STRICT)");
    }
});
